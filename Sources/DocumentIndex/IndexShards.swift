import Foundation
import GemmaEncoder
import VectorSearch

/// What search needs of an index: one index directory (`SearchIndex`), or several searched as one
/// (`IndexShards`). `SearchPipeline`, the CLI and the service search through it.
public protocol SearchableIndex: AnyObject, Sendable {
    /// The index's manifest (for shards: the first shard's settings, the documents of all).
    var manifest: IndexManifest { get }
    var count: Int { get }
    /// The model that embeds queries for it.
    var model: TextEncoder { get }
    /// How a query is embedded for it (its model's query prompt, attention and pooling).
    var queryEmbeddingOptions: EmbeddingOptions { get }
    /// The k best documents per query; `embeddings` holds the queries' embeddings (empty for keyword search).
    func search(_ queries: [String], embeddings: [[Float]], k: Int, mode: SearchMode, tuning: SearchTuning) throws -> [[SearchResult]]
    /// Whether the stored vectors are the embeddings `similarity` describes (a reranker can reuse them).
    func storesEmbeddings(of similarity: FusedSimilarity) -> Bool
    /// The cosine of `query` with each result's stored vector, or nil when one has none.
    func storedCosines(query: [Float], results: [SearchResult]) throws -> [Float]?
    /// The index one request should use throughout (a watched index's current version), so that its steps
    /// never mix two versions.
    var snapshot: any SearchableIndex { get }
}

extension SearchableIndex {
    public var snapshot: any SearchableIndex { self }

    /// The query's embedding as this index embeds queries.
    public func queryEmbedding(_ query: String) throws -> [Float] {
        try model.embed([query], options: queryEmbeddingOptions)[0]
    }
}

extension SearchIndex: SearchableIndex {}

/// Shard indexes of one collection searched as one (scatter-gather, as Elasticsearch, Milvus and Vespa serve
/// shards): every shard answers with its own best results and they are merged — vector results by score (the
/// cosines of one model are comparable across shards), keyword results by reciprocal rank fusion (BM25 scores
/// depend on each shard's own term statistics, so they are not), hybrid as the fusion of those two merged
/// lists. The shards must embed alike (model, prompts, attention, pooling); they need not share a quantizer.
public final class IndexShards: SearchableIndex, @unchecked Sendable {
    public let shards: [SearchIndex]

    public init(_ shards: [SearchIndex]) throws {
        guard let first = shards.first else { throw IndexError.invalidCorpus("no shards to search") }
        for shard in shards.dropFirst() {
            let differences = ShardCompatibility.embeddingDifferences(first.manifest, shard.manifest)
            guard differences.isEmpty else {
                throw IndexError.modelMismatch("\(shard.directory.path) cannot be searched with \(first.directory.path): different \(differences.joined(separator: ", "))")
            }
        }
        self.shards = shards
    }

    /// Shards already known to embed alike (the current versions of `WatchedShards`, each checked when it
    /// was opened).
    init(compatible shards: [SearchIndex]) { self.shards = shards }

    public var manifest: IndexManifest {
        var m = shards[0].manifest
        m.count = count
        m.fusion = HybridFusion.shared(shards.map(\.manifest.fusion))
        return m
    }

    /// The fusion hybrid search applies to the merged lists: the one every shard holds (e.g. the fit of one
    /// `index tune` over the whole collection, set on each shard), else the standard one. A fusion one shard
    /// fitted on its own documents says nothing of the others', so the first shard's is not taken for all;
    /// and without a shared fit the manifest records none, so the best mode falls back to vector search.
    public var fusion: HybridFusion { manifest.fusion ?? .standard }

    public var count: Int { shards.reduce(0) { $0 + $1.count } }
    public var model: TextEncoder { shards[0].model }
    public var queryEmbeddingOptions: EmbeddingOptions { shards[0].queryEmbeddingOptions }

    public func search(_ queries: [String], embeddings: [[Float]], k: Int, mode: SearchMode,
                       tuning: SearchTuning = SearchTuning()) throws -> [[SearchResult]] {
        guard k > 0, !queries.isEmpty else { return queries.map { _ in [] } }
        let depth = HybridFusion.depth(k: k, mode: mode), fusion = self.fusion
        let vector = mode == .keyword || embeddings.isEmpty ? nil
            : try shards.map { try $0.search(queries, embeddings: embeddings, k: depth, mode: .vector, tuning: tuning) }
        let keyword = mode == .vector ? nil : try shards.map { try $0.search(queries, embeddings: [], k: depth, mode: .keyword) }
        return queries.indices.map { q in
            Self.combine(vector: vector?.map { $0[q] }, keyword: keyword?.map { $0[q] }, k: k, mode: mode, fusion: fusion)
        }
    }

    /// One query's answer from each shard's own answers (`vector`, `keyword`: one list per shard, nil when the mode
    /// takes none): vector lists merged by score, keyword lists by reciprocal rank, each merged list cut to what
    /// one index's search would return (hybrid fuses `HybridFusion.depth` of each: with reciprocal ranks, a deeper
    /// list would add votes one index never counts), hybrid the fusion of the two; the k best. Local shards and a
    /// shard router answer through it.
    public static func combine(vector: [[SearchResult]]?, keyword: [[SearchResult]]?, k: Int, mode: SearchMode,
                               fusion: HybridFusion) -> [SearchResult] {
        let depth = HybridFusion.depth(k: k, mode: mode)
        let byScore = vector.map { Array(mergeByScore($0).prefix(depth)) } ?? []
        let byRank = keyword.map { Array(fuse($0).prefix(depth)) } ?? []
        switch mode {
        case .vector: return Array(byScore.prefix(k))
        case .keyword: return Array(byRank.prefix(k))
        case .hybrid: return Array(hybrid(vector: byScore, keyword: byRank, fusion: fusion).prefix(k))
        }
    }

    /// Results of several shards by score, best first (a tie keeps shard order).
    public static func mergeByScore(_ lists: [[SearchResult]]) -> [SearchResult] {
        lists.enumerated().flatMap { shard, results in results.enumerated().map { (shard: shard, rank: $0.offset, result: $0.element) } }
            .sorted { a, b in
                a.result.score != b.result.score ? a.result.score > b.result.score : (a.shard, a.rank) < (b.shard, b.rank)
            }
            .map(\.result)
    }

    /// Hybrid search's fusion of the shards' merged vector results and their fused keyword results (whose scores
    /// are reciprocal-rank scores: BM25 scores of different shards are not comparable).
    public static func hybrid(vector: [SearchResult], keyword: [SearchResult], fusion: HybridFusion) -> [SearchResult] {
        rescored(fusion.fuse(vector: vector.map { (id: $0.id, score: $0.score) }, keyword: keyword.map { (id: $0.id, score: $0.score) }),
                 from: [vector, keyword])
    }

    /// Rankings fused by reciprocal rank (scores become the fused ones); a document in several lists is one.
    public static func fuse(_ lists: [[SearchResult]]) -> [SearchResult] {
        rescored(reciprocalRankFusion(lists.map { $0.map(\.id) }), from: lists)
    }

    /// The fused hits as results: each id's result from the first list holding it, with the fused score.
    private static func rescored(_ hits: [(id: String, score: Double)], from lists: [[SearchResult]]) -> [SearchResult] {
        var byID: [String: SearchResult] = [:]
        for list in lists { for r in list where byID[r.id] == nil { byID[r.id] = r } }
        return hits.map { hit in
            var r = byID[hit.id]!
            r.score = hit.score
            return r
        }
    }

    public func storesEmbeddings(of similarity: FusedSimilarity) -> Bool {
        shards.allSatisfy { $0.storesEmbeddings(of: similarity) }
    }

    public func storedCosines(query: [Float], results: [SearchResult]) throws -> [Float]? {
        var cosines: [Float] = []
        for result in results {
            var found: Float?
            for shard in shards {
                if let c = try shard.storedCosines(query: query, results: [result]) {
                    found = c[0]
                    break
                }
            }
            guard let found else { return nil }
            cosines.append(found)
        }
        return cosines
    }
}
