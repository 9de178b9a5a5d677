import CBLAS
import Foundation
import GemmaEncoder

/// The exact fit of a linear head on parameter-free pooling: minimize mean loss + λ/2·‖W‖² (biases free) by
/// full-batch L-BFGS, for each λ of a path from strong to weak regularization (warm-started), keeping the λ
/// whose head has the lowest validation loss.
///
/// Why not AdamW here: with its defaults (20 epochs at 1e-3, early stopping after 3 epochs without a better
/// score on the validation split, weight decay 0.01 that barely regularizes) the head stopped wherever a small
/// validation split happened to peak, short of any optimum and with no regularization to speak of, and lost
/// to scikit-learn's plain LogisticRegression on the same vectors on 1,000-row section tasks. On those tasks
/// the best L2 was far stronger than LogisticRegression's C = 1 (λ ≈ 0.03–0.1 against 1/n = 0.001); on 8,885
/// rows, λ ≈ 0.01. Choosing λ on validation covers both, and a convex fit has one answer, not a seed's.
///
/// Validation *loss* chooses λ, not accuracy: on a validation split of a hundred rows accuracy moves in steps
/// of 1 % and ties often, while the loss is smooth in λ.
public enum LinearHeadFit {
    /// λ from 1 down to 10⁻⁵ in half decades (on unit-variance features), tried in this order.
    public static let l2Grid: [Double] = (0...10).map { pow(10, -Double($0) / 2) }

    /// Whether the head's loss is convex in its parameters: no hidden layer, pooling without parameters, and
    /// a per-row loss (softmax cross-entropy, sigmoid cross-entropy or squared error).
    public static func accepts(_ architecture: HeadArchitecture, _ targets: Targets) -> Bool {
        guard architecture.hiddenSize == nil, !architecture.pooling.isLearned else { return false }
        switch targets {
        case .classes, .multiLabel, .values: return true
        case .groups, .pairs, .binary, .lambda, .margins, .listnet: return false
        }
    }

    static func train(architecture: HeadArchitecture, train: TokenStateSet, trainTargets: Targets, valid: TokenStateSet,
                      validTargets: Targets, options: TrainingOptions, onStep: ((Int, Int) -> Void)?,
                      onEpoch: ((EpochReport) -> Void)?) throws -> TrainingResult {
        let features = try Features(train, pooling: architecture.pooling)
        let path = options.l2.map { [$0] } ?? l2Grid
        guard path.allSatisfy({ $0 > 0 && $0.isFinite }) else { throw HeadError.invalidData("the L2 strength must be positive") }
        let solver = LBFGS()
        var theta = [Double](repeating: 0, count: architecture.outputs * (architecture.inputDimension + 1))
        var reports: [EpochReport] = []
        var best: (loss: Double, step: Int, network: HeadNetwork, l2: Double)?
        for (index, l2) in path.enumerated() {
            let start = Date()
            let result = solver.minimize(from: theta, objective: { features.objective($0, targets: trainTargets, l2: l2) },
                                         onIteration: onStep.map { report in { report($0, solver.maxIterations) } })
            theta = result.x
            let network = try features.network(architecture, theta)
            let trainLoss = features.objective(theta, targets: trainTargets, l2: 0).value
            let (validLoss, validAccuracy) = HeadTrainer.evaluate(network, valid, validTargets)
            let report = EpochReport(epoch: index + 1, trainLoss: trainLoss, validLoss: validLoss, validAccuracy: validAccuracy,
                                     seconds: Date().timeIntervalSince(start), l2: l2, iterations: result.iterations)
            reports.append(report)
            onEpoch?(report)
            if best == nil || validLoss < best!.loss { best = (validLoss, index + 1, network, l2) }
            // Weaker regularization only fits the training rows more closely from here: once the validation
            // loss has not improved for `patience` steps it will not come back.
            if index + 1 - best!.step >= options.patience { break }
        }
        return TrainingResult(network: best!.network, epochs: reports, bestEpoch: best!.step, solver: .lbfgs, l2: best!.l2)
    }

    /// The fit at one λ on `states` (e.g. the training rows with the held-out validation rows folded back in,
    /// once λ is chosen), warm-started from `start`'s parameters.
    public static func refit(_ start: HeadNetwork, states: TokenStateSet, targets: Targets, l2: Double) throws -> HeadNetwork {
        let features = try Features(states, pooling: start.architecture.pooling)
        let result = LBFGS().minimize(from: features.parameters(of: start), objective: { features.objective($0, targets: targets, l2: l2) })
        return try features.network(start.architecture, result.x)
    }

    /// Pooled vectors, centred on their mean and divided by their RMS deviation, in double precision. Centring
    /// moves nothing (the bias is not penalized) but conditions the problem (one coordinate of EmbeddingGemma's
    /// mean-pooled states averages 26, most average under 1); the scale makes one λ grid fit every model's hidden-state
    /// magnitude. Double precision because float32 products leave the gradient noise of order 1e-7 and the
    /// objective's 1e-8, which at weak regularization (λ = 1e-3) moved the solution by 1e-3. Parameters θ
    /// (outputs × (d + 1): W row-major, then b) live in these coordinates until `network` folds the centring
    /// and scale back into the head's weights.
    struct Features {
        let x: [Double]
        let rows: Int, d: Int
        let mean: [Double]
        let scale: Double

        init(_ states: TokenStateSet, pooling: Pooling) throws {
            let pooled = try HeadFeatures.pooled(states, pooling: pooling)
            rows = states.count
            d = states.dimension
            var mean = [Double](repeating: 0, count: d)
            for r in 0..<rows { for j in 0..<d { mean[j] += Double(pooled[r * d + j]) } }
            for j in 0..<d { mean[j] /= Double(rows) }
            var x = [Double](repeating: 0, count: rows * d)
            var variance = 0.0
            for r in 0..<rows {
                for j in 0..<d {
                    x[r * d + j] = Double(pooled[r * d + j]) - mean[j]
                    variance += x[r * d + j] * x[r * d + j]
                }
            }
            let scale = Swift.max((variance / Double(rows * d)).squareRoot(), 1e-12)
            for i in x.indices { x[i] /= scale }
            (self.x, self.mean, self.scale) = (x, mean, scale)
        }

        /// Mean loss + λ/2·‖W‖² and its gradient in θ.
        func objective(_ theta: [Double], targets: Targets, l2: Double) -> (value: Double, gradient: [Double]) {
            let c = theta.count / (d + 1)
            var logits = [Double](repeating: 0, count: rows * c)
            for r in 0..<rows { for k in 0..<c { logits[r * c + k] = theta[c * d + k] } }
            theta.withUnsafeBufferPointer { t in
                // logits (rows × c) += X Wᵀ
                cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(c), Int32(d), 1, x, Int32(d),
                            t.baseAddress!, Int32(d), 1, &logits, Int32(c))
            }
            let (loss, gradLogits) = ConvexLoss.evaluate(logits, outputs: c, targets: targets)
            var gradient = [Double](repeating: 0, count: theta.count)
            // dW (c × d) = dLogitsᵀ X
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(c), Int32(d), Int32(rows), 1, gradLogits, Int32(c),
                        x, Int32(d), 0, &gradient, Int32(d))
            var penalty = 0.0
            for i in 0..<(c * d) {
                penalty += theta[i] * theta[i]
                gradient[i] += l2 * theta[i]
            }
            for r in 0..<rows { for k in 0..<c { gradient[c * d + k] += gradLogits[r * c + k] } }
            return (loss + 0.5 * l2 * penalty, gradient)
        }

        /// The head with θ folded back to raw pooled vectors: W' = W / s, b' = b − W'·mean.
        func network(_ architecture: HeadArchitecture, _ theta: [Double]) throws -> HeadNetwork {
            let c = architecture.outputs
            var weight = [Float](repeating: 0, count: c * d), bias = [Float](repeating: 0, count: c)
            for k in 0..<c {
                var shift = 0.0
                for j in 0..<d {
                    let v = theta[k * d + j] / scale
                    weight[k * d + j] = Float(v)
                    shift += v * mean[j]
                }
                bias[k] = Float(theta[c * d + k] - shift)
            }
            return try HeadNetwork(architecture: architecture, tensors: ["out.weight": ([c, d], weight), "out.bias": ([c], bias)])
        }

        /// θ in these coordinates for a head's weights (the inverse of `network`).
        func parameters(of network: HeadNetwork) -> [Double] {
            let c = network.architecture.outputs
            let weight = network.parameters[network.layout["out.weight"]], bias = network.parameters[network.layout["out.bias"]]
            var theta = [Double](repeating: 0, count: c * (d + 1))
            for k in 0..<c {
                var shift = 0.0
                for j in 0..<d {
                    let v = Double(weight[weight.startIndex + k * d + j])
                    theta[k * d + j] = v * scale
                    shift += v * mean[j]
                }
                theta[c * d + k] = Double(bias[bias.startIndex + k]) + shift
            }
            return theta
        }
    }
}
