import Foundation

extension GemmaConfig {
    /// config.json for transformers 5 (`GemmaModel`, `Gemma2Model`, `Gemma3TextModel`), which our loader reads
    /// back to this same config. `attention` is recorded as `use_bidirectional_attention`: transformers' Gemma 3
    /// builds its masks from it (and halves the sliding window for it, as `attentionSpan` does).
    public func huggingFaceConfigJSON(attention: AttentionMode) throws -> Data {
        let (modelType, architecture): (String, String) = switch family {
        case .gemma: ("gemma", "GemmaModel")
        case .gemma2: ("gemma2", "Gemma2Model")
        case .gemma3: ("gemma3_text", "Gemma3TextModel")
        }
        var json: [String: Any] = [
            "architectures": [architecture], "model_type": modelType, "vocab_size": vocabSize, "hidden_size": hiddenSize,
            "intermediate_size": intermediateSize, "num_hidden_layers": numLayers, "num_attention_heads": numHeads,
            "num_key_value_heads": numKVHeads, "head_dim": headDim, "rms_norm_eps": Double(rmsNormEps),
            "query_pre_attn_scalar": queryPreAttnScalar, "max_position_embeddings": maxPositionEmbeddings,
            "hidden_activation": hiddenActivation == .geluTanh ? "gelu_pytorch_tanh" : "gelu",
            "hidden_act": hiddenActivation == .geluTanh ? "gelu_pytorch_tanh" : "gelu",
            "use_bidirectional_attention": attention == .bidirectional, "tie_word_embeddings": true,
            "attention_bias": false, "attention_dropout": 0.0, "torch_dtype": "float32", "dtype": "float32",
            "layer_types": layerTypes.map(\.rawValue),
        ]
        func rope(_ r: RopeParameters) -> [String: Any] {
            r.linearFactor == 1 ? ["rope_type": "default", "rope_theta": r.theta]
                : ["rope_type": "linear", "rope_theta": r.theta, "factor": r.linearFactor]
        }
        if family == .gemma3 {
            json["rope_parameters"] = ["full_attention": rope(ropeFull), "sliding_attention": rope(ropeSliding)]
        } else {
            json["rope_parameters"] = rope(ropeFull)
        }
        if let attnLogitSoftcapping { json["attn_logit_softcapping"] = attnLogitSoftcapping }
        if let slidingWindow { json["sliding_window"] = slidingWindow }
        if let padTokenId { json["pad_token_id"] = padTokenId }
        if let bosTokenId { json["bos_token_id"] = bosTokenId }
        if let eosTokenId { json["eos_token_id"] = eosTokenId }
        return try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
    }
}
