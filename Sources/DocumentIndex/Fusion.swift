/// Reciprocal rank fusion (Cormack et al. 2009): score(d) = Σ over rankings of w · 1 / (k + rank of d), ranks from
/// 1, each ranking's weight w (1 each unless given). It needs no score calibration between BM25 and cosine.
public func reciprocalRankFusion<ID: Hashable>(_ rankings: [[ID]], weights: [Double]? = nil, k: Double = 60) -> [(id: ID, score: Double)] {
    fused(rankings.enumerated().map { r, ranking in
        let w = weights?[r] ?? 1
        return ranking.enumerated().map { (id: $0.element, score: w / (k + Double($0.offset + 1))) }
    })
}

/// The sum of each id's contributions over `lists`, best first; ties keep the order in which the lists first named
/// the ids (the first list's first).
func fused<ID: Hashable>(_ lists: [[(id: ID, score: Double)]]) -> [(id: ID, score: Double)] {
    var scores: [ID: Double] = [:]
    var firstSeen: [ID: Int] = [:]
    for list in lists {
        for (id, score) in list {
            scores[id, default: 0] += score
            if firstSeen[id] == nil { firstSeen[id] = firstSeen.count }
        }
    }
    return scores.sorted { a, b in a.value != b.value ? a.value > b.value : firstSeen[a.key]! < firstSeen[b.key]! }
        .map { (id: $0.key, score: $0.value) }
}

/// How hybrid search fuses its vector and keyword rankings: reciprocal ranks or min–max normalized scores, each
/// weighted by `vectorWeight` and 1 − `vectorWeight`. An index stores the fusion `index tune` fitted on labelled
/// queries (`IndexManifest.fusion`); an index without one uses `standard`.
public struct HybridFusion: Codable, Sendable, Equatable, CustomStringConvertible {
    public enum Method: String, Codable, Sendable, CaseIterable {
        /// w / (60 + vector rank) + (1 − w) / (60 + keyword rank), both doubled (so w = 0.5 is plain RRF).
        case rrf
        /// w · the cosine and (1 − w) · BM25, each min–max normalized over the query's candidates from its search.
        case score
    }

    public var method: Method
    /// The vector ranking's share in [0, 1]: 1 ranks as vector search, 0 as keyword search.
    public var vectorWeight: Double
    /// How `index tune` chose it (nil for a fusion not fitted).
    public var tuned: Tuning?

    public struct Tuning: Codable, Sendable, Equatable {
        /// The labelled queries it was fitted on, and their nDCG@10 under it and under each search alone.
        public var queries: Int
        public var ndcg10: Double
        public var vectorNDCG10: Double
        public var keywordNDCG10: Double

        public init(queries: Int, ndcg10: Double, vectorNDCG10: Double, keywordNDCG10: Double) {
            self.queries = queries
            self.ndcg10 = ndcg10
            self.vectorNDCG10 = vectorNDCG10
            self.keywordNDCG10 = keywordNDCG10
        }

        enum CodingKeys: String, CodingKey {
            case queries, ndcg10 = "ndcg@10", vectorNDCG10 = "vector_ndcg@10", keywordNDCG10 = "keyword_ndcg@10"
        }
    }

    public init(method: Method, vectorWeight: Double, tuned: Tuning? = nil) {
        self.method = method
        self.vectorWeight = vectorWeight
        self.tuned = tuned
    }

    enum CodingKeys: String, CodingKey { case method, vectorWeight = "vector_weight", tuned }

    /// What an index without a fitted fusion uses: normalized scores, vector weight 0.7 — the best of `index tune`'s
    /// candidates for EmbeddingGemma on the Debian training queries (0.9490 nDCG@10 there against 0.9429 for vector
    /// search alone; on the 797 test queries 0.9509 against 0.9485), where plain reciprocal rank fusion scores 0.9193,
    /// below vector search.
    public static let standard = HybridFusion(method: .score, vectorWeight: 0.7)

    public var description: String { String(format: "%@ fusion, vector weight %.2f", method.rawValue, vectorWeight) }

    /// The two rankings (best first, with their scores) fused, best first; ties keep vector order, then keyword order.
    public func fuse<ID: Hashable>(vector: [(id: ID, score: Double)], keyword: [(id: ID, score: Double)]) -> [(id: ID, score: Double)] {
        let w = min(max(vectorWeight, 0), 1)
        switch method {
        case .rrf:
            return reciprocalRankFusion([vector.map(\.id), keyword.map(\.id)], weights: [2 * w, 2 * (1 - w)])
        case .score:
            return fused([Self.normalized(vector, weight: w), Self.normalized(keyword, weight: 1 - w)])
        }
    }

    /// The search mode this fusion makes best: hybrid when it was fitted and beat vector search on its queries,
    /// else vector.
    public var bestMode: SearchMode {
        guard let tuned, tuned.ndcg10 > tuned.vectorNDCG10 else { return .vector }
        return .hybrid
    }

    /// The fitted fusion that every one of several shards holds (`fitted`: each one's, nil for none), or nil when
    /// one has none or they differ: what shards searched as one fuse by, the standard fusion when nil.
    public static func shared(_ fitted: [HybridFusion?]) -> HybridFusion? {
        guard let first = fitted.first, fitted.allSatisfy({ $0 == first }) else { return nil }
        return first
    }

    /// How many of each search's results hybrid search fuses (more when more are asked for).
    public static let candidates = 50

    /// How many results each search of a k-result request takes: k, or for hybrid at least `candidates` of each.
    public static func depth(k: Int, mode: SearchMode) -> Int { mode == .hybrid ? max(k, candidates) : k }

    /// Scores (best first) mapped to [0, 1] between the list's first and its `candidates`-th (all 1 when they are
    /// equal; results further down 0, as if absent), times `weight`: the fused order of the first results does not
    /// depend on how deep the lists were searched.
    static func normalized<ID>(_ list: [(id: ID, score: Double)], weight: Double) -> [(id: ID, score: Double)] {
        guard let high = list.first?.score else { return [] }
        let low = list[min(list.count, candidates) - 1].score
        return list.map { (id: $0.id, score: weight * (high > low ? max(0, ($0.score - low) / (high - low)) : 1)) }
    }
}
