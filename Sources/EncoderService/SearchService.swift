import DocumentIndex
import Foundation
import GemmaEncoder
import TaskHeads

extension EncoderService {
    /// /search: the library's `SearchPipeline`, its encoder work (the query's embedding, the reranker's pairs
    /// and cosines) run through the schedulers between the pipeline's steps.
    /// Without `mode`, the index's best measured one (`IndexManifest.bestSearchMode`); the mode run is returned.
    public func search(index name: String?, query: String, k: Int, mode: SearchMode?, rerank: Bool,
                       candidates: Int, tuning: SearchTuning, vector: [Float]? = nil) async throws(ServiceError)
        -> (index: String, mode: SearchMode, results: [RankedHit]) {
        let (indexName, served) = try self.index(named: name)
        // One version of a watched index for the whole request.
        let index = served.snapshot
        if let vector, vector.count != index.manifest.dimension || !vector.allSatisfy(\.isFinite) {
            throw .validation("vector must hold \(index.manifest.dimension) finite numbers (index '\(indexName)'), got \(vector.count)")
        }
        guard k > 0, k <= 1000, candidates > 0, candidates <= 1000 else { throw .validation("k and candidates must be in 1...1000") }
        guard !query.isEmpty else { throw .empty("`query` must not be empty") }
        try Self.check(tuning, index: indexName, factory: index.manifest.factory)
        let reranker = rerank ? try loadedReranker() : nil
        let mode = mode ?? index.manifest.bestSearchMode
        let pipeline = SearchPipeline(index: index, mode: mode, candidates: candidates, tuning: tuning)
        let work = ScheduledSearchWork(service: self, index: index, reranker: reranker, vector: vector)
        do {
            return (indexName, mode, try await pipeline.search(query, k: k, reranker: reranker?.scorer, work: work))
        } catch {
            throw ServiceError(classifying: error)
        }
    }

    /// /search through the shard router: the query embedded once here (unless the request brings its vector or
    /// asks for keyword search), the shards' answers merged; shards that failed are returned beside the results.
    public func routedSearch(index name: String?, query: String, k: Int, mode: SearchMode, rerank: Bool, tuning: SearchTuning,
                             vector: [Float]?) async throws(ServiceError) -> (index: String, results: [SearchResult], failed: [ShardRouter.Failure]) {
        guard let router else { throw ServiceError(.internal, "no shard router") }
        if let name, name != router.index { throw .notFound("unknown index '\(name)' (the shards serve '\(router.index)')") }
        guard k > 0, k <= 1000 else { throw .validation("k must be in 1...1000") }
        guard !query.isEmpty else { throw .empty("`query` must not be empty") }
        guard !rerank else { throw .validation("rerank is not available through a shard router: rerank on a shard server, or send the results to /rerank") }
        // Refused here, as a local index would: each shard would refuse it, and the answer would look like an outage.
        try Self.check(tuning, index: router.index, factory: router.factory)
        if let vector, vector.count != router.dimension || !vector.allSatisfy(\.isFinite) {
            throw .validation("vector must hold \(router.dimension) finite numbers, got \(vector.count)")
        }
        var embedding = vector
        if mode != .keyword, embedding == nil {
            embedding = try await queryEmbedding(query, encoder: models[0].encoder, options: router.options)
        }
        let (results, failed) = await router.search(query: query, vector: embedding, k: k, mode: mode, tuning: tuning)
        // No shard answered: an outage, not an empty result.
        guard failed.count < router.shards.count else {
            throw .backend("no shard answered: " + failed.map { "\($0.shard): \($0.error)" }.joined(separator: "; "))
        }
        return (router.index, results, failed)
    }

    /// Per-query search parameters in range and ones the index's FAISS factory has (413 Validation otherwise).
    static func check(_ tuning: SearchTuning, index: String, factory: String) throws(ServiceError) {
        guard tuning.nprobe.map({ $0 > 0 }) ?? true, tuning.efSearch.map({ $0 > 0 && $0 <= 1 << 20 }) ?? true else {
            throw .validation("nprobe must be positive and ef_search in 1...\(1 << 20)")
        }
        if tuning.nprobe != nil, !factory.contains("IVF") {
            throw .validation("nprobe applies to IVF indexes; index '\(index)' is \(factory)")
        }
        if tuning.efSearch != nil, !factory.contains("HNSW") {
            throw .validation("ef_search applies to HNSW indexes; index '\(index)' is \(factory)")
        }
    }

    /// The index named `name`, or the only one loaded when no name is given.
    func index(named name: String?) throws(ServiceError) -> (String, any SearchableIndex) {
        let loaded = indexes.keys.sorted().joined(separator: ", ")
        if let name {
            guard let index = indexes[name] else { throw .notFound("unknown index '\(name)' (loaded: \(loaded))") }
            return (name, index)
        }
        guard indexes.count == 1, let only = indexes.first else {
            throw indexes.isEmpty ? .notFound("no index is loaded (the server was started without one)")
                : .validation("several indexes are loaded: name one with \"index\" (\(loaded))")
        }
        return (only.key, only.value)
    }

    /// The query embedded as the index embeds queries, through the index model's scheduler.
    func queryEmbedding(_ query: String, index: any SearchableIndex) async throws(ServiceError) -> [Float] {
        try await queryEmbedding(query, encoder: index.model, options: index.queryEmbeddingOptions)
    }

    /// `query` embedded by `encoder` with `options`, through its scheduler (batched with other requests).
    func queryEmbedding(_ query: String, encoder: TextEncoder, options: EmbeddingOptions) async throws(ServiceError) -> [Float] {
        let (inputs, _) = try tokenize(InputBatch(texts: [query]), encoder: encoder, prompt: options.prompt, truncate: true)
        let states = try await states(inputs, encoder: encoder, attention: options.attention)
        return try ServiceError.mapping { try encoder.embed(states: states, inputs: inputs, options: options)[0] }
    }
}

/// A search's encoder work through the service's schedulers, batched with other requests.
private struct ScheduledSearchWork: SearchEncoderWork {
    let service: EncoderService
    let index: any SearchableIndex
    let reranker: TrainedReranker?
    /// The query's embedding when the request brought it.
    let vector: [Float]?

    func queryEmbedding(_ query: String) async throws -> [Float] {
        if let vector { return vector }
        return try await service.queryEmbedding(query, index: index)
    }

    func rerankScores(query: String, documents: [String], similarity: [Float]?) async throws -> RerankScores {
        guard let reranker else { throw ServiceError(.internal, "reranking without a reranker") }
        return try await service.rerankScores(reranker, query: query, documents: documents,
                                              pairs: reranker.inputs(query: query, documents: documents), similarity: similarity)
    }
}
