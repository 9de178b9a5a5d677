import Foundation
import ModelFormats

/// The architectures llama.cpp writes for Gemma checkpoints.
public enum GGUFGemmaArchitecture: String, Sendable, CaseIterable {
    case gemma, gemma2, gemma3
    /// EmbeddingGemma as converted by llama.cpp: Gemma 3 run bidirectionally, with its Dense layers.
    case gemmaEmbedding = "gemma-embedding"

    var family: GemmaFamily {
        switch self {
        case .gemma: .gemma
        case .gemma2: .gemma2
        case .gemma3, .gemmaEmbedding: .gemma3
        }
    }
}

extension GemmaConfig {
    /// The config a GGUF file's metadata describes, resolved with llama.cpp's own rules where the metadata is
    /// silent: Gemma 3's local RoPE base of 10,000 and its sliding/full pattern of 6 (unless
    /// `attention.sliding_window_pattern` says otherwise), Gemma 2's alternation (even layers sliding), and
    /// the query scale (head_dim, or hidden/heads for the 27B models).
    public init(gguf: GGUFFile) throws(FormatError) {
        let path = gguf.url.path
        guard let name = gguf["general.architecture"]?.stringValue else {
            throw FormatError(file: path, item: "general.architecture", message: "missing metadata key")
        }
        guard let architecture = GGUFGemmaArchitecture(rawValue: name) else {
            throw FormatError(file: path, item: "general.architecture",
                              message: "unsupported architecture '\(name)' (supported: \(GGUFGemmaArchitecture.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let keys = GGUFKeys(gguf: gguf, prefix: name)
        func int(_ key: String) throws(FormatError) -> Int { try keys.positiveInt(key) }
        func optionalInt(_ key: String) -> Int? { keys.optionalInt(key) }
        func double(_ key: String) -> Double? { keys.double(key) }

        let hidden = try int("embedding_length"), layers = try int("block_count"), heads = try int("attention.head_count")
        let kvHeads = optionalInt("attention.head_count_kv") ?? heads
        let headDim = optionalInt("attention.key_length") ?? hidden / heads
        guard kvHeads > 0, heads % kvHeads == 0, headDim > 0, headDim % 2 == 0 else {
            throw FormatError(file: path, item: "\(name).attention.head_count_kv",
                              message: "\(kvHeads) KV heads for \(heads) heads of dimension \(headDim)")
        }
        guard let embedding = gguf.tensor(named: "token_embd.weight"), embedding.dimensions.count == 2,
              embedding.dimensions[0] == hidden else {
            throw FormatError(file: path, item: "token_embd.weight", message: "missing, or not [\(hidden), vocabulary]")
        }
        try GemmaConfig.checkSizes(hidden: hidden, intermediate: try int("feed_forward_length"), layers: layers, heads: heads,
                                   kvHeads: kvHeads, headDim: headDim, vocab: embedding.dimensions[1],
                                   slidingWindow: optionalInt("attention.sliding_window"), file: path)

        let family = architecture.family
        let types = try Self.layerTypes(keys, family: family, layers: layers)
        let window = optionalInt("attention.sliding_window")
        if types.contains(.sliding), window == nil {
            throw FormatError(file: path, item: "\(name).attention.sliding_window", message: "missing metadata key")
        }
        // llama.cpp's 27B rule (46 layers in Gemma 2, 62 in Gemma 3): queries scaled by (hidden/heads)^-0.5.
        let is27B = (family == .gemma2 && layers == 46) || (family == .gemma3 && layers == 62)
        var ropeFull = RopeParameters(theta: double("rope.freq_base") ?? (family == .gemma3 ? 1_000_000 : 10_000))
        if keys.string("rope.scaling.type") == "linear", let factor = double("rope.scaling.factor") {
            ropeFull.linearFactor = factor
        }
        let ropeSliding = family == .gemma3 ? RopeParameters(theta: 10_000) : RopeParameters(theta: ropeFull.theta)

        self.init(
            family: family, vocabSize: embedding.dimensions[1], hiddenSize: hidden,
            intermediateSize: try int("feed_forward_length"), numLayers: layers, numHeads: heads, numKVHeads: kvHeads,
            headDim: headDim, rmsNormEps: Float(double("attention.layer_norm_rms_epsilon") ?? 1e-6),
            queryPreAttnScalar: is27B ? Double(hidden / heads) : Double(headDim),
            // llama.cpp reads the soft-cap for Gemma 2 only.
            attnLogitSoftcapping: family == .gemma2 ? double("attn_logit_softcapping") : nil,
            slidingWindow: types.contains(.sliding) ? window : nil, layerTypes: types,
            ropeFull: ropeFull, ropeSliding: ropeSliding,
            useBidirectionalAttention: architecture == .gemmaEmbedding ? true : nil,
            hiddenActivation: .geluTanh, maxPositionEmbeddings: optionalInt("context_length") ?? 8192,
            padTokenId: gguf["tokenizer.ggml.padding_token_id"]?.intValue,
            bosTokenId: gguf["tokenizer.ggml.bos_token_id"]?.intValue ?? 2,
            eosTokenId: gguf["tokenizer.ggml.eos_token_id"]?.intValue ?? 1)
    }

    /// Each family's rule, unless newer converters say it outright: a period (every n-th layer full) or one
    /// flag per layer.
    private static func layerTypes(_ keys: GGUFKeys, family: GemmaFamily, layers: Int) throws(FormatError) -> [LayerType] {
        let key = "attention.sliding_window_pattern"
        switch keys.value(key) {
        case let value? where value.intValue != nil:
            let period = value.intValue!
            guard period > 0 else { throw keys.error(key, "must be positive") }
            return LayerType.everyNthFull(period, count: layers)
        case let value?:
            guard let flags = try value.arrayValue?.values().compactMap(\.boolValue), flags.count == layers else {
                throw keys.error(key, "expected an integer period or one boolean per layer (\(layers))")
            }
            return flags.map { $0 ? .sliding : .full }
        case nil:
            return family.defaultLayerTypes(count: layers)
        }
    }
}

/// The metadata keys of one architecture ("gemma3.block_count"), with errors that name the file and key.
private struct GGUFKeys {
    let gguf: GGUFFile
    let prefix: String

    func value(_ key: String) -> GGUFValue? { gguf["\(prefix).\(key)"] }
    func optionalInt(_ key: String) -> Int? { value(key)?.intValue }
    func double(_ key: String) -> Double? { value(key)?.doubleValue }
    func string(_ key: String) -> String? { value(key)?.stringValue }

    func positiveInt(_ key: String) throws(FormatError) -> Int {
        guard let v = try gguf.require("\(prefix).\(key)").intValue, v > 0 else { throw error(key, "expected a positive integer") }
        return v
    }

    func error(_ key: String, _ message: String) -> FormatError {
        FormatError(file: gguf.url.path, item: "\(prefix).\(key)", message: message)
    }
}
