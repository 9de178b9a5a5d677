import Foundation
import GemmaEncoder

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

/// nDCG@10, MRR@10, Recall@1/5/10/20/100 and MAP@100 with binary relevance (one query's, or their mean).
public struct RetrievalMetrics: Codable, Sendable, Equatable {
    public var ndcg10: Double
    public var mrr10: Double
    public var recall1 = 0.0, recall5 = 0.0, recall10 = 0.0, recall20 = 0.0
    public var recall100: Double
    /// Mean over relevant documents of the precision at each one's rank (0 for those past rank 100).
    public var map100 = 0.0

    enum CodingKeys: String, CodingKey {
        case ndcg10 = "ndcg@10", mrr10 = "mrr@10", recall1 = "recall@1", recall5 = "recall@5", recall10 = "recall@10"
        case recall20 = "recall@20", recall100 = "recall@100", map100 = "map@100"
    }

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
        func recall(_ k: Int) -> Double {
            relevant.isEmpty ? 0 : Double(Set(ranking.prefix(k)).intersection(relevant).count) / Double(relevant.count)
        }
        (recall1, recall5, recall10, recall20, recall100) = (recall(1), recall(5), recall(10), recall(20), recall(100))
        var hits = 0, precisionSum = 0.0, seen = Set<String>()
        for (i, id) in ranking.prefix(100).enumerated() where relevant.contains(id) && seen.insert(id).inserted {
            hits += 1
            precisionSum += Double(hits) / Double(i + 1)
        }
        map100 = relevant.isEmpty ? 0 : precisionSum / Double(relevant.count)
    }

    public static func mean(_ all: [RetrievalMetrics]) -> RetrievalMetrics {
        let n = Double(max(all.count, 1))
        func average(_ value: KeyPath<RetrievalMetrics, Double>) -> Double { all.reduce(0) { $0 + $1[keyPath: value] } / n }
        var m = RetrievalMetrics(ndcg10: average(\.ndcg10), mrr10: average(\.mrr10), recall100: average(\.recall100))
        (m.recall1, m.recall5, m.recall10, m.recall20) = (average(\.recall1), average(\.recall5), average(\.recall10), average(\.recall20))
        m.map100 = average(\.map100)
        return m
    }
}

public enum RetrievalEvaluation {
    /// Metrics per mode ("vector", "keyword", "hybrid", and "reranked" when a reranker is given: the first
    /// `candidates` vector results re-scored by `SearchPipeline`, the rest of the top 100 after them; a fused
    /// reranker adds "reranked_cross_only", its head alone).
    public static func evaluate(_ index: SearchIndex, queries: [RetrievalQuery], reranker: PairScorer? = nil,
                                candidates: Int = 50, progress: ((Int, Int) -> Void)? = nil) throws -> [String: RetrievalMetrics] {
        try evaluatePerQuery(index, queries: queries, reranker: reranker, candidates: candidates, progress: progress)
            .mapValues(RetrievalMetrics.mean)
    }

    /// Each query's metrics per mode, in query order (what `eval-retrieval --per-query` writes).
    public static func evaluatePerQuery(_ index: SearchIndex, queries: [RetrievalQuery], reranker: PairScorer? = nil,
                                        candidates: Int = 50, progress: ((Int, Int) -> Void)? = nil) throws -> [String: [RetrievalMetrics]] {
        var results: [String: [RetrievalMetrics]] = [:]
        func record(_ name: String, _ ranking: [String], _ query: RetrievalQuery) {
            results[name, default: []].append(RetrievalMetrics(ranking: ranking, relevant: Set(query.relevant)))
        }
        let texts = queries.map(\.text)
        // The queries are embedded once, for vector and hybrid search and for the reranker's fused cosine.
        let embeddings = index.count > 0 ? try index.model.embed(texts, options: index.queryEmbeddingOptions) : []
        var vectorRankings: [[SearchResult]] = []
        for mode in SearchMode.allCases {
            let rankings = try index.search(texts, embeddings: mode == .keyword ? [] : embeddings, k: 100, mode: mode)
            if mode == .vector { vectorRankings = rankings }
            for (ranking, query) in zip(rankings, queries) { record(mode.rawValue, ranking.map(\.id), query) }
        }
        guard let reranker else { return results }
        let pipeline = SearchPipeline(index: index, mode: .vector, candidates: candidates)
        for (n, (query, first)) in zip(queries, vectorRankings).enumerated() {
            let ranked = try pipeline.rerank(query.text, firstStage: first, queryEmbedding: embeddings.isEmpty ? nil : embeddings[n],
                                             scorer: reranker, k: 100)
            record("reranked", ranked.final.map(\.result.id), query)
            // Every query gets a row in every mode (a query without candidates has no separate head-only ranking).
            if reranker.fusedSimilarity != nil || ranked.crossOnly != nil {
                record("reranked_cross_only", (ranked.crossOnly ?? ranked.final).map(\.result.id), query)
            }
            progress?(n + 1, queries.count)
        }
        return results
    }
}
