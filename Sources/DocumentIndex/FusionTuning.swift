import Foundation

/// What `SearchIndex.tuneFusion` measured: nDCG@10 of every candidate fusion on the labelled queries, of each
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

    /// Fits hybrid search to labelled queries: nDCG@10 of both fusion methods at every weight of `weights`, each
    /// query's vector and keyword candidates (`HybridFusion.candidates` each, as hybrid search takes them) searched once. As the weights
    /// include 1 and 0, the best is never below vector or keyword search alone on these queries. Nothing is
    /// written (`setFusion` stores the result).
    public func tuneFusion(_ queries: [RetrievalQuery], weights: [Double] = fusionWeights) throws -> FusionTuningReport {
        guard !queries.isEmpty else { throw IndexError.invalidCorpus("no labelled queries to tune hybrid search on") }
        guard count > 0 else { throw IndexError.invalidCorpus("\(directory.path): the index is empty") }
        let embeddings = try encoder.embed(queries.map(\.text), options: queryEmbeddingOptions)
        var lists: [(vector: [(id: Int64, score: Double)], keyword: [(id: Int64, score: Double)], relevant: Set<String>)] = []
        for (q, query) in queries.enumerated() {
            let (vector, keyword) = try candidates(query.text, embedding: embeddings[q], keyword: true, depth: HybridFusion.candidates)
            let relevant = Set(try query.relevant.compactMap { try store.id(forExternalID: $0) }.map(String.init))
            lists.append((vector, keyword, relevant))
        }
        func ndcg(_ rank: ([(id: Int64, score: Double)], [(id: Int64, score: Double)]) -> [(id: Int64, score: Double)]) -> Double {
            lists.reduce(0) { sum, q in
                sum + RetrievalMetrics(ranking: rank(q.vector, q.keyword).prefix(10).map { String($0.id) }, relevant: q.relevant).ndcg10
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
