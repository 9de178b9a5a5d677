import Foundation
import GemmaEncoder
import VectorSearch

/// One search result after the optional second stage: the first stage's result (whose score is the first
/// stage's) and the reranker's score when the reranker scored it.
public struct RankedHit: Sendable, Equatable {
    public var result: SearchResult
    public var rerankScore: Float?

    public init(result: SearchResult, rerankScore: Float? = nil) {
        self.result = result
        self.rerankScore = rerankScore
    }

    public var firstStageScore: Double { result.score }
    /// The score to show: the reranker's when it scored this hit, else the first stage's (hits below the
    /// reranked candidates keep their place and their score).
    public var score: Double { rerankScore.map(Double.init) ?? result.score }
}

/// A first-stage list reordered by a reranker's final scores and, for a fused reranker, by its
/// cross-encoder scores alone.
public struct RerankedRanking: Sendable, Equatable {
    public var final: [RankedHit]
    public var crossOnly: [RankedHit]?
}

/// Retrieval, then reranking, in one place: the CLI's `search --rerank` and `eval-retrieval` and the
/// service's /search all run it. The first stage is `mode` search over the index; a `PairScorer` re-scores
/// its first `candidates` results, which are reordered by that score while the rest follow in first-stage
/// order. A scorer that fuses the cosine the index already stores gets it from the stored vectors instead of
/// embedding every candidate again. The steps are public so that the service can run the encoder work
/// between them through its own scheduler.
public struct SearchPipeline: Sendable {
    public let index: any SearchableIndex
    public var mode: SearchMode
    public var candidates: Int
    /// Search parameters of the vector stage instead of the index's stored ones.
    public var tuning: SearchTuning

    public init(index: any SearchableIndex, mode: SearchMode, candidates: Int = 50, tuning: SearchTuning = SearchTuning()) {
        self.index = index
        self.mode = mode
        self.candidates = candidates
        self.tuning = tuning
    }

    /// The best k hits for `query`, reranked by `reranker` when given.
    public func search(_ query: String, k: Int, reranker: PairScorer? = nil) throws -> [RankedHit] {
        let vector = needsQueryEmbedding(reranker: reranker) ? try index.queryEmbedding(query) : nil
        let first = try firstStage(query, queryEmbedding: vector, k: k, reranking: reranker != nil)
        guard let reranker else { return first.map { RankedHit(result: $0) } }
        return try rerank(query, firstStage: first, queryEmbedding: vector, scorer: reranker, k: k).final
    }

    /// Whether a query embedding is needed: for vector and hybrid search, and for a reranker that reuses the
    /// stored vectors (nothing to embed in an empty index).
    public func needsQueryEmbedding(reranker: PairScorer?) -> Bool {
        index.count > 0 && (mode != .keyword || reranker.map(reusesStoredVectors) == true)
    }

    /// Whether `scorer` fuses exactly the cosine of the index's stored vectors.
    public func reusesStoredVectors(_ scorer: PairScorer) -> Bool {
        scorer.fusedSimilarity.map(index.storesEmbeddings(of:)) ?? false
    }

    /// The first stage, with the query's embedding (from `SearchIndex.queryEmbedding`, nil for keyword search
    /// or an empty index). With reranking it returns max(k, candidates) results: every candidate to re-score.
    public func firstStage(_ query: String, queryEmbedding: [Float]?, k: Int, reranking: Bool) throws -> [SearchResult] {
        let embeddings = mode == .keyword ? [] : queryEmbedding.map { [$0] } ?? []
        return try index.search([query], embeddings: embeddings, k: reranking ? max(k, candidates) : k, mode: mode, tuning: tuning)[0]
    }

    /// The first-stage results the reranker re-scores.
    public func candidates(of firstStage: [SearchResult]) -> [SearchResult] { Array(firstStage.prefix(candidates)) }

    /// The fused cosine of each candidate from the stored vectors, when `scorer` reuses them and the query's
    /// embedding is at hand; nil otherwise (the scorer embeds query and candidates itself).
    public func storedSimilarity(for scorer: PairScorer, queryEmbedding: [Float]?, candidates: [SearchResult]) throws -> [Float]? {
        guard let queryEmbedding, reusesStoredVectors(scorer) else { return nil }
        return try index.storedCosines(query: queryEmbedding, results: candidates)
    }

    /// Re-scores the candidates of `firstStage` with `scorer`, the best k of each ordering.
    public func rerank(_ query: String, firstStage: [SearchResult], queryEmbedding: [Float]?, scorer: PairScorer,
                       k: Int) throws -> RerankedRanking {
        let head = candidates(of: firstStage)
        guard !head.isEmpty else { return rank(firstStage, by: RerankScores(final: []), k: k) }
        let similarity = try storedSimilarity(for: scorer, queryEmbedding: queryEmbedding, candidates: head)
        return rank(firstStage, by: try scorer.rerankScores(query: query, documents: head.map(\.text), similarity: similarity), k: k)
    }

    /// `firstStage` reordered by the scores of its first candidates, the best k.
    public func rank(_ firstStage: [SearchResult], by scores: RerankScores, k: Int) -> RerankedRanking {
        RerankedRanking(final: Self.reorder(firstStage, scores: scores.final, k: k),
                        crossOnly: scores.crossOnly.map { Self.reorder(firstStage, scores: $0, k: k) })
    }

    /// The first `scores.count` results ordered by `scores` (ties keep first-stage order), the rest after them
    /// in their first-stage order; the best k.
    public static func reorder(_ results: [SearchResult], scores: [Float], k: Int) -> [RankedHit] {
        let reranked = zip(results, scores).enumerated()
            .sorted { $0.element.1 != $1.element.1 ? $0.element.1 > $1.element.1 : $0.offset < $1.offset }
            .map { RankedHit(result: $0.element.0, rerankScore: $0.element.1) }
        return Array((reranked + results.dropFirst(scores.count).map { RankedHit(result: $0) }).prefix(k))
    }
}

/// The encoder work a search needs, supplied by a caller that runs the encoder its own way (the service,
/// through its dynamic-batching schedulers); the steps around it stay the pipeline's.
public protocol SearchEncoderWork: Sendable {
    /// The query embedded as the index embeds queries (`SearchIndex.queryEmbeddingOptions`).
    func queryEmbedding(_ query: String) async throws -> [Float]
    /// The reranker's scores for the candidates' texts; `similarity` as `PairScorer.rerankScores` takes it.
    func rerankScores(query: String, documents: [String], similarity: [Float]?) async throws -> RerankScores
}

extension SearchPipeline {
    /// `search(_:k:reranker:)` with the encoder work done by `work` (`reranker` answers what it fuses).
    public func search(_ query: String, k: Int, reranker: PairScorer?, work: some SearchEncoderWork) async throws -> [RankedHit] {
        let embedding = needsQueryEmbedding(reranker: reranker) ? try await work.queryEmbedding(query) : nil
        let first = try firstStage(query, queryEmbedding: embedding, k: k, reranking: reranker != nil)
        let head = candidates(of: first)
        guard let reranker, !head.isEmpty else { return first.prefix(k).map { RankedHit(result: $0) } }
        let similarity = try storedSimilarity(for: reranker, queryEmbedding: embedding, candidates: head)
        let scores = try await work.rerankScores(query: query, documents: head.map(\.text), similarity: similarity)
        return rank(first, by: scores, k: k).final
    }
}
