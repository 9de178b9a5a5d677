/// A reranker's scores for one query's documents, in document order: the final scores and, for a reranker
/// that fuses the bi-encoder cosine, its cross-encoder scores alone (evaluation reports both).
public struct RerankScores: Sendable, Equatable {
    public var final: [Float]
    public var crossOnly: [Float]?

    public init(final: [Float], crossOnly: [Float]? = nil) {
        self.final = final
        self.crossOnly = crossOnly
    }
}

/// The bi-encoder cosine a reranker fuses into its scores: the model, prompts and attention the query and
/// each document are embedded apart with (the model's own pooling, normalized). A caller that already holds
/// those embeddings, such as an index built the same way, passes the cosines instead of having them recomputed.
public struct FusedSimilarity: Sendable, Equatable {
    public var modelDigest: String
    public var queryPrompt: String?
    public var documentPrompt: String?
    public var attention: AttentionMode

    public init(modelDigest: String, queryPrompt: String?, documentPrompt: String?, attention: AttentionMode) {
        self.modelDigest = modelDigest
        self.queryPrompt = queryPrompt
        self.documentPrompt = documentPrompt
        self.attention = attention
    }
}

/// Scores (query, document) pairs jointly: a cross-encoder reranker; higher is more relevant. It lives with
/// the encoder API so that retrieval (which calls it) and the task heads (which implement it) stay
/// independent of each other.
public protocol PairScorer: Sendable {
    /// The cosine the scorer fuses, if any (nil by default).
    var fusedSimilarity: FusedSimilarity? { get }

    /// Scores for `documents`, in order. `similarity`, when given, holds the cosine `fusedSimilarity`
    /// describes for each document, so the scorer does not embed them again.
    func rerankScores(query: String, documents: [String], similarity: [Float]?) throws -> RerankScores
}

extension PairScorer {
    public var fusedSimilarity: FusedSimilarity? { nil }

    /// The final scores, each document in input order.
    public func scores(query: String, documents: [String]) throws -> [Float] {
        try rerankScores(query: query, documents: documents, similarity: nil).final
    }

    /// Document indices, best first, with their scores (ties in input order).
    public func rank(query: String, documents: [String]) throws -> [(index: Int, score: Float)] {
        let scores = try scores(query: query, documents: documents)
        return scores.enumerated().map { ($0, $1) }.sorted { $0.score != $1.score ? $0.score > $1.score : $0.index < $1.index }
    }
}
