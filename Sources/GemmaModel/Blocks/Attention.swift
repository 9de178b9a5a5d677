import EncoderKernels
import ModelFormats

/// Grouped-query self-attention: Q|K|V in one product over the normed input, optional Q/K RMSNorm (Gemma 3),
/// RoPE by position within each sequence, attention per sequence under the layer's span, then O.
struct SelfAttention: Sendable {
    let qkv: StackedLinear
    let o: LinearWeight
    /// Gemma 3's per-head norms of queries and keys, applied before RoPE.
    let queryNorm: RMSNorm?
    let keyNorm: RMSNorm?
    let shape: AttentionShape
    /// bf16 scores and weighted sums where the block's Linear products all run in bf16 (AMX tiles or AVX512-BF16).
    let products: AttentionProducts

    var queryWidth: Int { shape.numHeads * shape.headDim }
    var keyValueWidth: Int { shape.numKVHeads * shape.headDim }
    /// Width of one row of the stacked Q|K|V product.
    var stackedWidth: Int { queryWidth + 2 * keyValueWidth }

    init(config c: GemmaConfig, weights: WeightScope, precision: WeightPrecision) throws(FormatError) {
        let h = c.hiddenSize, hd = c.headDim
        shape = AttentionShape(numHeads: c.numHeads, numKVHeads: c.numKVHeads, headDim: hd,
                               scale: Float(1 / c.queryPreAttnScalar.squareRoot()),
                               softcap: c.attnLogitSoftcapping.map { Float($0) })
        let q = shape.numHeads * hd, kv = shape.numKVHeads * hd
        qkv = try weights.stackedLinear([("q_proj.weight", [q, h]), ("k_proj.weight", [kv, h]), ("v_proj.weight", [kv, h])],
                                        precision: precision)
        o = try weights.linear("o_proj.weight", shape: [h, q], precision: precision)
        products = .matching(qkv.weights.map(\.packing) + [o.packing])
        if c.usesQueryKeyNorm {
            queryNorm = RMSNorm(scale: try weights.normScale("q_norm.weight", dimension: hd), eps: c.rmsNormEps)
            keyNorm = RMSNorm(scale: try weights.normScale("k_norm.weight", dimension: hd), eps: c.rmsNormEps)
        } else {
            queryNorm = nil
            keyNorm = nil
        }
    }

    /// out = O · attention(Q, K, V) for every token of the packed batch.
    // normed: (T, C); out: (T, C); buffers.qkv: (T, stackedWidth); buffers.attention: (T, queryWidth)
    func forward(_ normed: UnsafePointer<Float>, batch: PackedBatch, rope: RopeTable, span: AttentionSpan,
                 buffers: ForwardBuffers, out: UnsafeMutablePointer<Float>) {
        let t = batch.tokens, width = stackedWidth
        let q = buffers.qkv, k = q + queryWidth, v = k + keyValueWidth
        buffers.timer.time(.qkv) { qkv.apply(m: t, a: normed, lda: batch.hiddenSize, c: q, ldc: width, threads: buffers.threads) }
        buffers.timer.time(.rope) {
            rope.normalizeAndRotate(q, offsets: batch.offsets, stride: width, queryHeads: shape.numHeads,
                                    keyHeads: shape.numKVHeads, keyOffset: queryWidth, queryScale: queryNorm?.scale.pointer,
                                    keyScale: keyNorm?.scale.pointer, eps: queryNorm?.eps ?? 0, threads: buffers.threads)
        }
        for s in 0..<batch.count {
            let start = batch.offsets[s], length = batch.length(s)
            guard length > 0 else { continue }
            buffers.timer.time(.attention) {
                attention(shape: shape, span: span, length: length,
                          q: q + start * width, ldq: width, k: k + start * width, v: v + start * width, ldkv: width,
                          out: buffers.attention + start * queryWidth, ldo: queryWidth, scores: buffers.scores,
                          threads: buffers.threads, products: products)
            }
        }
        buffers.timer.time(.output) {
            linear(m: t, a: buffers.attention, lda: queryWidth, weight: o, c: out, ldc: batch.hiddenSize, threads: buffers.threads)
        }
    }

    var weights: [LinearWeight] { qkv.weights + [o] }
}
