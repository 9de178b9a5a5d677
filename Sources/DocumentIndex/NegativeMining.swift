import EncoderKernels
import Foundation
import GemmaEncoder

/// Training rows from an index: for each query, its first relevant document as the positive and hard
/// negatives among the index's best-ranked documents that are not relevant, with the controls of
/// sentence-transformers' `mine_hard_negatives`: a window of ranks, score bounds, a margin below the
/// positive's score (so near-duplicates of the positive are not taken as negatives), top or random
/// sampling, and optional rescoring by a cross-encoder whose scores the bounds and margins then apply to.
public enum NegativeMining {
    public struct Row: Sendable, Equatable {
        public var queryID: String
        public var query: String
        public var positive: String
        public var negatives: [String]
        /// The positive's score and each negative's (cosine with the query's stored vector, or the
        /// cross-encoder's score when one rescored them).
        public var positiveScore: Double
        public var negativeScores: [Double]
    }

    public enum Sampling: String, Sendable, CaseIterable, Codable {
        /// The best-ranked candidates that pass the filters.
        case top
        /// A seeded random choice among all candidates that pass them.
        case random
    }

    public struct Options: Sendable, Equatable {
        public var negatives = 3
        /// Candidates skipped first, counted among the non-relevant ones in rank order (sentence-transformers'
        /// range_min).
        public var rangeMin = 0
        /// Candidates considered, counted the same way (range_max; default rangeMin + 10 × negatives, at least 50).
        public var rangeMax: Int?
        /// A negative's score must be ≤ the positive's − this.
        public var absoluteMargin: Double?
        /// A negative's score must be ≤ the positive's × (1 − this) (positive − this × |positive| for a score below 0).
        public var relativeMargin: Double?
        public var maxScore: Double?
        public var minScore: Double?
        public var sampling = Sampling.top
        public var seed: UInt64 = 0
        /// The search that ranks candidates.
        public var mode = SearchMode.vector

        public init() {}

        var depth: Int { rangeMax ?? max(50, rangeMin + 10 * negatives) }

        public func validate() throws(IndexError) {
            guard negatives > 0, rangeMin >= 0, depth > rangeMin else {
                throw .invalidCorpus("negatives must be positive, range-min not negative and range-max above range-min (negatives \(negatives), range-min \(rangeMin), range-max \(depth))")
            }
            for (name, value) in [("absolute margin", absoluteMargin), ("relative margin", relativeMargin)] {
                if let value, !(value.isFinite && value >= 0) { throw .invalidCorpus("the \(name) must be a number ≥ 0 (got \(value))") }
            }
            if let r = relativeMargin, r >= 1 { throw .invalidCorpus("the relative margin must be below 1 (got \(r))") }
        }
    }

    /// Mines `queries` against `index`. With `rescorer`, the positive and every candidate in the window are
    /// scored by it instead of by the stored cosine, and the window is re-ranked by those scores.
    public static func mine(_ index: SearchIndex, queries: [RetrievalQuery], options: Options,
                            rescorer: (any PairScorer)? = nil) throws -> [Row] {
        try options.validate()
        let positives = try index.documentText(ids: queries.map { $0.relevant[0] })
        let most = queries.map(\.relevant.count).max() ?? 1
        // Each query embedded once: for the search and for the cosines of its candidates' stored vectors.
        let embeddings = try index.model.embed(queries.map(\.text), options: index.queryEmbeddingOptions)
        let rankings = try index.search(queries.map(\.text), embeddings: embeddings, k: options.depth + most, mode: options.mode)
        var rng = SeededGenerator(seed: options.seed ^ 0x4E47_0000)
        return try queries.indices.map { q in
            let query = queries[q], pair = (positives[q], rankings[q]), embedding = embeddings[q]
            guard let positiveText = pair.0 else {
                throw IndexError.invalidCorpus("query \(query.id): relevant document \(query.relevant[0]) is not in the index")
            }
            let relevant = Set(query.relevant)
            // Relevant by id, or the positive's very text under another id (a duplicate would be a "negative" the
            // loss can never rank below the positive).
            let window = Array(pair.1.filter { !relevant.contains($0.id) && $0.text != positiveText }.prefix(options.depth)
                .dropFirst(options.rangeMin))
            let positive = SearchResult(id: query.relevant[0], score: 0, text: positiveText, metadataJSON: "{}")
            var scores: [Double]
            var candidates = window
            if let rescorer {
                let similarity = try rescorer.fusedSimilarity.flatMap { s -> [Float]? in
                    index.storesEmbeddings(of: s) ? try index.storedCosines(query: embedding, results: [positive] + window) : nil
                }
                let all = try rescorer.rerankScores(query: query.text, documents: ([positive] + window).map(\.text), similarity: similarity).final
                scores = all.map(Double.init)
                let order = window.indices.sorted { all[$0 + 1] > all[$1 + 1] }
                candidates = order.map { window[$0] }
                scores = [scores[0]] + order.map { scores[$0 + 1] }
            } else {
                guard let cosines = try index.storedCosines(query: embedding, results: [positive] + window) else {
                    throw IndexError.invalidCorpus("query \(query.id): a candidate's stored vector is missing (the index changed during mining); run again")
                }
                scores = cosines.map(Double.init)
            }
            let positiveScore = scores[0]
            var passing: [(SearchResult, Double)] = []
            for (candidate, score) in zip(candidates, scores.dropFirst()) {
                if let m = options.absoluteMargin, score > positiveScore - m { continue }
                // p·(1 − m) for a positive score; p − m·|p| keeps "below the positive" for a cross-encoder's negative logits.
                if let m = options.relativeMargin, score > positiveScore - m * abs(positiveScore) { continue }
                if let high = options.maxScore, score > high { continue }
                if let low = options.minScore, score < low { continue }
                passing.append((candidate, score))
            }
            if options.sampling == .random { passing.shuffle(using: &rng) }
            let chosen = passing.prefix(options.negatives)
            return Row(queryID: query.id, query: query.text, positive: positiveText, negatives: chosen.map(\.0.text),
                       positiveScore: positiveScore, negativeScores: chosen.map(\.1))
        }
    }

    /// The first `negatives` non-relevant results after skipping `skip` of them (no margins, top sampling).
    public static func mine(_ index: SearchIndex, queries: [RetrievalQuery], negatives: Int, mode: SearchMode,
                            skip: Int = 0) throws -> [Row] {
        var options = Options()
        options.negatives = negatives
        options.rangeMin = skip
        options.mode = mode
        return try mine(index, queries: queries, options: options)
    }
}
