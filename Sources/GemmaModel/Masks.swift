import EncoderKernels
import ModelFormats

/// How tokens attend to each other: the encoder default, or the decoder's own.
public enum AttentionMode: String, Sendable, CaseIterable, Codable {
    case bidirectional
    case causal
}

extension GemmaConfig {
    /// The visible band for layer `layer`, exactly the peers' rules:
    /// - full layers: every real token (bidirectional), or j ≤ i (causal);
    /// - sliding, causal: 0 ≤ i − j < w;
    /// - sliding, bidirectional, Gemma 3: transformers turns w into w // 2 + 1 exclusive, so |i − j| ≤ w // 2;
    /// - sliding, bidirectional, Gemma 2: T5Gemma's encoder rule, |i − j| ≤ w;
    /// - sliding, bidirectional, a T5Gemma 2 encoder: transformers' non-causal sliding mask, w keys with the
    ///   extra one on the right: −(w // 2) ≤ i − j ≤ (w + 1) // 2 − 1.
    public func attentionSpan(layer: Int, mode: AttentionMode) -> AttentionSpan {
        let full: AttentionSpan = mode == .causal ? .causal : .all
        guard layerTypes[layer] == .sliding, let w = slidingWindow else { return full }
        if mode == .bidirectional, let t5Gemma {
            switch t5Gemma {
            case .t5gemma: return AttentionSpan(before: w, after: w)
            case .t5gemma2: return AttentionSpan(before: (w + 1) / 2 - 1, after: w / 2)
            }
        }
        switch (mode, family) {
        case (.causal, .gemma3) where useBidirectionalAttention == true:
            // Gemma3TextConfig rewrites sliding_window to w // 2 + 1 at load when the checkpoint is
            // bidirectional, so a causal run of such a checkpoint in transformers uses that window.
            return AttentionSpan(before: w / 2, after: 0)
        case (.causal, _):
            return AttentionSpan(before: max(w - 1, 0), after: 0)
        case (.bidirectional, .gemma3):
            return AttentionSpan(before: w / 2, after: w / 2)
        case (.bidirectional, _):
            return AttentionSpan(before: w, after: w)
        }
    }
}
