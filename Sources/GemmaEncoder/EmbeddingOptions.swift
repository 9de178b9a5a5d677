import EncoderKernels
import Foundation
import GemmaModel

/// Per-call choices; nil means "what the model directory says".
public struct EmbeddingOptions: Sendable {
    /// Literal prompt text prepended to every input (resolve names with `TextEncoder.prompt(named:)`).
    public var prompt: String?
    public var attention: AttentionMode = .bidirectional
    /// A parameter-free pooling in place of the pipeline's (nil: the model's own).
    public var pooling: Pooling?
    public var normalize: Bool?
    /// Matryoshka: keep the first `dimension` values, then re-normalize.
    public var dimension: Int?
    /// Token budget of one forward batch; sequences are grouped by length to waste nothing on padding.
    public var batchTokens: Int = 2048
    /// Batches encoded at once, each on its own core; a lone batch spreads its products over them instead.
    public var workers: Int = CPUBudget.threads

    public init(prompt: String? = nil, attention: AttentionMode = .bidirectional, pooling: Pooling? = nil,
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
