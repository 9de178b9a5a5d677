import EncoderKernels
import Foundation

/// AdamW (decoupled weight decay, PyTorch's formulation) over one flat parameter vector.
public struct AdamW: Sendable {
    public var beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8
    public var weightDecay: Float
    /// Which parameters decay (weights, not biases or the attention query).
    let decays: [Bool]
    var m: [Float], v: [Float]
    public internal(set) var step = 0

    public init(layout: ParameterLayout, weightDecay: Float = 0.01) {
        self.weightDecay = weightDecay
        var decays = [Bool](repeating: false, count: layout.count)
        for e in layout.entries where e.decays { for i in e.range { decays[i] = true } }
        self.decays = decays
        m = [Float](repeating: 0, count: layout.count)
        v = m
    }

    public mutating func update(_ parameters: inout [Float], gradients g: [Float], learningRate lr: Float) {
        step += 1
        let step = self.step, beta1 = self.beta1, beta2 = self.beta2, epsilon = self.epsilon, weightDecay = self.weightDecay
        // Runs of equal decay share one call of the shared update.
        var start = 0
        while start < parameters.count {
            var end = start
            while end < parameters.count && decays[end] == decays[start] { end += 1 }
            let decay = decays[start] ? weightDecay : 0
            parameters.withUnsafeMutableBufferPointer { p in
                g.withUnsafeBufferPointer { gp in
                    m.withUnsafeMutableBufferPointer { mp in
                        v.withUnsafeMutableBufferPointer { vp in
                            adamWUpdate(p.baseAddress! + start, gradients: gp.baseAddress! + start, m: mp.baseAddress! + start,
                                        v: vp.baseAddress! + start, count: end - start, step: step, learningRate: lr,
                                        weightDecay: decay, beta1: beta1, beta2: beta2, epsilon: epsilon)
                        }
                    }
                }
            }
            start = end
        }
    }
}

/// How the rate falls after warm-up.
public enum DecayShape: String, Sendable, Codable, CaseIterable {
    case linear, cosine
}

/// Linear warm-up to the peak rate over the first `warmup` steps, then linear (or cosine) decay to zero at `total`.
public struct LearningRateSchedule: Sendable, Equatable {
    public var peak: Float
    public var warmup: Int
    public var total: Int
    public var decay: DecayShape

    public init(peak: Float, warmup: Int, total: Int, decay: DecayShape = .linear) {
        self.peak = peak
        self.warmup = warmup
        self.total = total
        self.decay = decay
    }

    public func rate(at step: Int) -> Float {
        if step < warmup { return peak * Float(step + 1) / Float(warmup) }
        let remaining = max(0, Float(total - step) / Float(max(total - warmup, 1)))
        switch decay {
        case .linear: return peak * remaining
        // transformers' get_cosine_schedule_with_warmup: 0.5 · (1 + cos(π · progress)).
        case .cosine: return peak * 0.5 * (1 + cos(Float.pi * (1 - remaining)))
        }
    }
}
