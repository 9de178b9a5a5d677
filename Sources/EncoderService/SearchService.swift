import DocumentIndex
import Foundation
import GemmaEncoder
import TaskHeads

extension EncoderService {
    /// /search: the library's `SearchPipeline`, its encoder work (the query's embedding, the reranker's pairs
    /// and cosines) run through the schedulers between the pipeline's steps.
    public func search(index name: String?, query: String, k: Int, mode: SearchMode, rerank: Bool,
                       candidates: Int, tuning: SearchTuning) async throws(ServiceError) -> (index: String, results: [RankedHit]) {
        let (indexName, index) = try self.index(named: name)
        guard k > 0, k <= 1000, candidates > 0, candidates <= 1000 else { throw .validation("k and candidates must be in 1...1000") }
        guard !query.isEmpty else { throw .empty("`query` must not be empty") }
        guard tuning.nprobe.map({ $0 > 0 }) ?? true, tuning.efSearch.map({ $0 > 0 && $0 <= 1 << 20 }) ?? true else {
            throw .validation("nprobe must be positive and ef_search in 1...\(1 << 20)")
        }
        let factory = index.manifest.factory
        if tuning.nprobe != nil, !factory.contains("IVF") {
            throw .validation("nprobe applies to IVF indexes; index '\(indexName)' is \(factory)")
        }
        if tuning.efSearch != nil, !factory.contains("HNSW") {
            throw .validation("ef_search applies to HNSW indexes; index '\(indexName)' is \(factory)")
        }
        let reranker = rerank ? try loadedReranker() : nil
        let pipeline = SearchPipeline(index: index, mode: mode, candidates: candidates, tuning: tuning)
        let work = ScheduledSearchWork(service: self, index: index, reranker: reranker)
        do {
            return (indexName, try await pipeline.search(query, k: k, reranker: reranker, work: work))
        } catch {
            throw ServiceError(classifying: error)
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
        let options = index.queryEmbeddingOptions
        let (inputs, _) = try tokenize(InputBatch(texts: [query]), encoder: index.model, prompt: options.prompt, truncate: true)
        let states = try await states(inputs, encoder: index.model, attention: options.attention)
        return try ServiceError.mapping { try index.model.embed(states: states, inputs: inputs, options: options)[0] }
    }
}

/// A search's encoder work through the service's schedulers, batched with other requests.
private struct ScheduledSearchWork: SearchEncoderWork {
    let service: EncoderService
    let index: any SearchableIndex
    let reranker: Reranker?

    func queryEmbedding(_ query: String) async throws -> [Float] { try await service.queryEmbedding(query, index: index) }

    func rerankScores(query: String, documents: [String], similarity: [Float]?) async throws -> RerankScores {
        guard let reranker else { throw ServiceError(.internal, "reranking without a reranker") }
        return try await service.rerankScores(reranker, query: query, documents: documents,
                                              pairs: reranker.inputs(query: query, documents: documents), similarity: similarity)
    }
}
