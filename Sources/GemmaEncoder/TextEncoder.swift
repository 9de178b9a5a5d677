import EncoderKernels
import Foundation
import Synchronization
import GemmaModel
import GemmaTokenizer
import ModelFormats

/// How to turn token states into one vector, for models without a sentence-transformers pipeline
/// (or to override it from the command line).
public enum PoolingChoice: String, Sendable, CaseIterable {
    case mean, first, last, max
    /// No pooling: the caller wants every token's hidden state.
    case none

    var mode: PoolingMode? {
        switch self {
        case .mean: return .mean
        case .first: return .cls
        case .last: return .lastToken
        case .max: return .max
        case .none: return nil
        }
    }
}

/// Per-call choices; nil means "what the model directory says".
public struct EmbeddingOptions: Sendable {
    /// Literal prompt text prepended to every input (resolve names with `TextEncoder.prompt(named:)`).
    public var prompt: String?
    public var attention: AttentionMode = .bidirectional
    public var pooling: PoolingChoice?
    public var normalize: Bool?
    /// Matryoshka: keep the first `dimension` values, then re-normalize.
    public var dimension: Int?
    /// Token budget of one forward batch; sequences are grouped by length to waste nothing on padding.
    public var batchTokens: Int = 2048
    /// Batches encoded at once, each on its own core with single-threaded BLAS; a lone batch gets
    /// multithreaded BLAS instead.
    public var workers: Int = ProcessInfo.processInfo.activeProcessorCount

    public init(prompt: String? = nil, attention: AttentionMode = .bidirectional, pooling: PoolingChoice? = nil,
                normalize: Bool? = nil, dimension: Int? = nil) {
        self.prompt = prompt
        self.attention = attention
        self.pooling = pooling
        self.normalize = normalize
        self.dimension = dimension
    }
}

/// One tokenized input ready for the encoder.
public struct EncoderInput: Sendable {
    public var ids: [Int32]
    /// Tokens at the start that belong to the prompt (with `<bos>`), excluded by include_prompt = false.
    public var promptTokens: Int
    public var truncated: Bool

    public init(ids: [Int32], promptTokens: Int = 0, truncated: Bool = false) {
        self.ids = ids
        self.promptTokens = promptTokens
        self.truncated = truncated
    }
}

/// A Gemma-family model used as a text encoder: tokenizer, transformer and the embedding pipeline of its
/// directory (sentence-transformers layout), or a chosen pooling for a plain Hugging Face directory.
public final class TextEncoder: Sendable {
    public let location: URL
    public let transformer: GemmaTransformer
    public let tokenizer: GemmaTokenizer
    /// The directory's own pipeline; plain directories get mean pooling + normalization.
    public let pipeline: EmbeddingPipeline
    public let prompts: [String: String]
    public let defaultPromptName: String?
    /// Inputs longer than this (special tokens included) are truncated, as sentence-transformers does.
    public let maxSequenceLength: Int
    public let isSentenceTransformer: Bool

    /// `precision` chooses how the transformer's Linear weights are stored (f32 unless asked).
    public init(directory: URL, precision: WeightPrecision = .f32) throws {
        location = directory
        let layout = try SentenceTransformersLayout.load(directory: directory)
        let modelDirectory = layout?.transformerDirectory ?? directory
        transformer = try GemmaTransformer(directory: modelDirectory, precision: precision)
        tokenizer = try GemmaTokenizer.load(from: modelDirectory)
        let hidden = transformer.config.hiddenSize
        pipeline = layout?.pipeline ?? EmbeddingPipeline(pooling: PoolingConfig(modes: [.mean], dimension: hidden), normalize: true)
        guard pipeline.pooling.dimension == hidden else {
            throw EncoderError.invalidConfig(file: directory.path, field: "word_embedding_dimension",
                                             "pooling expects \(pipeline.pooling.dimension) but the model's hidden size is \(hidden)")
        }
        prompts = layout?.prompts ?? [:]
        defaultPromptName = layout?.defaultPromptName
        maxSequenceLength = layout?.maxSequenceLength ?? transformer.config.maxPositionEmbeddings
        isSentenceTransformer = layout != nil
    }

    /// A GGUF file: config, weights (kept in their quantized formats) and tokenizer from the file. Decoder
    /// checkpoints get mean pooling and normalization; EmbeddingGemma converted by llama.cpp
    /// (`gemma-embedding`) gets its Dense layers when the file carries them (`dense_2`, `dense_3`).
    public init(gguf url: URL, precision: WeightPrecision = .f32) throws {
        location = url
        let gguf = try GGUFFile(url: url)
        transformer = try GemmaTransformer(gguf: gguf, precision: precision)
        tokenizer = try GemmaTokenizer.load(gguf: gguf)
        let hidden = transformer.config.hiddenSize
        var dense: [DenseLayer] = []
        for name in ["dense_2.weight", "dense_3.weight"] {
            guard let info = gguf.tensor(named: name) else { break }
            guard info.dimensions.count == 2, info.dimensions[0] == (dense.last?.outputDimension ?? hidden) else {
                throw EncoderError.invalidConfig(file: url.path, field: name, "dimensions \(info.dimensions) do not follow the layer before")
            }
            let weights = GGUFWeights(gguf, family: transformer.config.family)
            let weight = try weights.floats(name, shape: [info.dimensions[1], info.dimensions[0]])
            dense.append(DenseLayer(weight: weight, bias: nil, inputDimension: info.dimensions[0],
                                    outputDimension: info.dimensions[1], activation: .identity))
        }
        pipeline = EmbeddingPipeline(pooling: PoolingConfig(modes: [.mean], dimension: hidden), dense: dense, normalize: true)
        prompts = [:]
        defaultPromptName = nil
        maxSequenceLength = transformer.config.maxPositionEmbeddings
        isSentenceTransformer = false
    }

    /// Loads a model by cache name or path (a model directory or a .gguf file).
    public convenience init(model nameOrPath: String, store: ModelStore = ModelStore(),
                            precision: WeightPrecision = .f32) throws {
        let url = try store.resolve(nameOrPath)
        if url.pathExtension == "gguf" {
            try self.init(gguf: url, precision: precision)
        } else {
            try self.init(directory: url, precision: precision)
        }
    }

    /// The prompt text registered under `name` in config_sentence_transformers.json.
    public func prompt(named name: String) throws(EncoderError) -> String {
        guard let text = prompts[name] else {
            let known = prompts.keys.sorted().joined(separator: ", ")
            throw .invalidInput("unknown prompt '\(name)'" + (known.isEmpty ? " (this model defines no prompts)" : " (known: \(known))"))
        }
        return text
    }

    /// Tokenizes texts with the prompt prepended and truncation to max_seq_length.
    public func tokenize(_ texts: [String], prompt: String? = nil, maxLength: Int? = nil) -> [EncoderInput] {
        let limit = maxLength ?? maxSequenceLength
        // sentence-transformers: prompt_length = len(tokenize(prompt)) − 1 (the trailing <eos>).
        let promptTokens = prompt.map { p in
            let ids = tokenizer.encode(p)
            return ids.last == tokenizer.eosTokenId ? ids.count - 1 : ids.count
        } ?? 0
        return texts.map { text in
            let t = tokenizer.encode((prompt ?? "") + text, maxLength: limit)
            return EncoderInput(ids: t.ids, promptTokens: promptTokens, truncated: t.truncated)
        }
    }

    /// Embeds texts: tokenize, encode, pool, dense, normalize, Matryoshka-truncate.
    public func embed(_ texts: [String], options: EmbeddingOptions = EmbeddingOptions()) throws -> [[Float]] {
        try embed(tokenize(texts, prompt: options.prompt), options: options)
    }

    /// Output dimension for the given options.
    public func dimension(options: EmbeddingOptions) -> Int {
        options.dimension ?? pipeline(for: options).outputDimension
    }

    func pipeline(for options: EmbeddingOptions) -> EmbeddingPipeline {
        var p = pipeline
        if let mode = options.pooling?.mode {
            p.pooling.modes = [mode]
        }
        if let normalize = options.normalize { p.normalize = normalize }
        return p
    }

    /// Embeds pre-tokenized inputs, in input order.
    public func embed(_ inputs: [EncoderInput], options: EmbeddingOptions = EmbeddingOptions()) throws -> [[Float]] {
        let pipeline = try pipeline(checking: options)
        let batches = Self.batches(inputs.map(\.ids.count), tokenBudget: options.batchTokens)
        let vectors = try runBatches(batches, workers: options.workers) { batch in
            let states = try transformer.forward(batch.map { inputs[$0].ids }, mode: options.attention)
            let rows = batch.enumerated().map { row, index in
                (states: states.sequence(row), length: states.length(row), promptTokens: inputs[index].promptTokens)
            }
            return finish(rows, pipeline: pipeline, options: options)
        }
        var results = [[Float]](repeating: [], count: inputs.count)
        for (batch, rows) in zip(batches, vectors) {
            for (index, v) in zip(batch, rows) { results[index] = v }
        }
        return results
    }

    /// Embeddings from token states computed earlier (`tokenStates`, e.g. by a server that batches requests
    /// of different kinds together): the same pooling, Dense layers, normalization and Matryoshka as `embed`.
    public func embed(states: [[Float]], inputs: [EncoderInput], options: EmbeddingOptions = EmbeddingOptions()) throws -> [[Float]] {
        precondition(states.count == inputs.count, "one state array per input")
        let pipeline = try pipeline(checking: options)
        let h = transformer.config.hiddenSize
        return finish(zip(states, inputs).map { (states: $0[...], length: $0.count / h, promptTokens: $1.promptTokens) },
                      pipeline: pipeline, options: options)
    }

    /// The pipeline for these options, or an error for options it cannot honour.
    private func pipeline(checking options: EmbeddingOptions) throws -> EmbeddingPipeline {
        guard options.pooling != PoolingChoice.none else {
            throw EncoderError.invalidInput("pooling 'none' gives token states: use hiddenStates(_:)")
        }
        let pipeline = pipeline(for: options)
        if let d = options.dimension, d <= 0 || d > pipeline.outputDimension {
            throw EncoderError.invalidInput("dimension \(d) must be between 1 and the model's \(pipeline.outputDimension)")
        }
        return pipeline
    }

    /// Pools each sequence's states, applies the Dense layers to all of them at once, then normalizes and
    /// truncates (Matryoshka).
    private func finish(_ rows: [(states: ArraySlice<Float>, length: Int, promptTokens: Int)], pipeline: EmbeddingPipeline,
                        options: EmbeddingOptions) -> [[Float]] {
        var pooled: [Float] = []
        pooled.reserveCapacity(rows.count * pipeline.pooling.outputDimension)
        for row in rows {
            pooled += pipeline.pooling.pool(row.states, length: row.length, firstToken: row.promptTokens)
        }
        for layer in pipeline.dense { pooled = layer.apply(pooled, rows: rows.count) }
        let width = pipeline.outputDimension
        return (0..<rows.count).map { row -> [Float] in
            var v = Array(pooled[(row * width)..<((row + 1) * width)])
            if pipeline.normalize { v.withUnsafeMutableBufferPointer { l2NormalizeInPlace($0.baseAddress!, count: width) } }
            if let d = options.dimension, d < width {
                v = Array(v.prefix(d))
                v.withUnsafeMutableBufferPointer { l2NormalizeInPlace($0.baseAddress!, count: d) }
            }
            return v
        }
    }

    /// Final hidden states of every token (no pooling), in input order: one array of tokens × hidden_size
    /// floats per input. Batches run on every core, as in `embed`.
    public func tokenStates(_ inputs: [EncoderInput], attention: AttentionMode = .bidirectional,
                            batchTokens: Int = 2048) throws -> [[Float]] {
        let batches = Self.batches(inputs.map(\.ids.count), tokenBudget: batchTokens)
        let workers = ProcessInfo.processInfo.activeProcessorCount
        let states = try runBatches(batches, workers: workers) { batch in
            let states = try transformer.forward(batch.map { inputs[$0].ids }, mode: attention)
            return (0..<batch.count).map { row in Array(states.sequence(row)) }
        }
        var results = [[Float]](repeating: [], count: inputs.count)
        for (batch, rows) in zip(batches, states) {
            for (index, v) in zip(batch, rows) { results[index] = v }
        }
        return results
    }

    /// Final hidden states of every token as one vector per token, in input order.
    public func hiddenStates(_ inputs: [EncoderInput], attention: AttentionMode = .bidirectional,
                             batchTokens: Int = 2048) throws -> [[[Float]]] {
        let h = transformer.config.hiddenSize
        return try tokenStates(inputs, attention: attention, batchTokens: batchTokens).map { flat in
            stride(from: 0, to: flat.count, by: h).map { Array(flat[$0..<($0 + h)]) }
        }
    }

    /// Runs `work` on every batch, `workers` at a time (largest first, each worker taking the next batch when
    /// it is done). With more than one worker BLAS is single-threaded meanwhile, so the cores are not
    /// oversubscribed; a single batch keeps multithreaded BLAS.
    func runBatches<T: Sendable>(_ batches: [[Int]], workers: Int,
                                 _ work: @Sendable ([Int]) throws -> T) throws -> [T] {
        let workers = max(1, min(workers, batches.count))
        guard workers > 1 else { return try batches.map(work) }
        let blasThreads = BLASThreads.count
        BLASThreads.set(1)
        defer { BLASThreads.set(blasThreads) }
        let state = Mutex<(next: Int, results: [T?], error: Error?)>((0, Array(repeating: nil, count: batches.count), nil))
        DispatchQueue.concurrentPerform(iterations: workers) { _ in
            while true {
                let index: Int? = state.withLock { s in
                    guard s.error == nil, s.next < batches.count else { return nil }
                    defer { s.next += 1 }
                    return s.next
                }
                guard let index else { return }
                do {
                    let result = try work(batches[index])
                    state.withLock { $0.results[index] = result }
                } catch {
                    state.withLock { $0.error = error }
                }
            }
        }
        return try state.withLock { s in
            if let error = s.error { throw error }
            return s.results.map { $0! }
        }
    }

    /// Groups input indices into batches of similar length under a token budget (longest first, so the
    /// first batch shows the peak memory).
    static func batches(_ lengths: [Int], tokenBudget: Int) -> [[Int]] {
        let order = lengths.indices.sorted { lengths[$0] > lengths[$1] }
        var batches: [[Int]] = []
        var current: [Int] = []
        var tokens = 0
        for i in order {
            if !current.isEmpty, tokens + lengths[i] > tokenBudget {
                batches.append(current)
                current = []
                tokens = 0
            }
            current.append(i)
            tokens += lengths[i]
        }
        if !current.isEmpty { batches.append(current) }
        return batches
    }
}
