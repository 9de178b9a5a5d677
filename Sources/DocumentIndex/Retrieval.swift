import Foundation
import GemmaEncoder

/// Scores (query, document) pairs jointly: a cross-encoder reranker. Higher is more relevant.
public protocol PairScorer: Sendable {
    func scores(query: String, documents: [String]) throws -> [Float]
    /// Named score lists from one pass, "reranked" (what `scores` gives) among them; evaluation reports each.
    func scoreVariants(query: String, documents: [String]) throws -> [String: [Float]]
}

extension PairScorer {
    public func scoreVariants(query: String, documents: [String]) throws -> [String: [Float]] {
        ["reranked": try scores(query: query, documents: documents)]
    }
}

extension SearchIndex {
    /// Retrieve, then rerank: the first `candidates` results of `mode` are re-scored by `reranker` and
    /// the best k returned with the reranker's scores.
    public func search(_ query: String, k: Int, mode: SearchMode, reranker: PairScorer, candidates: Int) throws -> [SearchResult] {
        let firstStage = try search(query, k: max(k, candidates), mode: mode)
        return try rerank(query, firstStage, reranker: reranker, candidates: candidates, k: k)
    }

    /// Re-scores the first `candidates` of `results`; those below stay after them in their first-stage order.
    func rerank(_ query: String, _ results: [SearchResult], reranker: PairScorer, candidates: Int, k: Int) throws -> [SearchResult] {
        let scores = try reranker.scores(query: query, documents: results.prefix(candidates).map(\.text))
        return Self.reorder(results, scores: scores, k: k)
    }

    /// The first `scores.count` results ordered by `scores` (which become their scores), the rest after them
    /// in their first-stage order; the best k.
    public static func reorder(_ results: [SearchResult], scores: [Float], k: Int) -> [SearchResult] {
        let head = Array(results.prefix(scores.count))
        var reranked = zip(head, scores).enumerated()
            .sorted { $0.element.1 != $1.element.1 ? $0.element.1 > $1.element.1 : $0.offset < $1.offset }
            .map { item -> SearchResult in
                var r = item.element.0
                r.score = Double(item.element.1)
                return r
            }
        reranked += results.dropFirst(scores.count)
        return Array(reranked.prefix(k))
    }
}

/// A query with the ids of the documents that answer it: `{"id", "text", "relevant": [ids]}` rows.
public struct RetrievalQuery: Sendable, Equatable {
    public var id: String
    public var text: String
    public var relevant: [String]

    public init(id: String, text: String, relevant: [String]) {
        self.id = id
        self.text = text
        self.relevant = relevant
    }

    public static func read(path: String) throws -> [RetrievalQuery] {
        let rows = try JSONLines.read(path: path)
        guard !rows.isEmpty else { throw IndexError.invalidCorpus("\(path): no queries") }
        return try rows.map { row in
            let at = "\(path):\(row.line)"
            guard let text = row.object["text"] as? String else { throw IndexError.invalidCorpus("\(at): missing or non-string field \"text\"") }
            let id = row.object["id"].map { "\($0)" } ?? String(row.line)
            guard let relevant = (row.object["relevant"] as? [Any])?.map({ "\($0)" }), !relevant.isEmpty else {
                throw IndexError.invalidCorpus("\(at): field \"relevant\" must be a non-empty array of document ids")
            }
            return RetrievalQuery(id: id, text: text, relevant: relevant)
        }
    }
}

/// nDCG@10, MRR@10 and Recall@100 with binary relevance, averaged over queries.
public struct RetrievalMetrics: Codable, Sendable, Equatable {
    public var ndcg10: Double
    public var mrr10: Double
    public var recall100: Double

    enum CodingKeys: String, CodingKey { case ndcg10 = "ndcg@10", mrr10 = "mrr@10", recall100 = "recall@100" }

    public init(ndcg10: Double, mrr10: Double, recall100: Double) {
        self.ndcg10 = ndcg10
        self.mrr10 = mrr10
        self.recall100 = recall100
    }

    /// One query's metrics for a ranked list of ids.
    public init(ranking: [String], relevant: Set<String>) {
        var dcg = 0.0, firstHit: Int?
        for (i, id) in ranking.prefix(10).enumerated() where relevant.contains(id) {
            dcg += 1 / log2(Double(i) + 2)
            if firstHit == nil { firstHit = i }
        }
        let ideal = (0..<min(relevant.count, 10)).reduce(0.0) { $0 + 1 / log2(Double($1) + 2) }
        ndcg10 = ideal > 0 ? dcg / ideal : 0
        mrr10 = firstHit.map { 1 / Double($0 + 1) } ?? 0
        recall100 = relevant.isEmpty ? 0 : Double(ranking.prefix(100).filter(relevant.contains).count) / Double(relevant.count)
    }

    public static func mean(_ all: [RetrievalMetrics]) -> RetrievalMetrics {
        let n = Double(max(all.count, 1))
        return RetrievalMetrics(ndcg10: all.reduce(0) { $0 + $1.ndcg10 } / n, mrr10: all.reduce(0) { $0 + $1.mrr10 } / n,
                                recall100: all.reduce(0) { $0 + $1.recall100 } / n)
    }
}

public enum RetrievalEvaluation {
    /// Metrics per mode ("vector", "keyword", "hybrid", and "reranked" when a reranker is given: the first
    /// `candidates` vector results re-scored, the rest of the top 100 after them; a fused reranker adds
    /// "reranked_cross_only", its head alone).
    public static func evaluate(_ index: SearchIndex, queries: [RetrievalQuery], reranker: PairScorer? = nil,
                                candidates: Int = 50, progress: ((Int, Int) -> Void)? = nil) throws -> [String: RetrievalMetrics] {
        var results: [String: [RetrievalMetrics]] = [:]
        let texts = queries.map(\.text)
        var vectorRankings: [[SearchResult]] = []
        for mode in SearchMode.allCases {
            let rankings = try index.search(texts, k: 100, mode: mode)
            if mode == .vector { vectorRankings = rankings }
            results[mode.rawValue] = zip(rankings, queries).map { RetrievalMetrics(ranking: $0.map(\.id), relevant: Set($1.relevant)) }
        }
        if let reranker {
            for (n, (query, first)) in zip(queries, vectorRankings).enumerated() {
                let head = Array(first.prefix(candidates))
                for (name, scores) in try reranker.scoreVariants(query: query.text, documents: head.map(\.text)) {
                    let ranking = SearchIndex.reorder(first, scores: scores, k: 100)
                    results[name, default: []].append(RetrievalMetrics(ranking: ranking.map(\.id), relevant: Set(query.relevant)))
                }
                progress?(n + 1, queries.count)
            }
        }
        return results.mapValues(RetrievalMetrics.mean)
    }
}
