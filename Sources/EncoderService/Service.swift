import DocumentIndex
import Foundation
import GemmaEncoder
import TaskHeads

/// Request limits; the defaults follow TEI's (a client batch of 32, 2 MB bodies).
public struct ServiceLimits: Sendable {
    /// Tokens per forward pass across concurrent requests.
    public var maxBatchTokens = 16_384
    /// Inputs per request.
    public var maxClientBatchSize = 32
    /// Tokens per input (nil: each model's own maximum); longer inputs are refused unless `truncate` is true.
    public var maxInputLength: Int?
    /// Tokens waiting per model before requests are refused with 429 (nil: 8 × maxBatchTokens).
    public var maxQueuedTokens: Int?
    /// Request body size in bytes.
    public var maxBodyBytes = 2_000_000
    /// Whether a request that does not say `truncate` is truncated (TEI's --auto-truncate); otherwise an
    /// input over the length limit is refused.
    public var autoTruncate = false

    public init() {}
}

/// One model the service embeds with, and the scheduler that batches its work.
public struct ServedModel: Sendable {
    public var name: String
    public var encoder: TextEncoder
    public var scheduler: ForwardScheduler
}

/// The service's work, independent of HTTP: every route's logic, on schedulers that coalesce concurrent
/// requests into forward passes.
public final class EncoderService: Sendable {
    public let models: [ServedModel]
    public let heads: [String: HeadPredictor]
    public let reranker: TrainedReranker?
    /// The reranker's name as reported to clients (its directory's name).
    public let rerankerName: String?
    public let indexes: [String: any SearchableIndex]
    /// Set for `serve --shard`: /search goes to the shard servers, through the first model.
    public let router: ShardRouter?
    public let limits: ServiceLimits
    public let metrics: ServiceMetrics
    /// One scheduler per distinct encoder (heads, reranker and indexes share their model's when it is the same).
    private let schedulers: [ObjectIdentifier: ForwardScheduler]

    public init(models: [(name: String, encoder: TextEncoder)], heads: [String: HeadPredictor] = [:], reranker: TrainedReranker? = nil,
                rerankerName: String? = nil, indexes: [String: any SearchableIndex] = [:], router: ShardRouter? = nil,
                limits: ServiceLimits = ServiceLimits(), metrics: ServiceMetrics = ServiceMetrics()) {
        precondition(!models.isEmpty, "serve at least one model")
        self.limits = limits
        self.metrics = metrics
        var schedulers: [ObjectIdentifier: ForwardScheduler] = [:]
        func scheduler(_ encoder: TextEncoder) -> ForwardScheduler {
            if let s = schedulers[ObjectIdentifier(encoder)] { return s }
            let s = ForwardScheduler(encoder: encoder, maxBatchTokens: limits.maxBatchTokens,
                                     maxQueuedTokens: limits.maxQueuedTokens ?? 8 * limits.maxBatchTokens)
            s.onBatch = { inputs, tokens, seconds in metrics.recordBatch(inputs: inputs, tokens: tokens, seconds: seconds) }
            s.onQueue = { tokens in metrics.setQueuedTokens(tokens) }
            schedulers[ObjectIdentifier(encoder)] = s
            return s
        }
        self.models = models.map { ServedModel(name: $0.name, encoder: $0.encoder, scheduler: scheduler($0.encoder)) }
        for predictor in heads.values { _ = scheduler(predictor.encoder) }
        // A fused reranker embeds its cosine with its similarity encoder (a fine-tuned one's base model), which
        // may be served for nothing else.
        if let reranker { _ = scheduler(reranker.encoder) }
        if case let .head(head)? = reranker { _ = scheduler(head.similarityEncoder) }
        for index in indexes.values { _ = scheduler(index.model) }
        self.heads = heads
        self.reranker = reranker
        self.rerankerName = reranker == nil ? nil : rerankerName ?? "reranker"
        self.indexes = indexes
        self.router = router
        self.schedulers = schedulers
    }

    public func start() { schedulers.values.forEach { $0.start() } }
    public func stop() { schedulers.values.forEach { $0.stop() } }

    func scheduler(for encoder: TextEncoder) -> ForwardScheduler { schedulers[ObjectIdentifier(encoder)]! }

    public func model(named name: String?) throws(ServiceError) -> ServedModel {
        guard let name else { return models[0] }
        guard let model = models.first(where: { $0.name == name }) else {
            throw .notFound("unknown model '\(name)' (served: \(models.map(\.name).joined(separator: ", ")))")
        }
        return model
    }

    // MARK: Inputs

    /// Checks the batch size and tokenizes (the prompt prepended); inputs over the length limit are an error
    /// unless `truncate`, which cuts them as sentence-transformers does and counts them.
    func tokenize(_ batch: InputBatch, encoder: TextEncoder, prompt: String?, truncate: Bool) throws(ServiceError) -> (inputs: [EncoderInput], truncated: Int) {
        guard batch.count > 0 else { throw .empty("`inputs` must not be empty") }
        guard batch.count <= limits.maxClientBatchSize else {
            throw .validation("batch size \(batch.count) > maximum allowed batch size \(limits.maxClientBatchSize)")
        }
        let limit = min(limits.maxInputLength ?? encoder.maxSequenceLength, encoder.maxSequenceLength)
        var inputs: [EncoderInput]
        switch batch.items {
        case let .texts(texts):
            inputs = encoder.tokenize(texts, prompt: prompt, maxLength: Int.max)
            for i in inputs.indices where inputs[i].ids.count > limit {
                guard truncate else {
                    throw .validation("input \(i) has \(inputs[i].ids.count) tokens, more than the maximum of \(limit) (set \"truncate\": true to cut it)")
                }
                inputs[i] = encoder.tokenize([texts[i]], prompt: prompt, maxLength: limit)[0]
            }
        case let .tokens(lists):
            let vocabulary = encoder.model.vocabularySize
            inputs = []
            for (i, ids) in lists.enumerated() {
                guard !ids.isEmpty else { throw .empty("input \(i) has no tokens") }
                if let bad = ids.first(where: { $0 < 0 || Int($0) >= vocabulary }) {
                    throw .tokenizer("input \(i): token id \(bad) is outside the vocabulary (0..<\(vocabulary))")
                }
                guard ids.count <= limit || truncate else {
                    throw .validation("input \(i) has \(ids.count) tokens, more than the maximum of \(limit) (set \"truncate\": true to cut it)")
                }
                inputs.append(EncoderInput(ids: Array(ids.prefix(limit)), truncated: ids.count > limit))
            }
        }
        let truncated = inputs.filter(\.truncated).count
        metrics.recordInputs(tokens: inputs.reduce(0) { $0 + $1.ids.count }, truncated: truncated)
        return (inputs, truncated)
    }

    /// Token states through the model's scheduler; a full queue is 429, an encoder failure 424.
    func states(_ inputs: [EncoderInput], encoder: TextEncoder, attention: AttentionMode) async throws(ServiceError) -> [[Float]] {
        do {
            return try await scheduler(for: encoder).tokenStates(inputs, attention: attention)
        } catch {
            throw ServiceError(classifying: error)
        }
    }

    func resolvePrompt(_ name: String?, encoder: TextEncoder) throws(ServiceError) -> String? {
        guard let name else { return encoder.defaultPromptName.flatMap { encoder.prompts[$0] } }
        guard let text = encoder.prompts[name] else {
            throw .validation("unknown prompt_name '\(name)' (the model has: \(encoder.prompts.keys.sorted().joined(separator: ", ")))")
        }
        return text
    }

    // MARK: Embeddings

    public struct Embeddings: Sendable {
        public var model: String
        public var vectors: [[Float]]
        public var tokens: Int
        public var truncated: Int
    }

    public func embed(_ batch: InputBatch, model name: String?, promptName: String?, truncate: Bool, normalize: Bool?,
                      dimensions: Int?) async throws(ServiceError) -> Embeddings {
        let model = try model(named: name)
        let encoder = model.encoder
        let prompt = try resolvePrompt(promptName, encoder: encoder)
        let (inputs, truncated) = try tokenize(batch, encoder: encoder, prompt: prompt, truncate: truncate)
        var options = EmbeddingOptions(prompt: prompt, normalize: normalize, dimension: dimensions)
        options.attention = .bidirectional
        if let dimensions, dimensions <= 0 || dimensions > encoder.dimension(options: EmbeddingOptions()) {
            throw .validation("dimensions must be between 1 and \(encoder.dimension(options: EmbeddingOptions())), got \(dimensions)")
        }
        let states = try await states(inputs, encoder: encoder, attention: .bidirectional)
        let vectors = try ServiceError.mapping { try encoder.embed(states: states, inputs: inputs, options: options) }
        return Embeddings(model: model.name, vectors: vectors, tokens: inputs.reduce(0) { $0 + $1.ids.count }, truncated: truncated)
    }

    // MARK: Rerank

    public struct Ranked: Sendable {
        public var index: Int
        public var score: Float
    }

    /// Documents best first with the reranker's raw scores, the tokens encoded, and how many pairs lost the
    /// end of their document to the reranker's maximum length (refused unless `truncate`).
    public func rerank(query: String, documents: [String], topN: Int?,
                       truncate: Bool) async throws(ServiceError) -> (ranked: [Ranked], tokens: Int, truncated: Int) {
        let reranker = try loadedReranker()
        guard !query.isEmpty else { throw .empty("`query` must not be empty") }
        guard !documents.isEmpty else { throw .empty("`texts` must not be empty") }
        guard documents.count <= limits.maxClientBatchSize else {
            throw .validation("batch size \(documents.count) > maximum allowed batch size \(limits.maxClientBatchSize)")
        }
        if let topN, topN <= 0 { throw .validation("top_n must be positive") }
        let inputs = reranker.inputs(query: query, documents: documents)
        let truncated = inputs.filter(\.truncated).count
        if truncated > 0, !truncate, let first = inputs.firstIndex(where: \.truncated) {
            throw .validation("query and text \(first) are longer than the reranker's maximum of \(reranker.maxLength) tokens (set \"truncate\": true to cut the text)")
        }
        let tokens = inputs.reduce(0) { $0 + $1.ids.count }
        metrics.recordInputs(tokens: tokens, truncated: truncated)
        let scores = try await rerankScores(reranker, query: query, documents: documents, pairs: inputs, similarity: nil).final
        let ranked = scores.enumerated().map { Ranked(index: $0, score: $1) }
            .sorted { $0.score != $1.score ? $0.score > $1.score : $0.index < $1.index }
        return (Array(ranked.prefix(topN ?? ranked.count)), tokens, truncated)
    }

    func loadedReranker() throws(ServiceError) -> TrainedReranker {
        guard let reranker else { throw .notFound("no reranker is loaded (the server was started without one)") }
        return reranker
    }

    /// The reranker's scores, its pairs (and, when it fuses the bi-encoder cosine and `similarity` does not
    /// bring it, the query and documents embedded apart) encoded through the scheduler with everything else; a
    /// first-token ranker then takes its one decoder step per pair here.
    func rerankScores(_ trained: TrainedReranker, query: String, documents: [String], pairs: [EncoderInput],
                      similarity: [Float]?) async throws(ServiceError) -> RerankScores {
        let reranker: Reranker
        switch trained {
        case let .head(head): reranker = head
        case let .firstToken(scorer, _):
            let states = try await states(pairs, encoder: scorer.encoder, attention: .bidirectional)
            return try ServiceError.mapping { RerankScores(final: try scorer.scores(states: states)) }
        }
        let attention = reranker.head.config.attention
        let pairStates = try await states(pairs, encoder: reranker.encoder, attention: attention)
        var cosines = similarity
        if cosines == nil, let inputs = reranker.similarityInputs(query: query, documents: documents) {
            let states = try await states(inputs, encoder: reranker.similarityEncoder, attention: attention)
            let embeddings = try ServiceError.mapping {
                try reranker.similarityEncoder.embed(states: states, inputs: inputs, options: reranker.similarityOptions)
            }
            cosines = reranker.similarity(embeddings: embeddings)
        }
        return try ServiceError.mapping { try reranker.scores(states: pairStates, similarity: cosines) }
    }

    // MARK: Predict

    public func head(named name: String?) throws(ServiceError) -> (String, HeadPredictor) {
        if let name {
            guard let head = heads[name] else {
                throw .notFound("unknown head '\(name)' (loaded: \(heads.keys.sorted().joined(separator: ", ")))")
            }
            return (name, head)
        }
        guard heads.count == 1, let only = heads.first else {
            throw heads.isEmpty ? .notFound("no head is loaded (the server was started without one)")
                : .validation("several heads are loaded: name one with \"head\" (\(heads.keys.sorted().joined(separator: ", ")))")
        }
        return (only.key, only.value)
    }

    public func predict(_ batch: InputBatch, head name: String?, truncate: Bool) async throws(ServiceError) -> (predictions: [HeadPrediction], truncated: Int) {
        let (_, head) = try head(named: name)
        let (inputs, truncated) = try tokenize(batch, encoder: head.encoder, prompt: head.head.config.prompt, truncate: truncate)
        let states = try await states(inputs, encoder: head.encoder, attention: head.head.config.attention)
        return (head.predictions(states: states), truncated)
    }

    // MARK: Tokenize

    public func tokenize(_ batch: InputBatch, model name: String?, addSpecialTokens: Bool) throws(ServiceError) -> [[(id: Int32, text: String, special: Bool)]] {
        let encoder = try model(named: name).encoder
        guard batch.count > 0 else { throw .empty("`inputs` must not be empty") }
        guard batch.count <= limits.maxClientBatchSize else {
            throw .validation("batch size \(batch.count) > maximum allowed batch size \(limits.maxClientBatchSize)")
        }
        guard case let .texts(texts) = batch.items else { throw .validation("`inputs` must be text to tokenize") }
        let special = Set([encoder.tokenizer.bosTokenId, encoder.tokenizer.eosTokenId, encoder.tokenizer.padTokenId].compactMap { $0 })
        return texts.map { text in
            encoder.tokenizer.encode(text, addSpecialTokens: addSpecialTokens).map { id in
                (id, encoder.tokenizer.token(for: id) ?? "", special.contains(id))
            }
        }
    }

    // MARK: Info

    public func info() -> ServiceInfo {
        ServiceInfo(
            models: models.map { m in
                .init(name: m.name, dimension: m.encoder.dimension(options: EmbeddingOptions()),
                      max_input_length: min(limits.maxInputLength ?? m.encoder.maxSequenceLength, m.encoder.maxSequenceLength),
                      prompts: m.encoder.prompts, default_prompt_name: m.encoder.defaultPromptName)
            },
            heads: heads.keys.sorted(), indexes: indexes.keys.sorted(),
            search_indexes: indexes.mapValues { index in
                let m = index.manifest
                return .init(model: m.model, model_digest: m.modelDigest, dimension: m.dimension, factory: m.factory, count: index.count,
                             query_prompt: m.queryPrompt, attention: (m.attention ?? .bidirectional).rawValue, pooling: m.pooling,
                             title_field: m.titleField, fusion: m.fusion)
            },
            reranker: rerankerName,
            max_batch_tokens: limits.maxBatchTokens, max_client_batch_size: limits.maxClientBatchSize,
            max_body_bytes: limits.maxBodyBytes, auto_truncate: limits.autoTruncate)
    }
}

/// GET /info.
public struct ServiceInfo: Codable, Sendable, Equatable {
    public struct Model: Codable, Sendable, Equatable {
        public var name: String
        public var dimension: Int
        public var max_input_length: Int
        public var prompts: [String: String]
        public var default_prompt_name: String?
    }
    /// How each index embeds queries and what it holds: what a shard router checks and embeds with.
    public struct SearchIndexInfo: Codable, Sendable, Equatable {
        public var model: String
        public var model_digest: String
        public var dimension: Int
        public var factory: String
        public var count: Int
        public var query_prompt: String?
        public var attention: String
        public var pooling: String?
        /// The metadata field of document titles (they fill the document prompt and head the results).
        public var title_field: String?
        /// The hybrid fusion `index tune` fitted (absent: the standard one).
        public var fusion: HybridFusion?
    }
    public var models: [Model]
    public var heads: [String]
    public var indexes: [String]
    public var search_indexes: [String: SearchIndexInfo]?
    public var reranker: String?
    public var max_batch_tokens: Int
    public var max_client_batch_size: Int
    public var max_body_bytes: Int
    public var auto_truncate: Bool
}
