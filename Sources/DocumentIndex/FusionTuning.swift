import Foundation

/// What `tuneFusion` measured: nDCG@10 of every candidate fusion on the labelled queries, of each
/// search alone, and the best fusion (with its `tuned` record).
public struct FusionTuningReport: Sendable {
    public var candidates: [(fusion: HybridFusion, ndcg10: Double)]
    public var vectorNDCG10: Double
    public var keywordNDCG10: Double
    public var best: HybridFusion
}

extension SearchIndex {
    /// Vector weights `tuneFusion` tries for each method: 0 to 1 in steps of 0.05 (the ends are each search alone).
    public static let fusionWeights = (0...20).map { Double($0) / 20 }
}

extension SearchableIndex {
    /// Fits hybrid search to labelled queries: nDCG@10 of both fusion methods at every weight of `weights`, each
    /// query's vector and keyword results (`HybridFusion.candidates` each, as hybrid search takes them) searched
    /// once. As the weights include 1 and 0, the best is never below vector or keyword search alone on these
    /// queries. Shards are tuned as one (their merged lists, as their hybrid search fuses them), so one fit
    /// serves them all. Nothing is written (`setFusion` stores the result).
    public func tuneFusion(_ queries: [RetrievalQuery], weights: [Double] = SearchIndex.fusionWeights) throws -> FusionTuningReport {
        guard !queries.isEmpty else { throw IndexError.invalidCorpus("no labelled queries to tune hybrid search on") }
        guard count > 0 else { throw IndexError.invalidCorpus("the index is empty") }
        let embeddings = try model.embed(queries.map(\.text), options: queryEmbeddingOptions)
        let depth = HybridFusion.candidates
        var lists: [(vector: [(id: String, score: Double)], keyword: [(id: String, score: Double)], relevant: Set<String>)] = []
        for (q, query) in queries.enumerated() {
            let vector = try search([query.text], embeddings: [embeddings[q]], k: depth, mode: .vector, tuning: SearchTuning())[0]
            let keyword = try search([query.text], embeddings: [], k: depth, mode: .keyword, tuning: SearchTuning())[0]
            lists.append((vector.map { (id: $0.id, score: $0.score) }, keyword.map { (id: $0.id, score: $0.score) }, Set(query.relevant)))
        }
        func ndcg(_ rank: ([(id: String, score: Double)], [(id: String, score: Double)]) -> [(id: String, score: Double)]) -> Double {
            lists.reduce(0) { sum, q in
                sum + RetrievalMetrics(ranking: rank(q.vector, q.keyword).prefix(10).map(\.id), relevant: q.relevant).ndcg10
            } / Double(lists.count)
        }
        var candidates: [(fusion: HybridFusion, ndcg10: Double)] = []
        for method in HybridFusion.Method.allCases {
            for w in weights {
                let fusion = HybridFusion(method: method, vectorWeight: w)
                candidates.append((fusion, ndcg { fusion.fuse(vector: $0, keyword: $1) }))
            }
        }
        let vector = ndcg { v, _ in v }, keyword = ndcg { _, k in k }
        var best = candidates.max { $0.ndcg10 < $1.ndcg10 }!
        best.fusion.tuned = .init(queries: queries.count, ndcg10: best.ndcg10, vectorNDCG10: vector, keywordNDCG10: keyword)
        return FusionTuningReport(candidates: candidates, vectorNDCG10: vector, keywordNDCG10: keyword, best: best.fusion)
    }
}
