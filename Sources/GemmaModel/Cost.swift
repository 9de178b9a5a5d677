import ModelFormats

extension GemmaConfig {
    /// Multiply-adds per token in the linear layers of the whole stack (Q, K, V, O, gate, up, down).
    public var linearMACsPerToken: Double {
        let h = Double(hiddenSize), q = Double(numHeads * headDim), kv = Double(numKVHeads * headDim)
        let perLayer = h * (q + 2 * kv) + q * h + 3 * h * Double(intermediateSize)
        return perLayer * Double(numLayers)
    }

    /// Floating-point operations (2 per multiply-add) to encode one sequence of `length` tokens, counting
    /// attention over the keys each query actually sees.
    public func flops(length: Int, mode: AttentionMode = .bidirectional) -> Double {
        var attentionMACs = 0.0
        for layer in 0..<numLayers {
            let span = attentionSpan(layer: layer, mode: mode)
            var visible = 0
            for i in 0..<length { visible += span.keyRange(query: i, length: length).count }
            // q·k and p·v per head.
            attentionMACs += 2 * Double(numHeads * headDim) * Double(visible)
        }
        return 2 * (linearMACsPerToken * Double(length) + attentionMACs)
    }
}
