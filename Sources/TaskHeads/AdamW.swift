import Foundation

/// AdamW (decoupled weight decay, PyTorch's formulation) over one flat parameter vector.
public struct AdamW: Sendable {
    public var beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8
    public var weightDecay: Float
    /// Which parameters decay (weights, not biases or the attention query).
    let decays: [Bool]
    var m: [Float], v: [Float]
    public private(set) var step = 0

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
        let c1 = 1 - pow(beta1, Float(step)), c2 = 1 - pow(beta2, Float(step))
        for i in parameters.indices {
            if decays[i] { parameters[i] -= lr * weightDecay * parameters[i] }
            m[i] = beta1 * m[i] + (1 - beta1) * g[i]
            v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
            parameters[i] -= lr * (m[i] / c1) / ((v[i] / c2).squareRoot() + epsilon)
        }
    }
}

/// Linear warm-up to the peak rate over the first `warmup` steps, then linear decay to zero at `total`.
public struct LearningRateSchedule: Sendable, Equatable {
    public var peak: Float
    public var warmup: Int
    public var total: Int

    public init(peak: Float, warmup: Int, total: Int) {
        self.peak = peak
        self.warmup = warmup
        self.total = total
    }

    public func rate(at step: Int) -> Float {
        if step < warmup { return peak * Float(step + 1) / Float(warmup) }
        return peak * max(0, Float(total - step) / Float(max(total - warmup, 1)))
    }
}
