import EncoderKernels
import Foundation

/// What a head is trained to predict, per example.
public enum Targets: Sendable, Equatable {
    /// Class index per example; `weights` per class (1 when not balancing).
    case classes([Int], weights: [Float])
    /// 0/1 per example and label (examples × labels), trained with a sigmoid per label.
    case multiLabel([Float])
    /// Standardized values (examples × outputs).
    case values([Float])
    /// Rerank groups: example rows come in groups of `size`, the first of each group the positive; listwise
    /// loss (softmax over the group).
    case groups(size: Int)
    /// The same groups under the pairwise (RankNet) loss: log2(1 + exp(s_negative − s_positive)) per negative,
    /// averaged (sentence-transformers' RankNetLoss).
    case pairs(size: Int)
    /// sentence-transformers' ListNetLoss: cross-entropy between softmax(labels) — the positive's label 1,
    /// the negatives' 0 — and softmax(scores) over each group, averaged over groups.
    case listnet(size: Int)
    /// The same groups scored one pair at a time: binary cross-entropy, the positive 1 and each negative 0.
    case binary(size: Int)
    /// LambdaLoss (Wang et al. 2018) with the NDCG-Loss2++ weighting, as sentence-transformers' LambdaLoss
    /// computes it by default: the pairwise loss of each (positive, negative) weighted by how much their places
    /// in the current ranking matter to nDCG, so mistakes near the top weigh most.
    case lambda(size: Int)
    /// Distillation from a teacher reranker (margin-MSE, Hofstätter et al. 2020): per negative,
    /// ((s_positive − s_negative) − (t_positive − t_negative))², `teacher` holding t for every row.
    case margins(size: Int, teacher: [Float])

    /// Rows per unit that must stay together in a batch (1 outside rerank groups).
    public var groupSize: Int {
        switch self {
        case let .groups(size), let .pairs(size), let .binary(size), let .lambda(size), let .margins(size, _), let .listnet(size): size
        default: 1
        }
    }
}

public enum Loss {
    /// Mean loss over `items` and dL/dlogits for them (logits are items.count × outputs). `labelSmoothing` ε
    /// (classes only) mixes each one-hot target with the uniform distribution, as PyTorch's
    /// CrossEntropyLoss(label_smoothing:) and the transformers Trainer's `label_smoothing_factor` do.
    public static func evaluate(_ logits: [Float], outputs: Int, targets: Targets, items: [Int],
                                labelSmoothing: Float = 0) -> (loss: Double, grad: [Float]) {
        var grad = [Float](repeating: 0, count: logits.count)
        var loss = 0.0
        switch targets {
        case let .classes(labels, weights):
            // Weighted mean of cross-entropy, as PyTorch's CrossEntropyLoss(weight:, label_smoothing:) reduces it:
            // Σ_i [(1 − ε) w_{y_i} (−log p_{i,y_i}) + (ε / C) Σ_c w_c (−log p_{i,c})] / Σ_i w_{y_i}.
            let total = items.reduce(Float(0)) { $0 + weights[labels[$1]] }
            let eps = labelSmoothing, share = eps / Float(outputs)
            let weightSum = weights.prefix(outputs).reduce(0, +)
            for (row, i) in items.enumerated() {
                let w = weights[labels[i]] / total
                var p = Array(logits[(row * outputs)..<((row + 1) * outputs)])
                p.withUnsafeMutableBufferPointer { softmaxInPlace($0.baseAddress!, count: outputs) }
                loss -= Double((1 - eps) * w) * log(Double(max(p[labels[i]], .leastNormalMagnitude)))
                for j in 0..<outputs { grad[row * outputs + j] = (1 - eps) * w * (p[j] - (j == labels[i] ? 1 : 0)) }
                guard eps > 0 else { continue }
                for c in 0..<outputs {
                    loss -= Double(share * weights[c] / total) * log(Double(max(p[c], .leastNormalMagnitude)))
                }
                // d/dz_j of Σ_c w_c (−log p_c) = p_j Σ_c w_c − w_j.
                for j in 0..<outputs { grad[row * outputs + j] += share / total * (p[j] * weightSum - weights[j]) }
            }
        case let .multiLabel(y):
            // Binary cross-entropy with logits, mean over examples and labels.
            let n = Float(items.count * outputs)
            for (row, i) in items.enumerated() {
                for j in 0..<outputs {
                    let z = logits[row * outputs + j], t = y[i * outputs + j]
                    loss += Double(max(z, 0) - z * t + log1p(exp(-abs(z)))) / Double(n)
                    grad[row * outputs + j] = (sigmoid(z) - t) / n
                }
            }
        case let .values(y):
            let n = Float(items.count * outputs)
            for (row, i) in items.enumerated() {
                for j in 0..<outputs {
                    let e = logits[row * outputs + j] - y[i * outputs + j]
                    loss += Double(e * e) / Double(n)
                    grad[row * outputs + j] = 2 * e / n
                }
            }
        case let .groups(size):
            // Listwise: softmax over each group's scores, the positive (first) as the target.
            let groups = items.count / size
            for g in 0..<groups {
                var p = (0..<size).map { logits[(g * size + $0) * outputs] }
                p.withUnsafeMutableBufferPointer { softmaxInPlace($0.baseAddress!, count: size) }
                loss -= log(Double(max(p[0], .leastNormalMagnitude))) / Double(groups)
                for j in 0..<size { grad[(g * size + j) * outputs] = (p[j] - (j == 0 ? 1 : 0)) / Float(groups) }
            }
        case let .pairs(size), let .lambda(size):
            // sentence-transformers 6.2's RankNetLoss and LambdaLoss (its default NDCGLoss2++ weighting, μ = 10):
            // −Σ W · log σ(s_positive − s_negative) / ln 2 over every (positive, negative) pair of the batch,
            // divided by the number of pairs; W = 1 for RankNet. With one relevant document (gain 1, ideal DCG 1)
            // at current rank r and a negative at rank u (1-based, D_k = log2(1 + k)):
            // W = μ · |1/log2(1 + d) − 1/log2(2 + d)| (d = |r − u|) + |1/D_r − 1/D_u|.
            let groups = items.count / size
            let lambda: Bool = if case .lambda = targets { true } else { false }
            let n = Double(groups * (size - 1)) * log(2.0)
            for g in 0..<groups {
                let scores = (0..<size).map { logits[(g * size + $0) * outputs] }
                let positive = scores[0]
                // 1-based ranks in the current order (ties broken by position, as a stable sort does).
                let order = scores.indices.sorted { scores[$0] > scores[$1] || (scores[$0] == scores[$1] && $0 < $1) }
                var rank = [Int](repeating: 0, count: size)
                for (r, i) in order.enumerated() { rank[i] = r + 1 }
                for j in 1..<size {
                    let d = scores[j] - positive
                    var weight = 1.0
                    if lambda {
                        let gap = Double(abs(rank[0] - rank[j]))
                        let ndcg2 = abs(1 / log2(1 + gap) - 1 / log2(2 + gap))
                        let lambdaRank = abs(1 / log2(1 + Double(rank[0])) - 1 / log2(1 + Double(rank[j])))
                        weight = 10 * ndcg2 + lambdaRank
                    }
                    loss += weight * Double(max(d, 0) + log1p(exp(-abs(d)))) / n   // softplus(d) = −log σ(−d), stably
                    let sigma = Float(weight / (1 + exp(-Double(d))) / n)
                    grad[(g * size + j) * outputs] += sigma
                    grad[g * size * outputs] -= sigma
                }
            }
        case let .listnet(size):
            let groups = items.count / size
            // softmax(1, 0, …, 0).
            let e = exp(1.0), denominator = e + Double(size - 1)
            let target = (0..<size).map { $0 == 0 ? e / denominator : 1 / denominator }
            for g in 0..<groups {
                var p = (0..<size).map { logits[(g * size + $0) * outputs] }
                let top = p.max()!
                let logSum = Double(top) + log(p.reduce(0.0) { $0 + exp(Double($1 - top)) })
                for j in 0..<size { loss -= target[j] * (Double(p[j]) - logSum) / Double(groups) }
                p.withUnsafeMutableBufferPointer { softmaxInPlace($0.baseAddress!, count: size) }
                for j in 0..<size { grad[(g * size + j) * outputs] = Float((Double(p[j]) - target[j]) / Double(groups)) }
            }
        case let .margins(size, teacher):
            let groups = items.count / size, n = Double(groups * (size - 1))
            for g in 0..<groups {
                let p = g * size, tp = teacher[items[p]]
                for j in 1..<size {
                    let e = Double(logits[p * outputs] - logits[(p + j) * outputs]) - Double(tp - teacher[items[p + j]])
                    loss += e * e / n
                    let ge = Float(2 * e / n)
                    grad[p * outputs] += ge
                    grad[(p + j) * outputs] -= ge
                }
            }
        case let .binary(size):
            let n = Double(items.count)
            for row in 0..<items.count {
                let z = logits[row * outputs], t: Float = row % size == 0 ? 1 : 0
                loss += Double(max(z, 0) - z * t + log1p(exp(-abs(z)))) / n
                grad[row * outputs] = Float(Double(sigmoid(z) - t) / n)
            }
        }
        return (loss, grad)
    }
}
