import Foundation

/// The Gemma generation a checkpoint belongs to; it decides norms, soft-capping, Q/K norms and mask rules.
public enum GemmaFamily: String, Sendable, Codable {
    case gemma, gemma2, gemma3
}

public enum LayerType: String, Sendable, Codable {
    case full = "full_attention"
    case sliding = "sliding_attention"
}

public enum Activation: String, Sendable, Codable {
    /// transformers' gelu_pytorch_tanh / gelu_new: the tanh approximation Gemma is trained with.
    case geluTanh
    /// Exact erf GELU.
    case gelu
}

/// RoPE for one layer type: base frequency and linear position scaling (Gemma 3 4B+ global layers).
public struct RopeParameters: Sendable, Equatable, Codable {
    public var theta: Double
    public var linearFactor: Double

    public init(theta: Double, linearFactor: Double = 1) {
        self.theta = theta
        self.linearFactor = linearFactor
    }
}

/// A Gemma-family text config resolved to what the forward pass needs, whichever JSON style it came from.
public struct GemmaConfig: Sendable, Equatable, Codable {
    public var family: GemmaFamily
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    /// Queries are scaled by queryPreAttnScalar^-0.5.
    public var queryPreAttnScalar: Double
    public var attnLogitSoftcapping: Double?
    public var slidingWindow: Int?
    public var layerTypes: [LayerType]
    public var ropeFull: RopeParameters
    public var ropeSliding: RopeParameters
    /// The checkpoint's own choice (EmbeddingGemma: true); nil when the config says nothing.
    public var useBidirectionalAttention: Bool?
    public var hiddenActivation: Activation
    public var maxPositionEmbeddings: Int
    public var padTokenId: Int?
    public var bosTokenId: Int?
    public var eosTokenId: Int?

    public init(family: GemmaFamily, vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numLayers: Int,
                numHeads: Int, numKVHeads: Int, headDim: Int, rmsNormEps: Float, queryPreAttnScalar: Double,
                attnLogitSoftcapping: Double?, slidingWindow: Int?, layerTypes: [LayerType],
                ropeFull: RopeParameters, ropeSliding: RopeParameters, useBidirectionalAttention: Bool?,
                hiddenActivation: Activation, maxPositionEmbeddings: Int,
                padTokenId: Int? = 0, bosTokenId: Int? = 2, eosTokenId: Int? = 1) {
        self.family = family
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numLayers = numLayers
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim
        self.rmsNormEps = rmsNormEps
        self.queryPreAttnScalar = queryPreAttnScalar
        self.attnLogitSoftcapping = attnLogitSoftcapping
        self.slidingWindow = slidingWindow
        self.layerTypes = layerTypes
        self.ropeFull = ropeFull
        self.ropeSliding = ropeSliding
        self.useBidirectionalAttention = useBidirectionalAttention
        self.hiddenActivation = hiddenActivation
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.padTokenId = padTokenId
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
    }

    /// Decodes `config.json` of a gemma, gemma2, gemma3_text or gemma3 (with `text_config`) checkpoint.
    public static func load(_ url: URL) throws(FormatError) -> GemmaConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw FormatError(file: url.path, message: "cannot read: \(error.localizedDescription)")
        }
        return try decode(data, file: url.path)
    }

    public static func decode(_ data: Data, file: String = "config.json") throws(FormatError) -> GemmaConfig {
        let raw: RawConfig
        do {
            raw = try JSONDecoder().decode(RawConfig.self, from: data)
        } catch let error as DecodingError {
            throw FormatError(file: file, item: error.codingPathDescription, message: error.shortDescription)
        } catch {
            throw FormatError(file: file, message: "not a valid config: \(error)")
        }
        return try raw.resolve(file: file)
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
        func missing(_ field: String) -> FormatError {
            FormatError(file: file, item: field, message: "missing field")
        }
        guard let modelType = model_type else { throw missing("model_type") }
        let family: GemmaFamily
        switch modelType {
        case "gemma": family = .gemma
        case "gemma2": family = .gemma2
        case "gemma3_text": family = .gemma3
        case "gemma3":
            guard var text = text_config?.value else { throw missing("text_config") }
            text.model_type = text.model_type ?? "gemma3_text"
            guard text.model_type == "gemma3_text" else {
                throw FormatError(file: file, item: "text_config.model_type", message: "expected gemma3_text, found \(text.model_type!)")
            }
            return try text.resolve(file: file + " (text_config)")
        default:
            throw FormatError(file: file, item: "model_type",
                              message: "unsupported model type '\(modelType)' (supported: gemma, gemma2, gemma3_text, gemma3)")
        }
        guard let hidden = hidden_size else { throw missing("hidden_size") }
        guard let intermediate = intermediate_size else { throw missing("intermediate_size") }
        guard let layers = num_hidden_layers else { throw missing("num_hidden_layers") }
        guard let heads = num_attention_heads else { throw missing("num_attention_heads") }
        guard let vocab = vocab_size else { throw missing("vocab_size") }
        guard let headDim = head_dim else { throw missing("head_dim") }
        let kvHeads = num_key_value_heads ?? heads
        guard hidden > 0, intermediate > 0, layers > 0, heads > 0, vocab > 0, headDim > 0, headDim % 2 == 0 else {
            throw FormatError(file: file, message: "sizes must be positive and head_dim even")
        }
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw FormatError(file: file, item: "num_key_value_heads",
                              message: "\(kvHeads) does not divide num_attention_heads \(heads)")
        }

        // Layer types: explicit list (5.x and late 4.x), else each family's 4.x rule.
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
                throw FormatError(file: file, item: "layer_types",
                                  message: "has \(types.count) entries for \(layers) layers")
            }
        } else {
            switch family {
            case .gemma:
                types = Array(repeating: .full, count: layers)
            case .gemma2:
                // transformers 4.x Gemma2DecoderLayer: is_sliding = not bool(layer_idx % 2).
                types = (0..<layers).map { $0 % 2 == 0 ? .sliding : .full }
            case .gemma3:
                let pattern = sliding_window_pattern ?? _sliding_window_pattern ?? 6
                types = (0..<layers).map { ($0 + 1) % pattern == 0 ? .full : .sliding }
            }
        }
        if types.contains(.sliding), sliding_window == nil { throw missing("sliding_window") }

        // RoPE: 5.x rope_parameters (flat or per layer type), else 4.x rope_theta (+ rope_local_base_freq).
        var ropeFull = RopeParameters(theta: rope_theta ?? 10_000)
        var ropeSliding = RopeParameters(theta: rope_local_base_freq ?? rope_theta ?? 10_000)
        if let scaling = rope_scaling, let factor = try scaling.linearFactor(file: file, field: "rope_scaling") {
            ropeFull.linearFactor = factor   // 4.x Gemma 3 scales the global layers only
        }
        switch rope_parameters {
        case .none: break
        case .flat(let p)?:
            let r = try p.parameters(file: file, field: "rope_parameters")
            ropeFull = r
            ropeSliding = r
        case .perLayerType(let byType)?:
            for t in Set(types) {
                guard let p = byType[t.rawValue] else { throw missing("rope_parameters.\(t.rawValue)") }
                let r = try p.parameters(file: file, field: "rope_parameters.\(t.rawValue)")
                if t == .full { ropeFull = r } else { ropeSliding = r }
            }
        }

        let activationName = hidden_activation ?? "gelu_pytorch_tanh"
        let activation: Activation
        switch activationName {
        case "gelu_pytorch_tanh", "gelu_tanh", "gelu_new", "gelu_fast": activation = .geluTanh
        case "gelu": activation = .gelu
        default:
            throw FormatError(file: file, item: "hidden_activation", message: "unsupported activation '\(activationName)'")
        }

        return GemmaConfig(
            family: family, vocabSize: vocab, hiddenSize: hidden, intermediateSize: intermediate,
            numLayers: layers, numHeads: heads, numKVHeads: kvHeads, headDim: headDim,
            rmsNormEps: Float(rms_norm_eps ?? 1e-6),
            // Gemma 1 scales by head_dim^-0.5; Gemma 2/3 name the scalar explicitly.
            queryPreAttnScalar: query_pre_attn_scalar ?? Double(headDim),
            attnLogitSoftcapping: family == .gemma ? nil : attn_logit_softcapping,
            slidingWindow: types.contains(.sliding) ? sliding_window : nil,
            layerTypes: types, ropeFull: ropeFull, ropeSliding: ropeSliding,
            useBidirectionalAttention: use_bidirectional_attention,
            hiddenActivation: activation,
            maxPositionEmbeddings: max_position_embeddings ?? 8192,
            padTokenId: pad_token_id, bosTokenId: bos_token_id, eosTokenId: eos_token_id?.first)
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

extension DecodingError {
    /// "rope_parameters.full_attention.rope_theta": where in the JSON the problem is.
    public var codingPathDescription: String {
        let path: [CodingKey]
        switch self {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): path = c.codingPath
        case .keyNotFound(let key, let c): path = c.codingPath + [key]
        @unknown default: path = []
        }
        return path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }

    public var shortDescription: String {
        switch self {
        case .typeMismatch(let type, _): return "expected a value of type \(type)"
        case .valueNotFound(let type, _): return "expected a value of type \(type), found null"
        case .keyNotFound: return "missing field"
        case .dataCorrupted(let c): return c.debugDescription
        @unknown default: return "invalid"
        }
    }
}
