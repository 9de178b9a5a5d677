import Foundation

/// The losses sentence-transformers trains bi-encoders with, on the embeddings of one batch, with their
/// gradients. Similarities are cosines (each vector normalized inside the loss, as sentence-transformers'
/// `cos_sim` does, so a model with or without a Normalize module trains the same way) times `scale`.
/// Computed in double precision: a batch's logits span ±scale and the gradient is a small difference.
public struct ContrastiveLoss: Codable, Sendable, Equatable {
    public enum Kind: String, Codable, Sendable, CaseIterable {
        /// Multiple-negatives ranking (InfoNCE): each anchor against every positive and hard negative of the
        /// batch, its own positive the target.
        case multipleNegatives = "mnrl"
        /// CoSENT: scored pairs, every pair whose gold score is lower ranked below every higher one.
        case cosent
    }

    public var kind: Kind = .multipleNegatives
    /// Multiplies cosines before the softmax (sentence-transformers' default 20, a temperature of 0.05).
    public var scale: Double = 20
    /// Multiple negatives: also each positive against every anchor (MultipleNegativesSymmetricRankingLoss),
    /// the two directions averaged.
    public var symmetric = false
    /// Matryoshka: the loss summed over these leading dimensions (empty: the whole embedding once).
    public var matryoshkaDimensions: [Int] = []

    public init(kind: Kind = .multipleNegatives, scale: Double = 20, symmetric: Bool = false, matryoshkaDimensions: [Int] = []) {
        self.kind = kind
        self.scale = scale
        self.symmetric = symmetric
        self.matryoshkaDimensions = matryoshkaDimensions
    }

    enum CodingKeys: String, CodingKey {
        case kind, scale, symmetric, matryoshkaDimensions = "matryoshka_dimensions"
    }

    /// Which rows of a batch's embeddings are what.
    public enum Layout: Sendable, Equatable {
        /// Rows 0..<n anchors, n..<2n their positives, then `negatives` hard negatives (candidates for every anchor).
        case ranking(anchors: Int, negatives: Int)
        /// Rows 0..<n first texts, n..<2n second texts, `scores` the gold score of each pair.
        case scored(scores: [Double])

        public var rows: Int {
            switch self {
            case let .ranking(n, m): 2 * n + m
            case let .scored(scores): 2 * scores.count
            }
        }
    }

    public func validate(dimension: Int) throws(RetrieverTrainingError) {
        guard scale > 0, scale.isFinite else { throw .invalidOption("the loss scale must be positive (got \(scale))") }
        for d in matryoshkaDimensions where d <= 0 || d > dimension {
            throw .invalidOption("Matryoshka dimension \(d) must be between 1 and the embedding's \(dimension)")
        }
        if symmetric, kind != .multipleNegatives { throw .invalidOption("the symmetric term belongs to the multiple-negatives loss") }
    }

    /// The loss of `embeddings` (layout.rows × dimension, row-major) and dL/d(embeddings).
    public func evaluate(_ embeddings: [Float], dimension: Int, layout: Layout) -> (loss: Double, gradient: [Float]) {
        precondition(embeddings.count == layout.rows * dimension, "one embedding per row of the layout")
        let rows = layout.rows
        var gradient = [Double](repeating: 0, count: rows * dimension)
        var total = 0.0
        for width in matryoshkaDimensions.isEmpty ? [dimension] : matryoshkaDimensions {
            // The leading `width` columns, each row normalized; the loss's gradient flows back through both.
            var unit = [Double](repeating: 0, count: rows * width), norms = [Double](repeating: 0, count: rows)
            for r in 0..<rows {
                var s = 0.0
                for i in 0..<width { let v = Double(embeddings[r * dimension + i]); unit[r * width + i] = v; s += v * v }
                norms[r] = max(s.squareRoot(), 1e-12)
                for i in 0..<width { unit[r * width + i] /= norms[r] }
            }
            let (loss, dUnit) = switch layout {
            case let .ranking(n, m): multipleNegatives(unit, width: width, anchors: n, negatives: m)
            case let .scored(scores): cosent(unit, width: width, scores: scores)
            }
            total += loss
            for r in 0..<rows {
                var dot = 0.0
                for i in 0..<width { dot += unit[r * width + i] * dUnit[r * width + i] }
                for i in 0..<width {
                    gradient[r * dimension + i] += (dUnit[r * width + i] - unit[r * width + i] * dot) / norms[r]
                }
            }
        }
        return (total, gradient.map(Float.init))
    }

    /// Cross-entropy of scale·cos(anchor i, candidate j) with target j = i (candidates: the n positives, then
    /// the hard negatives), averaged over anchors; with `symmetric`, averaged with the positives' own
    /// cross-entropy over the anchors. Returns the loss and dL/d(unit vectors).
    private func multipleNegatives(_ u: [Double], width: Int, anchors n: Int, negatives m: Int) -> (Double, [Double]) {
        let candidates = n + m
        var logits = [Double](repeating: 0, count: n * candidates)
        for i in 0..<n {
            for j in 0..<candidates {
                var s = 0.0
                for k in 0..<width { s += u[i * width + k] * u[(n + j) * width + k] }
                logits[i * candidates + j] = scale * s
            }
        }
        var dLogits = [Double](repeating: 0, count: n * candidates)
        let share = symmetric ? 0.5 : 1.0
        var loss = 0.0
        // Anchors → candidates.
        for i in 0..<n {
            let row = Array(logits[(i * candidates)..<((i + 1) * candidates)])
            let (lse, p) = softmax(row)
            loss += share * (lse - row[i]) / Double(n)
            for j in 0..<candidates { dLogits[i * candidates + j] += share * (p[j] - (i == j ? 1 : 0)) / Double(n) }
        }
        if symmetric {
            // Positives → anchors: column j of the anchor-by-positive block.
            for j in 0..<n {
                let column = (0..<n).map { logits[$0 * candidates + j] }
                let (lse, p) = softmax(column)
                loss += share * (lse - column[j]) / Double(n)
                for i in 0..<n { dLogits[i * candidates + j] += share * (p[i] - (i == j ? 1 : 0)) / Double(n) }
            }
        }
        var du = [Double](repeating: 0, count: u.count)
        for i in 0..<n {
            for j in 0..<candidates {
                let g = scale * dLogits[i * candidates + j]
                guard g != 0 else { continue }
                for k in 0..<width {
                    du[i * width + k] += g * u[(n + j) * width + k]
                    du[(n + j) * width + k] += g * u[i * width + k]
                }
            }
        }
        return (loss, du)
    }

    /// log(1 + Σ over pairs (i, j) with score_i < score_j of exp(s_i − s_j)), s = scale·cos of each pair.
    private func cosent(_ u: [Double], width: Int, scores y: [Double]) -> (Double, [Double]) {
        let n = y.count
        let s = (0..<n).map { i in scale * (0..<width).reduce(0.0) { $0 + u[i * width + $1] * u[(n + i) * width + $1] } }
        var terms: [(i: Int, j: Int, value: Double)] = [(-1, -1, 0)]
        for i in 0..<n { for j in 0..<n where y[i] < y[j] { terms.append((i, j, s[i] - s[j])) } }
        let (lse, p) = softmax(terms.map(\.value))
        var ds = [Double](repeating: 0, count: n)
        for (t, term) in terms.enumerated() where term.i >= 0 {
            ds[term.i] += p[t]
            ds[term.j] -= p[t]
        }
        var du = [Double](repeating: 0, count: u.count)
        for i in 0..<n {
            let g = scale * ds[i]
            for k in 0..<width {
                du[i * width + k] += g * u[(n + i) * width + k]
                du[(n + i) * width + k] += g * u[i * width + k]
            }
        }
        return (lse, du)
    }

    private func softmax(_ x: [Double]) -> (logSumExp: Double, p: [Double]) {
        let top = x.max() ?? 0
        let e = x.map { Foundation.exp($0 - top) }
        let sum = e.reduce(0, +)
        return (top + Foundation.log(sum), e.map { $0 / sum })
    }
}
