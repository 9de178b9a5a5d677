import DocumentIndex
import Foundation
import GemmaEncoder
import TaskHeads

extension EncoderService {
    /// /search: the library's `SearchPipeline`, its encoder work (the query's embedding, the reranker's pairs
    /// and cosines) run through the schedulers between the pipeline's steps.
    public func search(index name: String?, query: String, k: Int, mode: SearchMode, rerank: Bool,
                       candidates: Int) async throws(ServiceError) -> (index: String, results: [RankedHit]) {
        let (indexName, index) = try self.index(named: name)
        guard k > 0, k <= 1000, candidates > 0, candidates <= 1000 else { throw .validation("k and candidates must be in 1...1000") }
        guard !query.isEmpty else { throw .empty("`query` must not be empty") }
        let reranker = rerank ? try loadedReranker() : nil
        let pipeline = SearchPipeline(index: index, mode: mode, candidates: candidates)
        let embedding = pipeline.needsQueryEmbedding(reranker: reranker) ? try await queryEmbedding(query, index: index) : nil
        let first = try ServiceError.mapping {
            try pipeline.firstStage(query, queryEmbedding: embedding, k: k, reranking: reranker != nil)
        }
        let head = pipeline.candidates(of: first)
        guard let reranker, !head.isEmpty else { return (indexName, first.prefix(k).map { RankedHit(result: $0) }) }
        let similarity = try ServiceError.mapping {
            try pipeline.storedSimilarity(for: reranker, queryEmbedding: embedding, candidates: head)
        }
        let documents = head.map(\.text)
        let scores = try await rerankScores(reranker, query: query, documents: documents,
                                            pairs: reranker.inputs(query: query, documents: documents), similarity: similarity)
        return (indexName, pipeline.rank(first, by: scores, k: k).final)
    }

    /// The index named `name`, or the only one loaded when no name is given.
    func index(named name: String?) throws(ServiceError) -> (String, SearchIndex) {
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
    func queryEmbedding(_ query: String, index: SearchIndex) async throws(ServiceError) -> [Float] {
        let options = index.queryEmbeddingOptions
        let (inputs, _) = try tokenize(InputBatch(texts: [query]), encoder: index.model, prompt: options.prompt, truncate: true)
        let states = try await states(inputs, encoder: index.model, attention: options.attention)
        return try ServiceError.mapping { try index.model.embed(states: states, inputs: inputs, options: options)[0] }
    }
}
