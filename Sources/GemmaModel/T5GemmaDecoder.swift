import EncoderKernels
import Foundation
import ModelFormats

/// The decoder of a T5Gemma checkpoint, run over one encoded sequence a few tokens at a time with a KV cache:
/// what RankT5-style scoring needs (the first step's logit of one token) and what generation would need.
/// Each layer: causal self-attention (sliding layers 0 ≤ i − j < w, the decoder's own w) with RoPE, then the
/// encoder read — a cross-attention block of its own (t5gemma: no RoPE, no norms, soft-capped) or, in t5gemma2,
/// the same projections and softmax as the self-attention over the decoder's keys and the encoder's (k_norm, no
/// RoPE) together — then the MLP, each branch sandwiched in norms as in Gemma 2/3.
public final class T5GemmaDecoder: Sendable {
    public let config: T5GemmaConfig
    let embedding: TokenEmbedding
    let layers: [T5GemmaDecoderLayer]
    let finalNorm: RMSNorm
    /// vocabulary × hidden: the LM head (tied to the embedding unless the checkpoint has its own).
    let lmHead: LinearWeight
    let rotary: RotaryEmbedding

    public init(directory: URL, precision: WeightPrecision = .f32) throws(FormatError) {
        ComputeThreads.configure()
        let config = try T5GemmaConfig.load(directory.appendingPathComponent("config.json"))
        let checkpoint = try SafetensorsCheckpoint(url: directory)
        let weights = try T5GemmaStackWeights(checkpoint, stack: .decoder)
        let c = config.decoder, h = c.hiddenSize
        self.config = config
        (embedding, lmHead) = try Self.embeddingAndHead(checkpoint, config: config)
        var layers: [T5GemmaDecoderLayer] = []
        for l in 0..<c.numLayers {
            layers.append(try T5GemmaDecoderLayer(config: config, index: l, weights: WeightScope(weights, prefix: "layers.\(l)."),
                                                  precision: precision))
        }
        self.layers = layers
        finalNorm = RMSNorm(scale: try weights.normScale("norm.weight", dimension: h), eps: c.rmsNormEps)
        rotary = RotaryEmbedding(config: c)
    }

    /// The decoder's input embedding and its LM head (vocabulary × hidden) as `checkpoint` stores them: T5Gemma 2
    /// shares one embedding (and eoi vector) between the stacks unless the checkpoint unties them, and the head is
    /// the embedding unless the checkpoint has a head of its own.
    public static func embeddingAndHead(_ checkpoint: SafetensorsCheckpoint, config: T5GemmaConfig) throws(FormatError)
        -> (embedding: TokenEmbedding, head: LinearWeight) {
        let c = config.decoder
        let weights = try T5GemmaStackWeights(checkpoint, stack: .decoder)
        let shared = config.variant == .t5gemma2 && !weights.contains("embed_tokens.weight")
            ? try T5GemmaStackWeights(checkpoint, stack: .encoder) : weights
        let embedding = try TokenEmbedding(config: c, weights: shared)
        let ownHead = "lm_head.out_proj.weight"
        guard !config.tieWordEmbeddings || checkpoint.contains(ownHead) else { return (embedding, embedding.table) }
        return (embedding, try SafetensorsWeights(checkpoint, prefix: "").linear(ownHead, shape: [c.vocabSize, c.hiddenSize], precision: .f32))
    }

    public var vocabularySize: Int { config.decoder.vocabSize }

    /// Starts decoding over one sequence's encoder states (length × the encoder's hidden size): every layer's
    /// encoder keys and values are computed here, once.
    public func start(encoderStates: ArraySlice<Float>, length: Int, threads: Int = 1) -> T5GemmaDecoderCache {
        precondition(encoderStates.count == length * config.encoder.hiddenSize, "encoder states of another shape")
        let cache = T5GemmaDecoderCache(layers: layers.count, encoderLength: length)
        guard length > 0 else { return cache }
        encoderStates.withUnsafeBufferPointer { states in
            for (l, layer) in layers.enumerated() {
                cache.encoderKeysValues[l] = layer.encoderKeysValues(states.baseAddress!, rows: length, threads: threads)
            }
        }
        return cache
    }

    /// Runs `ids` (the next decoder tokens) after what `cache` holds, appending their keys and values; returns the
    /// hidden states after the final norm (ids.count × hidden).
    public func hidden(_ ids: [Int32], cache: T5GemmaDecoderCache, threads: Int = 1) throws(ModelError) -> [Float] {
        try run(ids, caches: Array(repeating: cache, count: ids.count), threads: threads)
    }

    /// One next token for each of several runs (`ids[i]` after what `caches[i]` holds, the caches distinct): the
    /// rows go through each product together, so a batch of pairs reads the decoder's weights once, not once per
    /// pair. Returns the hidden states after the final norm (ids.count × hidden).
    public func hidden(next ids: [Int32], caches: [T5GemmaDecoderCache], threads: Int = 1) throws(ModelError) -> [Float] {
        precondition(ids.count == caches.count && Set(caches.map(ObjectIdentifier.init)).count == caches.count,
                     "one token for each of distinct runs")
        return try run(ids, caches: caches, threads: threads)
    }

    /// Row r is token ids[r] of run caches[r], at that run's next position (rows of one run in order).
    private func run(_ ids: [Int32], caches: [T5GemmaDecoderCache], threads: Int) throws(ModelError) -> [Float] {
        let c = config.decoder, h = c.hiddenSize, t = ids.count
        for (p, id) in ids.enumerated() where id < 0 || Int(id) >= c.vocabSize {
            throw .tokenOutOfRange(sequence: 0, position: p, id: id, vocabularySize: c.vocabSize)
        }
        guard t > 0 else { return [] }
        var positions: [Int] = []
        var next: [ObjectIdentifier: Int] = [:]
        for cache in caches {
            let key = ObjectIdentifier(cache)
            let p = next[key] ?? cache.length
            positions.append(p)
            next[key] = p + 1
        }
        var x = [Float](repeating: 0, count: t * h)
        let rotary = self.rotary.covering((positions.max() ?? 0) + 1)
        x.withUnsafeMutableBufferPointer { x in
            embedding.embed(ids, into: x.baseAddress!)
            // maxLength 1: the decoder's attention keeps its own scores, not the encoder forward's per-core buffer.
            let buffers = ForwardBuffers(tokens: t, maxLength: 1, hiddenSize: h,
                                         stackedQKV: layers[0].selfQKV.width, queryWidth: c.numHeads * c.headDim,
                                         intermediateSize: c.intermediateSize, threads: threads)
            for (l, layer) in layers.enumerated() {
                layer.forward(x.baseAddress!, rows: t, positions: positions, rope: rotary.table(for: layer.type),
                              span: c.attentionSpan(layer: l, mode: .causal), caches: caches, layer: l, buffers: buffers)
            }
            finalNorm.forward(x.baseAddress!, rows: t, out: x.baseAddress!)
        }
        for cache in caches { cache.length += 1 }
        return x
    }

    /// Logits over the vocabulary for each row of `hidden` (final logit soft-cap applied).
    public func logits(_ hidden: [Float]) -> [Float] {
        let h = config.decoder.hiddenSize, rows = hidden.count / h, v = vocabularySize
        var out = [Float](repeating: 0, count: rows * v)
        hidden.withUnsafeBufferPointer { a in
            out.withUnsafeMutableBufferPointer { c in
                linear(m: rows, a: a.baseAddress!, lda: h, weight: lmHead, c: c.baseAddress!, ldc: v)
            }
        }
        return out.map(config.softcapped)
    }

    /// The logit of `token` for one hidden row (soft-capped as `logits`): one row of the head instead of all.
    public func logit(of token: Int, hidden row: ArraySlice<Float>) -> Float {
        let h = config.decoder.hiddenSize
        precondition(row.count == h && token >= 0 && token < vocabularySize)
        var weights = [Float](repeating: 0, count: h)
        weights.withUnsafeMutableBufferPointer { lmHead.dequantize(rows: token..<(token + 1), into: $0.baseAddress!) }
        var s: Float = 0
        for (w, x) in zip(weights, row) { s += w * x }
        return config.softcapped(s)
    }
}

/// What a decoding run keeps between steps: per layer the encoder's keys and values (computed once, each row its key
/// then its value) and the decoder's own keys (after norm and RoPE) and values, one row per decoded token. One run's,
/// on one thread at a time (not Sendable).
public final class T5GemmaDecoderCache {
    public let encoderLength: Int
    /// Decoder tokens run so far.
    public internal(set) var length = 0
    var encoderKeysValues: [[Float]]
    var selfKeys: [[Float]]
    var selfValues: [[Float]]

    init(layers: Int, encoderLength: Int) {
        self.encoderLength = encoderLength
        encoderKeysValues = Array(repeating: [], count: layers)
        selfKeys = Array(repeating: [], count: layers)
        selfValues = Array(repeating: [], count: layers)
    }
}

/// One decoder layer of either variant.
struct T5GemmaDecoderLayer: Sendable {
    let type: LayerType
    let variant: T5GemmaVariant
    let shape: AttentionShape
    let selfQKV: StackedLinear
    let selfO: LinearWeight
    let queryNorm: RMSNorm?
    let keyNorm: RMSNorm?
    let preSelfNorm: RMSNorm
    let postSelfNorm: RMSNorm
    /// t5gemma's cross-attention block: Q over the decoder, K|V over the encoder states, O, and its norms.
    let cross: (q: LinearWeight, kv: StackedLinear, o: LinearWeight, pre: RMSNorm, post: RMSNorm)?
    /// T5Gemma 2 reads the encoder with the self-attention's own K|V (a stack of the same weights, for one product).
    let mergedKV: StackedLinear?
    let preMLPNorm: RMSNorm
    let postMLPNorm: RMSNorm
    let mlp: GatedMLP

    init(config t5: T5GemmaConfig, index: Int, weights: WeightScope, precision: WeightPrecision) throws(FormatError) {
        let c = t5.decoder, h = c.hiddenSize, hd = c.headDim, q = c.numHeads * hd, kv = c.numKVHeads * hd
        func norm(_ name: String, _ dimension: Int = h) throws(FormatError) -> RMSNorm {
            RMSNorm(scale: try weights.normScale(name, dimension: dimension), eps: c.rmsNormEps)
        }
        type = c.layerTypes[index]
        variant = t5.variant
        shape = AttentionShape(numHeads: c.numHeads, numKVHeads: c.numKVHeads, headDim: hd,
                               scale: Float(1 / c.queryPreAttnScalar.squareRoot()), softcap: c.attnLogitSoftcapping.map { Float($0) })
        let attention = weights.scoped("self_attn")
        selfQKV = try attention.stackedLinear([("q_proj.weight", [q, h]), ("k_proj.weight", [kv, h]), ("v_proj.weight", [kv, h])],
                                              precision: precision)
        selfO = try attention.linear("o_proj.weight", shape: [h, q], precision: precision)
        if c.usesQueryKeyNorm {
            queryNorm = try RMSNorm(scale: attention.normScale("q_norm.weight", dimension: hd), eps: c.rmsNormEps)
            keyNorm = try RMSNorm(scale: attention.normScale("k_norm.weight", dimension: hd), eps: c.rmsNormEps)
        } else {
            queryNorm = nil
            keyNorm = nil
        }
        preSelfNorm = try norm("input_layernorm.weight")
        postSelfNorm = try norm("post_attention_layernorm.weight")
        let encoderWidth = t5.encoder.hiddenSize
        if t5.variant == .t5gemma {
            let block = weights.scoped("cross_attn")
            cross = (q: try block.linear("q_proj.weight", shape: [q, h], precision: precision),
                     kv: try block.stackedLinear([("k_proj.weight", [kv, encoderWidth]), ("v_proj.weight", [kv, encoderWidth])], precision: precision),
                     o: try block.linear("o_proj.weight", shape: [h, q], precision: precision),
                     pre: try norm("pre_cross_attn_layernorm.weight"), post: try norm("post_cross_attn_layernorm.weight"))
            mergedKV = nil
        } else {
            cross = nil
            mergedKV = try attention.stackedLinear([("k_proj.weight", [kv, h]), ("v_proj.weight", [kv, h])], precision: precision)
        }
        preMLPNorm = try norm("pre_feedforward_layernorm.weight")
        postMLPNorm = try norm("post_feedforward_layernorm.weight")
        mlp = try GatedMLP(config: c, weights: weights.scoped("mlp"), precision: precision)
    }

    var keyValueWidth: Int { shape.numKVHeads * shape.headDim }

    /// The encoder's keys and values as this layer reads them (rows × 2·KV·hd, each row its key then its value): the
    /// cross block's K|V, or T5Gemma 2's own K|V with k_norm (no RoPE: the encoder's positions are not the decoder's).
    func encoderKeysValues(_ states: UnsafePointer<Float>, rows: Int, threads: Int) -> [Float] {
        let kvw = keyValueWidth, projection = cross?.kv ?? mergedKV!, inWidth = projection.weights[0].columns
        var both = [Float](repeating: 0, count: rows * 2 * kvw)
        both.withUnsafeMutableBufferPointer { out in
            projection.apply(m: rows, a: states, lda: inWidth, c: out.baseAddress!, ldc: 2 * kvw, threads: threads)
            // A row's key heads lie side by side: each is one row of the per-head norm.
            if let keyNorm {
                for r in 0..<rows { keyNorm.forward(out.baseAddress! + r * 2 * kvw, rows: shape.numKVHeads, out: out.baseAddress! + r * 2 * kvw) }
            }
        }
        return both
    }

    /// x ← x + post(attention(pre(x))) [+ the cross block] ; x ← x + post(mlp(pre(x))): row r at decoder position
    /// positions[r] of run caches[r], its key and value appended there (every row's before any attends, so a
    /// run's later rows see its earlier ones; the span keeps each row from seeing past itself).
    // x: (T, C), updated in place
    func forward(_ x: UnsafeMutablePointer<Float>, rows t: Int, positions: [Int], rope: RopeTable, span: AttentionSpan,
                 caches: [T5GemmaDecoderCache], layer l: Int, buffers: ForwardBuffers) {
        let h = preSelfNorm.dimension, hd = shape.headDim, qw = shape.numHeads * hd, kvw = keyValueWidth
        let width = qw + 2 * kvw
        let normed = buffers.normed, branch = buffers.branch, qkv = buffers.qkv
        preSelfNorm.forward(x, rows: t, out: normed)
        selfQKV.apply(m: t, a: normed, lda: h, c: qkv, ldc: width, threads: buffers.threads)
        for r in 0..<t {
            let row = qkv + r * width
            rope.normalizeAndApply(row, heads: shape.numHeads, position: positions[r], scale: queryNorm?.scale.pointer,
                                   eps: queryNorm?.eps ?? 0)
            rope.normalizeAndApply(row + qw, heads: shape.numKVHeads, position: positions[r], scale: keyNorm?.scale.pointer,
                                   eps: keyNorm?.eps ?? 0)
            caches[r].selfKeys[l].append(contentsOf: UnsafeBufferPointer(start: row + qw, count: kvw))
            caches[r].selfValues[l].append(contentsOf: UnsafeBufferPointer(start: row + qw + kvw, count: kvw))
        }
        let merged = variant == .t5gemma2
        for r in 0..<t {
            let i = positions[r], visible = span.keyRange(query: i, length: i + 1), cache = caches[r]
            let keys = visible.lowerBound..<(visible.upperBound + 1)
            attend(query: qkv + r * width, selfKeys: cache.selfKeys[l], selfValues: cache.selfValues[l], keyRange: keys,
                   encoder: merged ? cache.encoderKeysValues[l] : nil, out: buffers.attention + r * qw)
        }
        linear(m: t, a: buffers.attention, lda: qw, weight: selfO, c: branch, ldc: h, threads: buffers.threads)
        if let cross {
            RMSNorm.join(branch, into: x, rows: t, dim: h, branchNorm: postSelfNorm, next: cross.pre, normed: normed)
            linear(m: t, a: normed, lda: h, weight: cross.q, c: qkv, ldc: qw, threads: buffers.threads)
            for r in 0..<t {
                attend(query: qkv + r * qw, selfKeys: [], selfValues: [], keyRange: 0..<0,
                       encoder: caches[r].encoderKeysValues[l], out: buffers.attention + r * qw)
            }
            linear(m: t, a: buffers.attention, lda: qw, weight: cross.o, c: branch, ldc: h, threads: buffers.threads)
            RMSNorm.join(branch, into: x, rows: t, dim: h, branchNorm: cross.post, next: preMLPNorm, normed: normed)
        } else {
            RMSNorm.join(branch, into: x, rows: t, dim: h, branchNorm: postSelfNorm, next: preMLPNorm, normed: normed)
        }
        mlp.forward(normed, rows: t, hiddenSize: h, buffers: buffers, out: branch)
        RMSNorm.join(branch, into: x, rows: t, dim: h, branchNorm: postMLPNorm, next: nil, normed: nil)
    }

    /// One query row (all heads) against the decoder keys in `keyRange` and, when given, every encoder key (`encoder`:
    /// rows of key then value), in one softmax per head: scores scaled, soft-capped where the variant caps, weighted
    /// sum of the values.
    private func attend(query: UnsafePointer<Float>, selfKeys: [Float], selfValues: [Float], keyRange: Range<Int>,
                        encoder: [Float]?, out: UnsafeMutablePointer<Float>) {
        let hd = shape.headDim, kvw = keyValueWidth
        let selfCount = keyRange.count, encoderCount = (encoder?.count ?? 0) / (2 * kvw)
        var scores = [Float](repeating: 0, count: selfCount + encoderCount)
        for head in 0..<shape.numHeads {
            let g = shape.group(of: head), q = query + head * hd
            // Row j of `rows` (rows `stride` values apart), this head group's part of its key.
            func score(_ rows: [Float], _ j: Int, stride: Int) -> Float {
                var s: Float = 0
                rows.withUnsafeBufferPointer { k in
                    let key = k.baseAddress! + j * stride + g * hd
                    for d in 0..<hd { s += q[d] * key[d] }
                }
                s *= shape.scale
                if let cap = shape.softcap { s = tanhf(s / cap) * cap }
                return s
            }
            for (n, j) in keyRange.enumerated() { scores[n] = score(selfKeys, j, stride: kvw) }
            if let encoder { for j in 0..<encoderCount { scores[selfCount + j] = score(encoder, j, stride: 2 * kvw) } }
            _ = scores.withUnsafeMutableBufferPointer { softmaxInPlace($0.baseAddress!, count: $0.count) }
            let o = out + head * hd
            for d in 0..<hd { o[d] = 0 }
            func accumulate(_ rows: [Float], _ start: Int, _ p: Float) {
                rows.withUnsafeBufferPointer { v in
                    let value = v.baseAddress! + start + g * hd
                    for d in 0..<hd { o[d] += p * value[d] }
                }
            }
            for (n, j) in keyRange.enumerated() { accumulate(selfValues, j * kvw, scores[n]) }
            if let encoder { for j in 0..<encoderCount { accumulate(encoder, j * 2 * kvw + kvw, scores[selfCount + j]) } }
        }
    }
}
