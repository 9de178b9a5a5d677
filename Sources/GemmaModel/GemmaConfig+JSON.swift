import Foundation
import ModelFormats

extension GemmaConfig {
    /// The config.json `model_type` values this config decodes ("gemma3" is the multimodal wrapper whose
    /// `text_config` holds the text model).
    public static let modelTypes = ["gemma", "gemma2", "gemma3_text", "gemma3"]

    /// Decodes `config.json` of a gemma, gemma2, gemma3_text or gemma3 (with `text_config`) checkpoint.
    public static func load(_ url: URL) throws(FormatError) -> GemmaConfig {
        try JSONFile.decode(RawConfig.self, from: url).resolve(file: url.path)
    }

    public static func decode(_ data: Data, file: String = "config.json") throws(FormatError) -> GemmaConfig {
        try JSONFile.decode(RawConfig.self, from: data, file: file).resolve(file: file)
    }
}

// MARK: - The JSON as it is found in the wild

/// Every field either transformers 4.x or 5.x writes; all optional, checked in `resolve`.
private struct RawConfig: Decodable {
    var model_type: String?
    var text_config: Box<RawConfig>?
    var vocab_size: Int?
    var hidden_size: Int?
    var intermediate_size: Int?
    var num_hidden_layers: Int?
    var num_attention_heads: Int?
    var num_key_value_heads: Int?
    var head_dim: Int?
    var rms_norm_eps: Double?
    var query_pre_attn_scalar: Double?
    var attn_logit_softcapping: Double?
    var sliding_window: Int?
    var sliding_window_pattern: Int?
    var _sliding_window_pattern: Int?
    var layer_types: [String]?
    var rope_theta: Double?
    var rope_local_base_freq: Double?
    var rope_scaling: RawRope?
    var rope_parameters: RopeParametersJSON?
    var use_bidirectional_attention: Bool?
    var hidden_activation: String?
    var hidden_act: String?
    var max_position_embeddings: Int?
    var pad_token_id: Int?
    var bos_token_id: Int?
    var eos_token_id: IntOrList?

    func resolve(file: String) throws(FormatError) -> GemmaConfig {
        guard let modelType = model_type else { throw missing("model_type", file) }
        let family: GemmaFamily
        switch modelType {
        case "gemma": family = .gemma
        case "gemma2": family = .gemma2
        case "gemma3_text": family = .gemma3
        case "gemma3":
            guard var text = text_config?.value else { throw missing("text_config", file) }
            text.model_type = text.model_type ?? "gemma3_text"
            guard text.model_type == "gemma3_text" else {
                throw FormatError(file: file, item: "text_config.model_type", message: "expected gemma3_text, found \(text.model_type!)")
            }
            return try text.resolve(file: file + " (text_config)")
        default:
            throw FormatError(file: file, item: "model_type",
                              message: "unsupported model type '\(modelType)' (supported: \(GemmaConfig.modelTypes.joined(separator: ", ")))")
        }
        let sizes = try self.sizes(file: file)
        let types = try layerTypes(family: family, layers: sizes.layers, file: file)
        let rope = try ropeParameters(types: types, file: file)
        return GemmaConfig(
            family: family, vocabSize: sizes.vocab, hiddenSize: sizes.hidden, intermediateSize: sizes.intermediate,
            numLayers: sizes.layers, numHeads: sizes.heads, numKVHeads: sizes.kvHeads, headDim: sizes.headDim,
            rmsNormEps: Float(rms_norm_eps ?? 1e-6),
            // Gemma 1 scales by head_dim^-0.5; Gemma 2/3 name the scalar explicitly.
            queryPreAttnScalar: query_pre_attn_scalar ?? Double(sizes.headDim),
            // Gemma 1 has no soft-cap; transformers' Gemma 2 and 3 attention apply the config's value when set.
            attnLogitSoftcapping: family == .gemma ? nil : attn_logit_softcapping,
            slidingWindow: types.contains(.sliding) ? sliding_window : nil,
            layerTypes: types, ropeFull: rope.full, ropeSliding: rope.sliding,
            useBidirectionalAttention: use_bidirectional_attention,
            hiddenActivation: try activation(file: file),
            maxPositionEmbeddings: max_position_embeddings ?? 8192,
            padTokenId: pad_token_id, bosTokenId: bos_token_id, eosTokenId: eos_token_id?.first)
    }

    private func missing(_ field: String, _ file: String) -> FormatError {
        FormatError(file: file, item: field, message: "missing field")
    }

    private func sizes(file: String) throws(FormatError)
        -> (hidden: Int, intermediate: Int, layers: Int, heads: Int, kvHeads: Int, vocab: Int, headDim: Int) {
        guard let hidden = hidden_size else { throw missing("hidden_size", file) }
        guard let intermediate = intermediate_size else { throw missing("intermediate_size", file) }
        guard let layers = num_hidden_layers else { throw missing("num_hidden_layers", file) }
        guard let heads = num_attention_heads else { throw missing("num_attention_heads", file) }
        guard let vocab = vocab_size else { throw missing("vocab_size", file) }
        guard let headDim = head_dim else { throw missing("head_dim", file) }
        let kvHeads = num_key_value_heads ?? heads
        guard hidden > 0, intermediate > 0, layers > 0, heads > 0, vocab > 0, headDim > 0, headDim % 2 == 0 else {
            throw FormatError(file: file, message: "sizes must be positive and head_dim even")
        }
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw FormatError(file: file, item: "num_key_value_heads", message: "\(kvHeads) does not divide num_attention_heads \(heads)")
        }
        try GemmaConfig.checkSizes(hidden: hidden, intermediate: intermediate, layers: layers, heads: heads, kvHeads: kvHeads,
                                   headDim: headDim, vocab: vocab, slidingWindow: sliding_window, file: file)
        return (hidden, intermediate, layers, heads, kvHeads, vocab, headDim)
    }

    /// An explicit list (5.x and late 4.x), else each family's 4.x rule.
    private func layerTypes(family: GemmaFamily, layers: Int, file: String) throws(FormatError) -> [LayerType] {
        var types: [LayerType]
        if let names = layer_types {
            types = []
            for (i, name) in names.enumerated() {
                guard let t = LayerType(rawValue: name) else {
                    throw FormatError(file: file, item: "layer_types[\(i)]", message: "unknown layer type '\(name)'")
                }
                types.append(t)
            }
            guard types.count == layers else {
                throw FormatError(file: file, item: "layer_types", message: "has \(types.count) entries for \(layers) layers")
            }
        } else {
            let period = sliding_window_pattern ?? _sliding_window_pattern
            if let period, period <= 0 {
                throw FormatError(file: file, item: "sliding_window_pattern", message: "\(period) must be positive")
            }
            types = family.defaultLayerTypes(count: layers, period: period)
        }
        if types.contains(.sliding), sliding_window == nil { throw missing("sliding_window", file) }
        return types
    }

    /// 5.x rope_parameters (flat or per layer type), else 4.x rope_theta (+ rope_local_base_freq).
    private func ropeParameters(types: [LayerType], file: String) throws(FormatError) -> (full: RopeParameters, sliding: RopeParameters) {
        var full = RopeParameters(theta: rope_theta ?? 10_000)
        var sliding = RopeParameters(theta: rope_local_base_freq ?? rope_theta ?? 10_000)
        if let scaling = rope_scaling, let factor = try scaling.linearFactor(file: file, field: "rope_scaling") {
            full.linearFactor = factor   // 4.x Gemma 3 scales the global layers only
        }
        switch rope_parameters {
        case .none: break
        case .flat(let p)?:
            let r = try p.parameters(file: file, field: "rope_parameters")
            full = r
            sliding = r
        case .perLayerType(let byType)?:
            for t in Set(types) {
                guard let p = byType[t.rawValue] else { throw missing("rope_parameters.\(t.rawValue)", file) }
                let r = try p.parameters(file: file, field: "rope_parameters.\(t.rawValue)")
                if t == .full { full = r } else { sliding = r }
            }
        }
        return (full, sliding)
    }

    private func activation(file: String) throws(FormatError) -> Activation {
        let name = hidden_activation ?? "gelu_pytorch_tanh"
        switch name {
        case "gelu_pytorch_tanh", "gelu_tanh", "gelu_new", "gelu_fast": return .geluTanh
        case "gelu": return .gelu
        default: throw FormatError(file: file, item: "hidden_activation", message: "unsupported activation '\(name)'")
        }
    }
}

/// Lets a struct hold an optional value of its own type.
private final class Box<T: Decodable>: Decodable {
    let value: T
    required init(from decoder: Decoder) throws { value = try T(from: decoder) }
}

private struct RawRope: Decodable {
    var rope_type: String?
    var type: String?
    var rope_theta: Double?
    var factor: Double?

    func linearFactor(file: String, field: String) throws(FormatError) -> Double? {
        switch rope_type ?? type ?? "default" {
        case "default": return nil
        case "linear": return factor ?? 1
        case let other:
            throw FormatError(file: file, item: field, message: "unsupported rope type '\(other)' (default and linear are supported)")
        }
    }

    func parameters(file: String, field: String) throws(FormatError) -> RopeParameters {
        guard let theta = rope_theta else {
            throw FormatError(file: file, item: "\(field).rope_theta", message: "missing field")
        }
        return RopeParameters(theta: theta, linearFactor: try linearFactor(file: file, field: field) ?? 1)
    }
}

/// transformers 5.x: `{"rope_theta": …}` for one kind of layer, or `{"full_attention": {…}, "sliding_attention": {…}}`.
private enum RopeParametersJSON: Decodable {
    case flat(RawRope)
    case perLayerType([String: RawRope])

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let byType = try? c.decode([String: RawRope].self),
           byType.keys.contains(where: { LayerType(rawValue: $0) != nil }) {
            self = .perLayerType(byType)
        } else {
            self = .flat(try c.decode(RawRope.self))
        }
    }
}

private enum IntOrList: Decodable {
    case one(Int), many([Int])
    var first: Int? {
        switch self {
        case .one(let v): return v
        case .many(let v): return v.first
        }
    }
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let v = try? c.decode(Int.self) { self = .one(v) } else { self = .many(try c.decode([Int].self)) }
    }
}
