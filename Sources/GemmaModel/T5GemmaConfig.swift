import EncoderKernels
import Foundation
import ModelFormats

/// The two T5Gemma generations: `t5gemma` (Gemma 2 layers, a cross-attention block in each decoder layer) and
/// `t5gemma2` (Gemma 3 layers, the decoder's self-attention also reading the encoder: "merged attention").
public enum T5GemmaVariant: String, Sendable, Codable {
    case t5gemma, t5gemma2

    /// The Gemma generation whose layers each stack is made of.
    var family: GemmaFamily { self == .t5gemma ? .gemma2 : .gemma3 }
}

/// A T5Gemma config.json resolved into its two stacks, each a `GemmaConfig` the Gemma blocks run as they are.
/// transformers' T5Gemma sub-configs have defaults of their own (head_dim 256, soft-caps 50 / 30, window 4,096, …),
/// applied here for every key a file leaves out, so an absent key means what transformers makes of it.
public struct T5GemmaConfig: Sendable, Equatable {
    public var variant: T5GemmaVariant
    public var encoder: GemmaConfig
    public var decoder: GemmaConfig
    /// The decoder's final_logit_softcapping: logits become tanh(l / cap) · cap.
    public var finalLogitSoftcapping: Double?
    /// Whether the LM head is the decoder's embedding (t5gemma) or the shared one (t5gemma2), or a tensor of its own.
    public var tieWordEmbeddings: Bool
    /// The first decoder token: transformers' checkpoints carry no decoder_start_token_id, so generation and
    /// label shifting start from the decoder's bos.
    public var decoderStartTokenId: Int

    public static let modelTypes = T5GemmaVariant.allNames

    /// A logit after the final soft-cap, tanh(l / cap) · cap, where the config sets one.
    public func softcapped(_ logit: Float) -> Float {
        guard let cap = finalLogitSoftcapping.map(Float.init) else { return logit }
        return tanhf(logit / cap) * cap
    }

    /// Whether a Hugging Face model directory holds a T5Gemma checkpoint (its config.json's `model_type`).
    public static func isCheckpoint(_ directory: URL) throws(FormatError) -> Bool {
        modelTypes.contains(try ModelRegistry.modelType(of: directory))
    }

    public static func load(_ url: URL) throws(FormatError) -> T5GemmaConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw FormatError(file: url.path, message: "cannot read: \(error.localizedDescription)")
        }
        return try decode(data, file: url.path)
    }

    public static func decode(_ data: Data, file: String = "config.json") throws(FormatError) -> T5GemmaConfig {
        guard let top = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError(file: file, message: "not a JSON object")
        }
        guard let type = top["model_type"] as? String, let variant = T5GemmaVariant(rawValue: type) else {
            throw FormatError(file: file, item: "model_type", message: "expected one of \(modelTypes.joined(separator: ", "))")
        }
        // t5gemma2's encoder wraps its text config beside a vision config (ignored: text only).
        var encoderJSON = try object(top["encoder"] ?? [String: Any](), "encoder", file)
        var encoderItem = "encoder"
        var eoi: Int?
        if variant == .t5gemma2 {
            // transformers overwrites the top-level value with the encoder's.
            eoi = (encoderJSON["eoi_token_index"] as? Int) ?? 256_000
            encoderJSON = try object(encoderJSON["text_config"] ?? [String: Any](), "encoder.text_config", file)
            encoderItem = "encoder.text_config"
        }
        let decoderJSON = try object(top["decoder"] ?? [String: Any](), "decoder", file)
        var (encoder, _) = try stack(encoderJSON, variant: variant, file: file, item: encoderItem)
        let decoded = try stack(decoderJSON, variant: variant, file: file, item: "decoder")
        var decoder = decoded.0
        encoder.eoiTokenIndex = eoi
        decoder.eoiTokenIndex = eoi
        guard variant == .t5gemma || encoder.vocabSize == decoder.vocabSize else {
            throw FormatError(file: file, item: "decoder.vocab_size", message: "\(decoder.vocabSize) differs from the encoder's \(encoder.vocabSize)")
        }
        if variant == .t5gemma2, encoder.hiddenSize != decoder.hiddenSize {
            throw FormatError(file: file, item: "decoder.hidden_size",
                              message: "\(decoder.hiddenSize) differs from the encoder's \(encoder.hiddenSize) (T5Gemma 2 shares one embedding)")
        }
        return T5GemmaConfig(variant: variant, encoder: encoder, decoder: decoder,
                             finalLogitSoftcapping: decoded.finalLogitSoftcapping,
                             tieWordEmbeddings: (top["tie_word_embeddings"] as? Bool) ?? true,
                             decoderStartTokenId: decoder.bosTokenId ?? 2)
    }

    private static func object(_ value: Any, _ item: String, _ file: String) throws(FormatError) -> [String: Any] {
        guard let object = value as? [String: Any] else { throw FormatError(file: file, item: item, message: "not a JSON object") }
        return object
    }

    /// transformers' defaults for the keys a sub-config leaves out (T5GemmaModuleConfig, T5Gemma2TextConfig).
    private static func withDefaults(_ json: [String: Any], variant: T5GemmaVariant) -> [String: Any] {
        var defaults: [String: Any] = [
            "vocab_size": 256_000, "hidden_size": 2304, "intermediate_size": 9216, "num_hidden_layers": 26,
            "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256, "query_pre_attn_scalar": 256,
            "sliding_window": 4096, "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh",
            "max_position_embeddings": 8192, "pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2,
            "attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
        ]
        if variant == .t5gemma2 {
            defaults["vocab_size"] = 262_208
            defaults["max_position_embeddings"] = 131_072
            defaults["attn_logit_softcapping"] = NSNull()
            defaults["final_logit_softcapping"] = NSNull()
        }
        var merged = json
        for (key, value) in defaults where merged[key] == nil { merged[key] = value }
        return merged
    }

    /// One stack's sub-config as the Gemma config of its layers, and its final_logit_softcapping (the decoder's
    /// is the one applied).
    private static func stack(_ json: [String: Any], variant: T5GemmaVariant, file: String, item: String) throws(FormatError)
        -> (GemmaConfig, finalLogitSoftcapping: Double?) {
        var json = withDefaults(json, variant: variant)
        if (json["attention_bias"] as? Bool) == true {
            throw FormatError(file: file, item: "\(item).attention_bias", message: "projection biases are not supported")
        }
        json["model_type"] = variant == .t5gemma ? "gemma2" : "gemma3_text"
        // Not a T5Gemma field (real T5Gemma 2 configs carry false): the encoder's own mask rule applies.
        json["use_bidirectional_attention"] = nil
        // transformers reads neither: layer_types, else each variant's default pattern.
        json["sliding_window_pattern"] = nil
        json["_sliding_window_pattern"] = nil
        if variant == .t5gemma2, json["rope_parameters"] == nil {
            // 4.x keys map to the per-type parameters; their defaults are 1M (full) and 10k (sliding).
            if json["rope_theta"] == nil { json["rope_theta"] = 1_000_000.0 }
            if json["rope_local_base_freq"] == nil { json["rope_local_base_freq"] = 10_000.0 }
        }
        let data: Data
        do { data = try JSONSerialization.data(withJSONObject: json) } catch {
            throw FormatError(file: file, item: item, message: "\(error.localizedDescription)")
        }
        var config = try GemmaConfig.decode(data, file: "\(file) (\(item))")
        config.t5Gemma = variant
        // T5Gemma 2's attention never soft-caps, whatever the config says.
        if variant == .t5gemma2 { config.attnLogitSoftcapping = nil }
        return (config, json["final_logit_softcapping"] as? Double)
    }
}

extension T5GemmaVariant: CaseIterable {
    static var allNames: [String] { allCases.map(\.rawValue) }
}

/// The weights of one stack of a T5Gemma checkpoint, under the names the Gemma blocks ask for: the stack's own
/// prefix (found by name, never by the order of the file's tensors) and the attention norms' T5Gemma names.
public struct T5GemmaStackWeights: WeightProvider {
    let base: SafetensorsWeights

    public enum Stack: String, Sendable { case encoder, decoder }

    /// `stack`'s tensors in `checkpoint`: "model.encoder." as `save_pretrained` writes them, "encoder." for an
    /// encoder-only save, "model.encoder.text_model." for T5Gemma 2's in-memory names. A T5Gemma 2 decoder
    /// without an embedding of its own reads the shared one (tied).
    public init(_ checkpoint: SafetensorsCheckpoint, stack: Stack) throws(FormatError) {
        let candidates = stack == .encoder
            ? ["model.encoder.", "encoder.", "model.encoder.text_model."]
            : ["model.decoder.", "decoder."]
        guard let prefix = candidates.first(where: { checkpoint.contains($0 + "embed_tokens.weight") || checkpoint.contains($0 + "norm.weight") }) else {
            throw FormatError(file: checkpoint.location, item: candidates[0] + "norm.weight",
                              message: "missing tensor (is this a T5Gemma checkpoint with its \(stack.rawValue)?)")
        }
        base = SafetensorsWeights(checkpoint, prefix: prefix)
    }

    /// transformers' T5Gemma names: pre_self_attn_layernorm / post_self_attn_layernorm for Gemma's
    /// input_layernorm / post_attention_layernorm.
    public static func checkpointName(_ name: String) -> String {
        name.replacingOccurrences(of: ".input_layernorm.", with: ".pre_self_attn_layernorm.")
            .replacingOccurrences(of: ".post_attention_layernorm.", with: ".post_self_attn_layernorm.")
    }

    public var prefix: String { base.prefix }
    public var checkpoint: SafetensorsCheckpoint { base.checkpoint }

    public func floats(_ name: String, shape: [Int]) throws(FormatError) -> FloatBuffer {
        try base.floats(Self.checkpointName(name), shape: shape)
    }

    public func storedLinear(_ name: String, shape: [Int], precision: WeightPrecision) throws(FormatError)
        -> (weight: LinearWeight, release: () -> Void) {
        try base.storedLinear(Self.checkpointName(name), shape: shape, precision: precision)
    }

    public func embedding(_ name: String, shape: [Int]) throws(FormatError) -> LinearWeight {
        try base.embedding(Self.checkpointName(name), shape: shape)
    }

    public func contains(_ name: String) -> Bool { base.contains(Self.checkpointName(name)) }
}
