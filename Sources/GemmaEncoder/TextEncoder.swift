import EncoderKernels
import Foundation
import GemmaModel
import GemmaTokenizer
import ModelFormats

/// A model used as a text encoder: tokenizer, model (any architecture of the registry) and the embedding
/// pipeline of its directory (sentence-transformers layout), or mean pooling + normalization otherwise.
public final class TextEncoder: Sendable {
    /// Where the model was opened from, and what kind of source it is.
    public let source: ModelSource
    public let model: any EncoderModel
    public let tokenizer: GemmaTokenizer
    /// The directory's own pipeline; plain directories and GGUF files get mean pooling + normalization.
    public let pipeline: EmbeddingPipeline
    public let prompts: [String: String]
    public let defaultPromptName: String?
    /// Inputs longer than this (special tokens included) are truncated, as sentence-transformers does.
    public let maxSequenceLength: Int

    /// The one way a model is opened: `source` says what the path holds; `registry` picks the architecture
    /// from the checkpoint's own type name. `precision` chooses how Linear weights are stored (f32 unless asked).
    public init(source: ModelSource, precision: WeightPrecision = .f32, registry: ModelRegistry = .standard) throws {
        self.source = source
        let loaded = try source.load(precision: precision, registry: registry)
        model = loaded.model
        tokenizer = loaded.tokenizer
        pipeline = loaded.pipeline
        let layout = loaded.layout
        guard pipeline.pooling.dimension == model.hiddenSize else {
            throw EncoderError.invalidConfig(file: source.location.path, field: "word_embedding_dimension",
                                             "pooling expects \(pipeline.pooling.dimension) but the model's hidden size is \(model.hiddenSize)")
        }
        prompts = layout?.prompts ?? [:]
        defaultPromptName = layout?.defaultPromptName
        maxSequenceLength = layout?.maxSequenceLength ?? model.maxPositions
    }

    /// Opens a model by cache name or path (`ModelStore.source`).
    public convenience init(model nameOrPath: String, store: ModelStore = ModelStore(),
                            precision: WeightPrecision = .f32) throws {
        try self.init(source: try store.source(nameOrPath), precision: precision)
    }

    /// A model directory (sentence-transformers or Hugging Face layout).
    public convenience init(directory: URL, precision: WeightPrecision = .f32) throws {
        try self.init(source: try ModelSource(at: directory), precision: precision)
    }

    /// The path the model was opened from.
    public var location: URL { source.location }
    /// Width of each token's hidden state.
    public var hiddenSize: Int { model.hiddenSize }
    public var isSentenceTransformer: Bool { source.isSentenceTransformer }

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
        Self.tokenize(texts, with: tokenizer, prompt: prompt, maxLength: maxLength ?? maxSequenceLength)
    }

    /// The same with another tokenizer (a fine-tuned GGUF model exported with a tokenizer.json of the same vocabulary).
    public static func tokenize(_ texts: [String], with tokenizer: GemmaTokenizer, prompt: String?, maxLength limit: Int) -> [EncoderInput] {
        // sentence-transformers: prompt_length = len(tokenize(prompt)) − 1 (the trailing <eos>); an empty prompt is
        // no prompt (no prompt_length, so include_prompt=false excludes nothing, not the <bos>).
        let prompt = prompt?.isEmpty == true ? nil : prompt
        let promptTokens = prompt.map { p in
            let ids = tokenizer.encode(p)
            return ids.last == tokenizer.eosTokenId ? ids.count - 1 : ids.count
        } ?? 0
        return texts.map { text in
            let t = tokenizer.encode((prompt ?? "") + text, maxLength: limit)
            return EncoderInput(ids: t.ids, promptTokens: promptTokens, truncated: t.truncated)
        }
    }

    /// Final hidden states of every token (no pooling), in input order: one array of tokens × hidden_size
    /// floats per input. Batches run on `workers` cores, as in `embed`.
    public func tokenStates(_ inputs: [EncoderInput], attention: AttentionMode = .bidirectional,
                            batchTokens: Int = 2048,
                            workers: Int = CPUBudget.threads) throws -> [[Float]] {
        let plan = BatchPlan(lengths: inputs.map(\.ids.count), tokenBudget: batchTokens, workers: workers)
        let states = try plan.run(workers: workers) { batch, threads in
            let states = try model.forward(batch.map { inputs[$0].ids }, mode: attention, threads: threads)
            return (0..<batch.count).map { row in Array(states.sequence(row)) }
        }
        return plan.inInputOrder(states)
    }

    /// Final hidden states of every token as one vector per token, in input order.
    public func hiddenStates(_ inputs: [EncoderInput], attention: AttentionMode = .bidirectional,
                             batchTokens: Int = 2048) throws -> [[[Float]]] {
        let h = hiddenSize
        return try tokenStates(inputs, attention: attention, batchTokens: batchTokens).map { flat in
            stride(from: 0, to: flat.count, by: h).map { Array(flat[$0..<($0 + h)]) }
        }
    }
}
