import Foundation
import GemmaEncoder

/// A reranker's final score as a weighted sum of its cross-encoder score and the bi-encoder cosine of the
/// query and document embedded apart (the first-stage signal): `crossWeight · head + similarityWeight · cos`.
/// A head over frozen encoder states can rank worse than the encoder's own embeddings, and the two tend to
/// err on different pairs, so their sum can beat either. The two weights are fitted on the validation
/// groups, never on test data, by minimizing the listwise loss — convex in the weights, so the fit is exact.
public struct ScoreFusion: Codable, Sendable, Equatable {
    public var crossWeight: Double
    public var similarityWeight: Double
    /// Prompts for the two embeddings (the model's `query` and `document` prompts when it has them).
    public var queryPrompt: String?
    public var documentPrompt: String?
    /// Validation groups it was fitted on, and how often the positive ranked first there with the cross score
    /// alone, the cosine alone, and fused.
    public var validGroups: Int
    public var validTop1: Top1
    /// Whether the head was trained on top of the cosine (RerankerTrainingPlan.residual).
    public var residual: Bool?
    /// Set when the fusion was not asked for but added because the head alone ranked no better than the
    /// cosine on validation (`RerankerTrainingPlan.guardFirstStage`).
    public var fallback: Bool?
    /// The model the cosine comes from when it is not the reranker's own encoder: a fine-tuned cross-encoder
    /// fuses its base model's cosine, because its own encoder, trained on pair texts, no longer embeds a query
    /// and a document apart the way the first stage (an index of the base model) did.
    public var similarityModel: HeadConfig.BaseModel?

    public struct Top1: Codable, Sendable, Equatable {
        public var cross: Double
        public var similarity: Double
        public var fused: Double

        public init(cross: Double, similarity: Double, fused: Double) {
            self.cross = cross
            self.similarity = similarity
            self.fused = fused
        }
    }

    public init(crossWeight: Double, similarityWeight: Double, queryPrompt: String?, documentPrompt: String?, validGroups: Int,
                validTop1: Top1, residual: Bool? = nil, fallback: Bool? = nil, similarityModel: HeadConfig.BaseModel? = nil) {
        self.crossWeight = crossWeight
        self.similarityWeight = similarityWeight
        self.queryPrompt = queryPrompt
        self.documentPrompt = documentPrompt
        self.validGroups = validGroups
        self.validTop1 = validTop1
        self.residual = residual
        self.fallback = fallback
        self.similarityModel = similarityModel
    }

    enum CodingKeys: String, CodingKey {
        case crossWeight = "cross_weight", similarityWeight = "similarity_weight", queryPrompt = "query_prompt"
        case documentPrompt = "document_prompt", validGroups = "valid_groups", validTop1 = "valid_top1", residual, fallback
        case similarityModel = "similarity_model"
    }

    /// The fusion that never ranks below the cosine on the groups it was fitted on: itself, or the cosine
    /// alone (head weight 0) when fused scores did worse there.
    public var neverBelowSimilarity: ScoreFusion {
        guard validTop1.fused < validTop1.similarity else { return self }
        var f = self
        f.crossWeight = 0
        f.similarityWeight = 1
        f.validTop1.fused = validTop1.similarity
        return f
    }

    public func combine(cross: [Float], similarity: [Float]) -> [Float] {
        zip(cross, similarity).map { Float(crossWeight * Double($0) + similarityWeight * Double($1)) }
    }

    /// Weights (a, b) minimizing the mean over groups of −log softmax(a·cross + b·similarity)[positive] + λ(a² + b²),
    /// by Newton's method (the objective is convex; λ keeps it strictly so when the groups are separable).
    /// Rows come in groups of `groupSize`, the positive first in each.
    public static func fit(cross: [Float], similarity: [Float], groupSize: Int,
                           queryPrompt: String?, documentPrompt: String?, ridge: Double = 1e-3) -> ScoreFusion {
        precondition(cross.count == similarity.count && groupSize > 1 && cross.count % groupSize == 0)
        // Standardize both features (spread within groups), so the ridge treats them alike and Newton's steps
        // are well conditioned; the weights are mapped back at the end.
        let sx = spread(cross, groupSize: groupSize), sy = spread(similarity, groupSize: groupSize)
        let objective = FusionObjective(x: cross.map { Double($0) / sx }, y: similarity.map { Double($0) / sy },
                                        groupSize: groupSize, ridge: ridge)
        let w = objective.minimize()
        let x = objective.x, y = objective.y, groups = objective.groups
        func top1(_ score: (Int) -> Double) -> Double {
            let wins = (0..<groups).filter { group in
                let first = group * groupSize
                return (first + 1..<first + groupSize).allSatisfy { score(first) > score($0) }
            }.count
            return Double(wins) / Double(groups)
        }
        return ScoreFusion(crossWeight: w.0 / sx, similarityWeight: w.1 / sy, queryPrompt: queryPrompt,
                           documentPrompt: documentPrompt, validGroups: groups,
                           validTop1: Top1(cross: top1 { x[$0] }, similarity: top1 { y[$0] },
                                           fused: top1 { w.0 * x[$0] + w.1 * y[$0] }))
    }

    /// Root mean square of a feature's deviation from its group mean.
    private static func spread(_ x: [Float], groupSize: Int) -> Double {
        let groups = x.count / groupSize
        var s = 0.0
        for g in 0..<groups {
            let row = x[(g * groupSize)..<((g + 1) * groupSize)].map(Double.init)
            let mean = row.reduce(0, +) / Double(groupSize)
            s += row.reduce(0) { $0 + ($1 - mean) * ($1 - mean) }
        }
        return max((s / Double(x.count)).squareRoot(), 1e-12)
    }
}

/// The mean listwise loss of w.0·x + w.1·y over groups (positive first) plus the ridge, with its gradient and
/// Hessian in closed form.
private struct FusionObjective {
    let x: [Double]
    let y: [Double]
    let groupSize: Int
    let ridge: Double

    var groups: Int { x.count / groupSize }
    func rows(_ group: Int) -> Range<Int> { (group * groupSize)..<((group + 1) * groupSize) }
    func logits(_ group: Int, _ w: (Double, Double)) -> [Double] { rows(group).map { w.0 * x[$0] + w.1 * y[$0] } }

    func loss(_ w: (Double, Double)) -> Double {
        var total = ridge * (w.0 * w.0 + w.1 * w.1)
        for group in 0..<groups {
            let z = logits(group, w)
            let top = z.max()!
            total += (top + log(z.reduce(0) { $0 + exp($1 - top) }) - z[0]) / Double(groups)
        }
        return total
    }

    /// Gradient (a, b) and Hessian (aa, ab, bb) at w.
    func derivatives(_ w: (Double, Double)) -> (g: (Double, Double), h: (Double, Double, Double)) {
        var g = (2 * ridge * w.0, 2 * ridge * w.1)
        var h = (2 * ridge, 0.0, 2 * ridge)
        let n = Double(groups)
        for group in 0..<groups {
            let rows = rows(group), z = logits(group, w)
            let top = z.max()!
            let e = z.map { exp($0 - top) }, total = e.reduce(0, +)
            let p = e.map { $0 / total }
            var mx = 0.0, my = 0.0
            for (k, r) in rows.enumerated() { mx += p[k] * x[r]; my += p[k] * y[r] }
            g.0 += (mx - x[rows.lowerBound]) / n
            g.1 += (my - y[rows.lowerBound]) / n
            for (k, r) in rows.enumerated() {
                let dx = x[r] - mx, dy = y[r] - my
                h.0 += p[k] * dx * dx / n
                h.1 += p[k] * dx * dy / n
                h.2 += p[k] * dy * dy / n
            }
        }
        return (g, h)
    }

    /// Newton's method with backtracking (a full step can overshoot far from the optimum), from (1, 1).
    func minimize() -> (Double, Double) {
        var w = (1.0, 1.0)
        for _ in 0..<50 {
            let (g, h) = derivatives(w)
            let det = h.0 * h.2 - h.1 * h.1
            guard det > 0 else { break }
            var step = ((h.2 * g.0 - h.1 * g.1) / det, (h.0 * g.1 - h.1 * g.0) / det)
            let current = loss(w)
            while loss((w.0 - step.0, w.1 - step.1)) > current, abs(step.0) + abs(step.1) > 1e-12 {
                step = (step.0 / 2, step.1 / 2)
            }
            w = (w.0 - step.0, w.1 - step.1)
            if abs(step.0) + abs(step.1) < 1e-10 { break }
        }
        return w
    }
}

extension TextEncoder {
    /// Cosine of each document's embedding with the query's (embedded apart, with the given prompts).
    public func similarities(query: String, documents: [String], queryPrompt: String?, documentPrompt: String?,
                      attention: AttentionMode) throws -> [Float] {
        try similarities(groups: [(query, documents)], queryPrompt: queryPrompt, documentPrompt: documentPrompt,
                         attention: attention, progress: nil)
    }

    /// `similarities` for many groups at once (one batched embedding pass), concatenated in group order.
    func similarities(groups: [(query: String, documents: [String])], queryPrompt: String?, documentPrompt: String?,
                      attention: AttentionMode, progress: ((Int, Int) -> Void)?) throws -> [Float] {
        var result: [Float] = []
        let chunk = 64
        for start in stride(from: 0, to: groups.count, by: chunk) {
            let part = groups[start..<min(start + chunk, groups.count)]
            let inputs = part.flatMap { similarityInputs(query: $0.query, documents: $0.documents, queryPrompt: queryPrompt,
                                                         documentPrompt: documentPrompt) }
            let vectors = try embed(inputs, options: Self.similarityOptions(attention: attention))
            var first = 0
            for group in part {
                result += Self.cosines(Array(vectors[first...(first + group.documents.count)]))
                first += group.documents.count + 1
            }
            progress?(start + part.count, groups.count)
        }
        return result
    }

    /// The query, then each document, tokenized with their prompts: what `similarities` embeds.
    func similarityInputs(query: String, documents: [String], queryPrompt: String?, documentPrompt: String?) -> [EncoderInput] {
        tokenize([query], prompt: queryPrompt) + tokenize(documents, prompt: documentPrompt)
    }

    /// The options `similarities` embeds with: normalized, so a dot product is the cosine.
    static func similarityOptions(attention: AttentionMode) -> EmbeddingOptions {
        var options = EmbeddingOptions()
        options.attention = attention
        options.normalize = true
        return options
    }

    /// Dot products of the first (normalized) vector with each of the others.
    static func cosines(_ vectors: [[Float]]) -> [Float] {
        let q = vectors[0]
        return vectors.dropFirst().map { d in zip(q, d).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
    }
}
