import Foundation

/// `Loss.evaluate` for the per-row losses of a linear head, in double precision throughout: the exact fit
/// (`LinearHeadFit`) compares objective values in its line search down to changes of 1e-12, which float32
/// softmaxes cannot resolve. Same reductions as `Loss` (weighted mean of cross-entropy as PyTorch's
/// CrossEntropyLoss(weight:), mean over examples and labels for the others); LinearHeadFitTests checks the two
/// agree.
public enum ConvexLoss {
    /// Mean loss over all rows and dL/dlogits (logits: rows × outputs).
    public static func evaluate(_ logits: [Double], outputs: Int, targets: Targets) -> (loss: Double, grad: [Double]) {
        let rows = logits.count / outputs
        var grad = [Double](repeating: 0, count: logits.count)
        var loss = 0.0
        switch targets {
        case let .classes(labels, weights):
            let total = (0..<rows).reduce(0.0) { $0 + Double(weights[labels[$1]]) }
            for r in 0..<rows {
                let w = Double(weights[labels[r]]) / total, z = logits[(r * outputs)..<((r + 1) * outputs)]
                let top = z.max()!
                let sum = z.reduce(0.0) { $0 + exp($1 - top) }
                loss += w * (log(sum) + top - z[r * outputs + labels[r]])
                for j in 0..<outputs {
                    grad[r * outputs + j] = w * (exp(z[r * outputs + j] - top) / sum - (j == labels[r] ? 1 : 0))
                }
            }
        case let .multiLabel(y):
            let n = Double(logits.count)
            for i in logits.indices {
                let z = logits[i], t = Double(y[i])
                loss += (max(z, 0) - z * t + log1p(exp(-abs(z)))) / n
                grad[i] = (1 / (1 + exp(-z)) - t) / n
            }
        case let .values(y):
            let n = Double(logits.count)
            for i in logits.indices {
                let e = logits[i] - Double(y[i])
                loss += e * e / n
                grad[i] = 2 * e / n
            }
        case .groups, .pairs, .binary, .lambda, .margins, .listnet:
            preconditionFailure("rerank losses are not fitted by LinearHeadFit (LinearHeadFit.accepts)")
        }
        return (loss, grad)
    }
}
