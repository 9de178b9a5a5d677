import EncoderKernels
import Foundation
import GemmaTraining

/// AdamW over the encoder's trained parameters (moments per tensor), with the shared update kernel.
/// Norm weights do not decay, as in transformers' usual parameter groups.
public final class EncoderOptimizer {
    public let parameters: [Parameter]
    public let weightDecay: Float
    /// Each parameter's rate relative to the step's (layer-wise decay; all 1 without it).
    public let rateScales: [Float]
    var m: [Tensor], v: [Tensor]
    public private(set) var step = 0

    let threads: Int

    public init(parameters: [Parameter], weightDecay: Float, rateScales: [Float]? = nil, threads: Int = 1) {
        precondition(rateScales == nil || rateScales!.count == parameters.count, "one rate scale per parameter")
        self.parameters = parameters
        self.rateScales = rateScales ?? [Float](repeating: 1, count: parameters.count)
        self.threads = max(1, threads)
        self.weightDecay = weightDecay
        m = parameters.map { Tensor(count: $0.count) }
        v = parameters.map { Tensor(count: $0.count) }
    }

    /// The optimizer of a fine-tuning run over `parameters` of `model` (and whatever trains above it): the run's
    /// weight decay and, with `options.layerDecay`, each parameter's layer-wise rate. The one place a run's
    /// options become its optimizer, for the head fine-tuner and the bi-encoder alike.
    public convenience init(model: TrainableGemma, parameters: [Parameter], options: FineTuneOptions, threads: Int) {
        self.init(parameters: parameters, weightDecay: options.weightDecay,
                  rateScales: options.layerDecay.map { model.rateScales(for: parameters, layerDecay: $0) }, threads: threads)
    }

    /// One update at `learningRate` (times each parameter's scale), then the gradients are zeroed for the next step.
    public func update(learningRate: Float) {
        step += 1
        for (i, p) in parameters.enumerated() {
            guard let g = p.gradient else { continue }
            // Memory-bound: both cores stream their half of the four arrays.
            nonisolated(unsafe) let value = p.value.pointer, gradient = g.pointer, m = m[i].pointer, v = v[i].pointer
            let step = step, decay = p.decays ? weightDecay : 0, learningRate = learningRate * rateScales[i]
            splitColumns(n: p.count, parts: threads, minimum: 1 << 16) { start, count in
                adamWUpdate(value + start, gradients: gradient + start, m: m + start, v: v + start, count: count, step: step,
                            learningRate: learningRate, weightDecay: decay)
                (gradient + start).update(repeating: 0, count: count)
            }
        }
    }

    /// Σ g² over every trained parameter (for global-norm clipping).
    public func squaredGradientNorm() -> Double {
        parameters.reduce(0) { sum, p in
            guard let g = p.gradient else { return sum }
            var s = 0.0
            for i in 0..<p.count { s += Double(g.pointer[i]) * Double(g.pointer[i]) }
            return sum + s
        }
    }

    public func scaleGradients(by factor: Float) {
        for p in parameters { if let g = p.gradient { scaleInPlace(g.pointer, count: p.count, by: factor) } }
    }

    /// Moments and step, for a checkpoint.
    public func state() -> (step: Int, m: [[Float]], v: [[Float]]) { (step, m.map(\.array), v.map(\.array)) }

    public func restore(step: Int, m: [[Float]], v: [[Float]]) throws(HeadError) {
        guard m.count == parameters.count, v.count == parameters.count,
              zip(parameters, zip(m, v)).allSatisfy({ $0.count == $1.0.count && $0.count == $1.1.count }) else {
            throw .invalidHead("the checkpoint's optimizer state does not match the model's trained parameters")
        }
        self.step = step
        self.m = m.map(Tensor.init)
        self.v = v.map(Tensor.init)
    }
}
