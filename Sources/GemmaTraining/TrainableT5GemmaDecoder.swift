import EncoderKernels
import Foundation
import GemmaModel
import ModelFormats

/// The decoder of a T5Gemma checkpoint as RankT5-style scoring trains it: one step from the start token over each
/// pair's encoder states, the pair's score the (soft-capped) logit of one token. f32 master copies of every decoder
/// layer and the final norm; the embedding and the LM head stay frozen (the score reads one row of each, and T5Gemma 2
/// ties both to the encoder's table). The step sits at position 0, where RoPE is the identity, and its self-attention
/// sees its own key only. The backward returns the gradient of the encoder's final states, which every layer reads.
public final class TrainableT5GemmaDecoder: @unchecked Sendable {
    public let config: T5GemmaConfig
    let layers: [TrainableDecoderLayer]
    public let finalNorm: Parameter
    /// The start token's embedding (× √C, or T5Gemma 2's eoi vector) and the LM head's row of the scored token.
    let startRow: [Float]
    let headRow: [Float]
    public let token: Int
    /// The Linear products, as the encoder's (`TrainableGemma.products`).
    public var products: ProductPrecision = .f32

    public init(directory: URL, token: Int) throws(FormatError) {
        let config = try T5GemmaConfig.load(directory.appendingPathComponent("config.json"))
        let checkpoint = try SafetensorsCheckpoint(url: directory)
        let weights = try T5GemmaStackWeights(checkpoint, stack: .decoder)
        let c = config.decoder, h = c.hiddenSize
        guard token >= 0, token < c.vocabSize else {
            throw FormatError(file: directory.path, item: "token", message: "token id \(token) is outside the decoder's vocabulary (0..<\(c.vocabSize))")
        }
        guard config.variant == .t5gemma || config.encoder.hiddenSize == h else {
            throw FormatError(file: directory.path, item: "hidden_size", message: "T5Gemma 2's merged attention reads encoder states of the decoder's width")
        }
        self.config = config
        self.token = token
        var layers: [TrainableDecoderLayer] = []
        for l in 0..<c.numLayers { layers.append(try TrainableDecoderLayer(config: config, index: l, weights: weights)) }
        self.layers = layers
        finalNorm = try Parameter.norm("norm.weight", dimension: h, from: weights, label: Self.label)
        let (embedding, head) = try T5GemmaDecoder.embeddingAndHead(checkpoint, config: config)
        var start = [Float](repeating: 0, count: h), row = start
        start.withUnsafeMutableBufferPointer { embedding.embed([Int32(config.decoderStartTokenId)], into: $0.baseAddress!) }
        row.withUnsafeMutableBufferPointer { head.dequantize(rows: token..<(token + 1), into: $0.baseAddress!) }
        startRow = start
        headRow = row
    }

    /// What every parameter's name starts with, before its stack-relative checkpoint name: the encoder's are the
    /// bare names, and one optimizer (and its checkpoint) holds both.
    public static let label = "decoder."

    /// Every parameter: each layer's, then the final norm.
    public var parameters: [Parameter] { layers.flatMap(\.parameters) + [finalNorm] }

    public var trainedParameters: [Parameter] { parameters.filter(\.isTrained) }

    public func setTrained(_ trained: Bool) { for p in parameters { p.setTrained(trained) } }

    /// The decoder as checkpoint tensors under their stack-relative names (norm weights as w), for writing back
    /// into a copy of the checkpoint.
    public func checkpointTensors() -> [(name: String, shape: [Int], values: [Float])] {
        parameters.flatMap { $0.checkpointTensors() }.map { (String($0.name.dropFirst(Self.label.count)), $0.shape, $0.values) }
    }

    /// One scoring step's result: a score per pair and what the backward reads.
    public final class Pass: @unchecked Sendable {
        public let scores: [Float]
        let batch: PackedBatch
        let encoderStates: Tensor
        let tapes: [DecoderTape]
        /// (B, C) the stream entering the final norm.
        let finalInput: Tensor
        let threads: Int

        init(scores: [Float], batch: PackedBatch, encoderStates: Tensor, tapes: [DecoderTape], finalInput: Tensor, threads: Int) {
            self.scores = scores
            self.batch = batch
            self.encoderStates = encoderStates
            self.tapes = tapes
            self.finalInput = finalInput
            self.threads = threads
        }
    }

    /// Scores every sequence of `batch` from its encoder states (`states`: (T, C) packed, the encoder's output after
    /// its final norm).
    public func forward(states: Tensor, batch: PackedBatch, threads: Int = 1) -> Pass {
        let b = batch.count, h = config.decoder.hiddenSize
        precondition(states.count == batch.tokens * config.encoder.hiddenSize, "encoder states of another shape")
        let x = Tensor(uninitialized: b * h)
        for r in 0..<b { (x.pointer + r * h).update(from: startRow, count: h) }
        let context = DecoderStep(batch: batch, encoder: states, threads: max(1, threads), products: products)
        var tapes: [DecoderTape] = []
        for layer in layers {
            let tape = DecoderTape()
            layer.forward(x.pointer, context: context, tape: tape)
            tapes.append(tape)
        }
        let finalInput = Tensor(copying: x.pointer, count: b * h)
        let y = Tensor(uninitialized: b * h)
        rmsNorm(x.pointer, rows: b, dim: h, scale: normScale(finalNorm), eps: config.decoder.rmsNormEps, out: y.pointer)
        let scores = (0..<b).map { r in config.softcapped(dot(y.pointer + r * h, headRow, h)) }
        return Pass(scores: scores, batch: batch, encoderStates: states, tapes: tapes, finalInput: finalInput, threads: max(1, threads))
    }

    /// Given dL/d(score) per pair, accumulates every trained parameter's gradient; returns dL/d(the encoder states).
    public func backward(_ pass: Pass, gradScores: [Float]) -> Tensor {
        let b = pass.batch.count, h = config.decoder.hiddenSize
        precondition(gradScores.count == b)
        let dx = Tensor(uninitialized: b * h)
        for r in 0..<b {
            // score = cap · tanh(z / cap): dz = ds · (1 − (score / cap)²); z = y · head.
            var dz = gradScores[r]
            if let cap = config.finalLogitSoftcapping.map(Float.init) { dz *= 1 - (pass.scores[r] / cap) * (pass.scores[r] / cap) }
            for j in 0..<h { dx.pointer[r * h + j] = dz * headRow[j] }
        }
        rmsNormBackward(pass.finalInput.pointer, rows: b, dim: h, scale: normScale(finalNorm), eps: config.decoder.rmsNormEps,
                        gradOut: dx.pointer, gradIn: dx.pointer, gradScale: finalNorm.gradient?.pointer)
        let gradStates = Tensor(count: pass.encoderStates.count)
        let context = DecoderStep(batch: pass.batch, encoder: pass.encoderStates, threads: pass.threads, products: products)
        for (layer, tape) in zip(layers, pass.tapes).reversed() {
            layer.backward(dx.pointer, context: context, tape: tape, gradEncoder: gradStates.pointer)
        }
        return gradStates
    }

    private func dot(_ a: UnsafePointer<Float>, _ b: [Float], _ n: Int) -> Float {
        var s: Float = 0
        for j in 0..<n { s += a[j] * b[j] }
        return s
    }
}

/// What one decoder step shares across layers: the pairs, their encoder states, the cores, the products.
struct DecoderStep {
    let batch: PackedBatch
    /// (T, C) the encoder's final states, every pair's rows packed.
    let encoder: Tensor
    let threads: Int
    let products: ProductPrecision
}

/// What one decoder layer's step keeps for its backward (B pair rows; T encoder rows).
final class DecoderTape {
    var input: Tensor!            // (B, C)
    var selfInput: Tensor!        // (B, C) normed
    var projected: Tensor!        // (B, W) Q|K|V from the product
    var qkv: Tensor!              // (B, W) after the Q/K norms
    var encoderProjected: Tensor! // (T, 2kv) K|V of the encoder states from the product
    var encoderKV: Tensor!        // (T, 2kv) after T5Gemma 2's k_norm
    var selfAttention: AttentionRecord!
    var selfOutput: Tensor!       // (B, q)
    var selfBranch: Tensor!       // (B, C) before its output norm
    var crossResidual: Tensor!    // (B, C) t5gemma: the stream entering the cross block
    var crossInput: Tensor!       // (B, C)
    var crossQuery: Tensor!       // (B, q)
    var crossAttention: AttentionRecord!
    var crossOutput: Tensor!      // (B, q)
    var crossBranch: Tensor!      // (B, C)
    var mlpResidual: Tensor!      // (B, C)
    var mlpInput: Tensor!         // (B, C)
    var gateUp: Tensor!           // (B, 2I)
    var gated: Tensor!            // (B, I)
    var mlpBranch: Tensor!        // (B, C)
}

/// One query row per pair against [its own key;] its encoder keys: per (pair, head) the soft-capped scores and the
/// softmax, kept for the backward.
struct AttentionRecord {
    /// Flat per pair, per head, per key; `start[pair]` is the pair's first entry.
    var scores: [Float]
    var probabilities: [Float]
    var start: [Int]
}

/// One T5Gemma decoder layer with f32 master weights, run for one step and trained: the same order as
/// `T5GemmaDecoderLayer` (GemmaModel), plus a backward.
final class TrainableDecoderLayer: @unchecked Sendable {
    let config: GemmaConfig
    let variant: T5GemmaVariant
    let shape: AttentionShape
    let preSelfNorm: Parameter
    /// Q|K|V stacked; T5Gemma 2 projects the encoder states with its K|V rows too.
    let selfQKV: Parameter
    let selfO: Parameter
    let queryNorm: Parameter?
    let keyNorm: Parameter?
    let postSelfNorm: Parameter
    /// t5gemma's cross-attention block.
    let cross: (pre: Parameter, q: Parameter, kv: Parameter, o: Parameter, post: Parameter)?
    let preMLPNorm: Parameter
    let gateUp: Parameter
    let down: Parameter
    let postMLPNorm: Parameter

    init(config t5: T5GemmaConfig, index: Int, weights: T5GemmaStackWeights) throws(FormatError) {
        let c = t5.decoder, h = c.hiddenSize, hd = c.headDim, q = c.numHeads * hd, kv = c.numKVHeads * hd, inter = c.intermediateSize
        let p = "layers.\(index)."
        func norm(_ name: String, _ dimension: Int = h) throws(FormatError) -> Parameter {
            try Parameter.norm(p + name, dimension: dimension, from: weights, label: TrainableT5GemmaDecoder.label)
        }
        func matrix(_ name: String, _ parts: [(String, Int)], columns: Int = h) throws(FormatError) -> Parameter {
            try Parameter.matrix(p + name, parts: parts.map { (p + $0.0, $0.1) }, columns: columns, from: weights,
                                 label: TrainableT5GemmaDecoder.label)
        }
        config = c
        variant = t5.variant
        shape = AttentionShape(numHeads: c.numHeads, numKVHeads: c.numKVHeads, headDim: hd,
                               scale: Float(1 / c.queryPreAttnScalar.squareRoot()), softcap: c.attnLogitSoftcapping.map { Float($0) })
        preSelfNorm = try norm("pre_self_attn_layernorm.weight")
        selfQKV = try matrix("self_attn.qkv", [("self_attn.q_proj.weight", q), ("self_attn.k_proj.weight", kv), ("self_attn.v_proj.weight", kv)])
        selfO = try matrix("self_attn.o_proj.weight", [("self_attn.o_proj.weight", h)], columns: q)
        if c.usesQueryKeyNorm {
            queryNorm = try norm("self_attn.q_norm.weight", hd)
            keyNorm = try norm("self_attn.k_norm.weight", hd)
        } else {
            queryNorm = nil
            keyNorm = nil
        }
        postSelfNorm = try norm("post_self_attn_layernorm.weight")
        if t5.variant == .t5gemma {
            let e = t5.encoder.hiddenSize
            cross = (pre: try norm("pre_cross_attn_layernorm.weight"),
                     q: try matrix("cross_attn.q_proj.weight", [("cross_attn.q_proj.weight", q)]),
                     kv: try matrix("cross_attn.kv", [("cross_attn.k_proj.weight", kv), ("cross_attn.v_proj.weight", kv)], columns: e),
                     o: try matrix("cross_attn.o_proj.weight", [("cross_attn.o_proj.weight", h)], columns: q),
                     post: try norm("post_cross_attn_layernorm.weight"))
        } else {
            cross = nil
        }
        preMLPNorm = try norm("pre_feedforward_layernorm.weight")
        gateUp = try matrix("mlp.gate_up", [("mlp.gate_proj.weight", inter), ("mlp.up_proj.weight", inter)])
        down = try matrix("mlp.down_proj.weight", [("mlp.down_proj.weight", h)], columns: inter)
        postMLPNorm = try norm("post_feedforward_layernorm.weight")
    }

    var parameters: [Parameter] {
        [preSelfNorm, selfQKV, selfO] + [queryNorm, keyNorm].compactMap { $0 } + [postSelfNorm]
            + (cross.map { [$0.pre, $0.q, $0.kv, $0.o, $0.post] } ?? []) + [preMLPNorm, gateUp, down, postMLPNorm]
    }

    var queryWidth: Int { shape.numHeads * shape.headDim }
    var keyValueWidth: Int { shape.numKVHeads * shape.headDim }

    /// The encoder's K|V rows: the cross block's, or T5Gemma 2's self-attention K|V (rows q..<q + 2kv of Q|K|V).
    private var encoderProjection: (weight: UnsafeMutablePointer<Float>, gradient: UnsafeMutablePointer<Float>?, columns: Int) {
        if let cross { return (cross.kv.value.pointer, cross.kv.gradient?.pointer, cross.kv.columns) }
        let offset = queryWidth * selfQKV.columns
        return (selfQKV.value.pointer + offset, selfQKV.gradient.map { $0.pointer + offset }, selfQKV.columns)
    }

    // MARK: Forward

    // x: (B, C), updated in place
    func forward(_ x: UnsafeMutablePointer<Float>, context: DecoderStep, tape: DecoderTape) {
        let b = context.batch.count, t = context.batch.tokens, h = config.hiddenSize, inter = config.intermediateSize
        let qw = queryWidth, kvw = keyValueWidth, width = qw + 2 * kvw, threads = context.threads, eps = config.rmsNormEps
        tape.input = Tensor(copying: x, count: b * h)

        // The encoder's keys and values, as this layer reads them.
        let (weight, _, columns) = encoderProjection
        tape.encoderProjected = Tensor(uninitialized: t * 2 * kvw)
        linear(m: t, n: 2 * kvw, k: columns, a: context.encoder.pointer, lda: columns, w: weight, ldw: columns,
               c: tape.encoderProjected.pointer, ldc: 2 * kvw, threads: threads, precision: context.products)
        tape.encoderKV = Tensor(copying: tape.encoderProjected.pointer, count: t * 2 * kvw)
        if let keyNorm {
            let ks = normScale(keyNorm)
            for r in 0..<t {
                let row = tape.encoderKV.pointer + r * 2 * kvw
                rmsNorm(row, rows: shape.numKVHeads, dim: shape.headDim, scale: ks, eps: eps, out: row)
            }
        }

        // Self-attention (T5Gemma 2: merged with the encoder read).
        tape.selfInput = Tensor(uninitialized: b * h)
        rmsNorm(x, rows: b, dim: h, scale: normScale(preSelfNorm), eps: eps, out: tape.selfInput.pointer)
        tape.projected = Tensor(uninitialized: b * width)
        linear(m: b, n: width, k: h, a: tape.selfInput.pointer, lda: h, w: selfQKV.value.pointer, ldw: h,
               c: tape.projected.pointer, ldc: width, threads: threads, precision: context.products)
        tape.qkv = Tensor(copying: tape.projected.pointer, count: b * width)
        if let queryNorm, let keyNorm {
            let qs = normScale(queryNorm), ks = normScale(keyNorm)
            for r in 0..<b {
                let row = tape.qkv.pointer + r * width
                rmsNorm(row, rows: shape.numHeads, dim: shape.headDim, scale: qs, eps: eps, out: row)
                rmsNorm(row + qw, rows: shape.numKVHeads, dim: shape.headDim, scale: ks, eps: eps, out: row + qw)
            }
        }
        // Position 0: RoPE rotates by angle 0, the identity.
        tape.selfOutput = Tensor(uninitialized: b * qw)
        let merged = cross == nil
        tape.selfAttention = attend(query: tape.qkv.pointer, ldq: width,
                                    own: (tape.qkv.pointer + qw, tape.qkv.pointer + qw + kvw, width),
                                    encoder: merged ? (tape.encoderKV.pointer, tape.encoderKV.pointer + kvw, 2 * kvw) : nil,
                                    batch: context.batch, out: tape.selfOutput.pointer)
        tape.selfBranch = Tensor(uninitialized: b * h)
        linear(m: b, n: h, k: qw, a: tape.selfOutput.pointer, lda: qw, w: selfO.value.pointer, ldw: qw,
               c: tape.selfBranch.pointer, ldc: h, threads: threads, precision: context.products)
        addNormed(tape.selfBranch.pointer, postSelfNorm, into: x, rows: b)

        if let cross {
            tape.crossResidual = Tensor(copying: x, count: b * h)
            tape.crossInput = Tensor(uninitialized: b * h)
            rmsNorm(x, rows: b, dim: h, scale: normScale(cross.pre), eps: eps, out: tape.crossInput.pointer)
            tape.crossQuery = Tensor(uninitialized: b * qw)
            linear(m: b, n: qw, k: h, a: tape.crossInput.pointer, lda: h, w: cross.q.value.pointer, ldw: h,
                   c: tape.crossQuery.pointer, ldc: qw, threads: threads, precision: context.products)
            tape.crossOutput = Tensor(uninitialized: b * qw)
            tape.crossAttention = attend(query: tape.crossQuery.pointer, ldq: qw, own: nil,
                                         encoder: (tape.encoderKV.pointer, tape.encoderKV.pointer + kvw, 2 * kvw),
                                         batch: context.batch, out: tape.crossOutput.pointer)
            tape.crossBranch = Tensor(uninitialized: b * h)
            linear(m: b, n: h, k: qw, a: tape.crossOutput.pointer, lda: qw, w: cross.o.value.pointer, ldw: qw,
                   c: tape.crossBranch.pointer, ldc: h, threads: threads, precision: context.products)
            addNormed(tape.crossBranch.pointer, cross.post, into: x, rows: b)
        }

        // MLP.
        tape.mlpResidual = Tensor(copying: x, count: b * h)
        tape.mlpInput = Tensor(uninitialized: b * h)
        rmsNorm(x, rows: b, dim: h, scale: normScale(preMLPNorm), eps: eps, out: tape.mlpInput.pointer)
        tape.gateUp = Tensor(uninitialized: b * 2 * inter)
        linear(m: b, n: 2 * inter, k: h, a: tape.mlpInput.pointer, lda: h, w: gateUp.value.pointer, ldw: h,
               c: tape.gateUp.pointer, ldc: 2 * inter, threads: threads, precision: context.products)
        tape.gated = Tensor(uninitialized: b * inter)
        for r in 0..<b {
            let gate = tape.gateUp.pointer + r * 2 * inter, dst = tape.gated.pointer + r * inter
            dst.update(from: gate, count: inter)
            switch config.hiddenActivation {
            case .geluTanh: geluTanhGate(dst, gate + inter, count: inter)
            case .gelu: geluErfGate(dst, gate + inter, count: inter)
            }
        }
        tape.mlpBranch = Tensor(uninitialized: b * h)
        linear(m: b, n: h, k: inter, a: tape.gated.pointer, lda: inter, w: down.value.pointer, ldw: inter,
               c: tape.mlpBranch.pointer, ldc: h, threads: threads, precision: context.products)
        addNormed(tape.mlpBranch.pointer, postMLPNorm, into: x, rows: b)
    }

    /// x += norm(branch).
    private func addNormed(_ branch: UnsafePointer<Float>, _ weight: Parameter, into x: UnsafeMutablePointer<Float>, rows: Int) {
        let h = config.hiddenSize
        let normed = Tensor(uninitialized: rows * h)
        rmsNorm(branch, rows: rows, dim: h, scale: normScale(weight), eps: config.rmsNormEps, out: normed.pointer)
        addInPlace(x, normed.pointer, count: rows * h)
    }

    /// Each pair's query row (all heads) against `own` (its own key and value, one row) and `encoder` (its rows of
    /// the encoder's keys and values): one softmax per head over both, scaled, soft-capped where the variant caps.
    private func attend(query: UnsafePointer<Float>, ldq: Int,
                        own: (k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, ld: Int)?,
                        encoder: (k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, ld: Int)?,
                        batch: PackedBatch, out: UnsafeMutablePointer<Float>) -> AttentionRecord {
        let hd = shape.headDim, qw = queryWidth
        var record = AttentionRecord(scores: [], probabilities: [], start: [])
        for pair in 0..<batch.count {
            record.start.append(record.scores.count)
            let keys = keyRows(pair, own: own, encoder: encoder, batch: batch)
            for head in 0..<shape.numHeads {
                let g = shape.group(of: head), q = query + pair * ldq + head * hd
                var scores = keys.map { key in
                    var s: Float = 0
                    for d in 0..<hd { s += q[d] * key.k[g * hd + d] }
                    s *= shape.scale
                    if let cap = shape.softcap { s = tanhf(s / cap) * cap }
                    return s
                }
                record.scores += scores
                _ = scores.withUnsafeMutableBufferPointer { softmaxInPlace($0.baseAddress!, count: $0.count) }
                record.probabilities += scores
                let o = out + pair * qw + head * hd
                for d in 0..<hd { o[d] = 0 }
                for (key, p) in zip(keys, scores) { for d in 0..<hd { o[d] += p * key.v[g * hd + d] } }
            }
        }
        return record
    }

    /// The key and value rows `pair` attends to, in score order: its own, then its encoder rows.
    private typealias Rows = (k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, ld: Int)

    private func keyRows(_ pair: Int, own: Rows?, encoder: Rows?, batch: PackedBatch)
        -> [(k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)] {
        var rows: [(k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)] = []
        if let own { rows.append((own.k + pair * own.ld, own.v + pair * own.ld)) }
        if let encoder {
            for r in batch.offsets[pair]..<batch.offsets[pair + 1] { rows.append((encoder.k + r * encoder.ld, encoder.v + r * encoder.ld)) }
        }
        return rows
    }

    // MARK: Backward

    /// Given dL/d(output) in `dx`, accumulates the trained parameters' gradients and dL/d(encoder states) into
    /// `gradEncoder`, and leaves dL/d(input) in `dx`.
    // dx: (B, C) updated in place; gradEncoder: (T, C) accumulated
    func backward(_ dx: UnsafeMutablePointer<Float>, context: DecoderStep, tape: DecoderTape, gradEncoder: UnsafeMutablePointer<Float>) {
        let b = context.batch.count, t = context.batch.tokens, h = config.hiddenSize, inter = config.intermediateSize
        let qw = queryWidth, kvw = keyValueWidth, width = qw + 2 * kvw, threads = context.threads, eps = config.rmsNormEps
        let products = context.products
        let db = Tensor(uninitialized: b * h)
        // dL/d(the encoder's K|V) from every read of this layer.
        let dEncoderKV = Tensor(count: t * 2 * kvw)

        // MLP.
        db.pointer.update(from: dx, count: b * h)
        rmsNormBackward(tape.mlpBranch.pointer, rows: b, dim: h, scale: normScale(postMLPNorm), eps: eps, gradOut: db.pointer,
                        gradIn: db.pointer, gradScale: postMLPNorm.gradient?.pointer)
        let dGated = Tensor(uninitialized: b * inter)
        linearBackward(down, input: tape.gated.pointer, rows: b, gradOut: db.pointer, gradIn: dGated.pointer, threads: threads,
                       precision: products)
        let dGateUp = Tensor(uninitialized: b * 2 * inter)
        for r in 0..<b {
            let gate = tape.gateUp.pointer + r * 2 * inter, dgate = dGateUp.pointer + r * 2 * inter
            gatedActivationBackward(tanhApproximation: config.hiddenActivation == .geluTanh, gate: gate, up: gate + inter,
                                    gradOut: dGated.pointer + r * inter, gradGate: dgate, gradUp: dgate + inter, count: inter)
        }
        let dInput = Tensor(uninitialized: b * h)
        linearBackward(gateUp, input: tape.mlpInput.pointer, rows: b, gradOut: dGateUp.pointer, gradIn: dInput.pointer,
                       threads: threads, precision: products)
        rmsNormBackward(tape.mlpResidual.pointer, rows: b, dim: h, scale: normScale(preMLPNorm), eps: eps, gradOut: dInput.pointer,
                        gradIn: dx, accumulate: true, gradScale: preMLPNorm.gradient?.pointer)

        // t5gemma's cross block.
        if let cross {
            db.pointer.update(from: dx, count: b * h)
            rmsNormBackward(tape.crossBranch.pointer, rows: b, dim: h, scale: normScale(cross.post), eps: eps, gradOut: db.pointer,
                            gradIn: db.pointer, gradScale: cross.post.gradient?.pointer)
            let dOutput = Tensor(uninitialized: b * qw)
            linearBackward(cross.o, input: tape.crossOutput.pointer, rows: b, gradOut: db.pointer, gradIn: dOutput.pointer,
                           threads: threads, precision: products)
            let dQuery = Tensor(count: b * qw)
            attendBackward(tape.crossAttention, gradOut: dOutput.pointer, query: tape.crossQuery.pointer, ldq: qw, gradQuery: dQuery.pointer,
                           own: nil, encoder: (tape.encoderKV.pointer, tape.encoderKV.pointer + kvw, 2 * kvw),
                           gradEncoder: (dEncoderKV.pointer, dEncoderKV.pointer + kvw), batch: context.batch)
            linearBackward(cross.q, input: tape.crossInput.pointer, rows: b, gradOut: dQuery.pointer, gradIn: dInput.pointer,
                           threads: threads, precision: products)
            rmsNormBackward(tape.crossResidual.pointer, rows: b, dim: h, scale: normScale(cross.pre), eps: eps, gradOut: dInput.pointer,
                            gradIn: dx, accumulate: true, gradScale: cross.pre.gradient?.pointer)
        }

        // Self-attention.
        db.pointer.update(from: dx, count: b * h)
        rmsNormBackward(tape.selfBranch.pointer, rows: b, dim: h, scale: normScale(postSelfNorm), eps: eps, gradOut: db.pointer,
                        gradIn: db.pointer, gradScale: postSelfNorm.gradient?.pointer)
        let dOutput = Tensor(uninitialized: b * qw)
        linearBackward(selfO, input: tape.selfOutput.pointer, rows: b, gradOut: db.pointer, gradIn: dOutput.pointer,
                       threads: threads, precision: products)
        let dQKV = Tensor(count: b * width)
        attendBackward(tape.selfAttention, gradOut: dOutput.pointer, query: tape.qkv.pointer, ldq: width, gradQuery: dQKV.pointer,
                       own: (tape.qkv.pointer + qw, tape.qkv.pointer + qw + kvw, width, dQKV.pointer + qw, dQKV.pointer + qw + kvw),
                       encoder: cross == nil ? (tape.encoderKV.pointer, tape.encoderKV.pointer + kvw, 2 * kvw) : nil,
                       gradEncoder: cross == nil ? (dEncoderKV.pointer, dEncoderKV.pointer + kvw) : nil, batch: context.batch)
        if let queryNorm, let keyNorm {
            let qs = normScale(queryNorm), ks = normScale(keyNorm)
            for r in 0..<b {
                let x = tape.projected.pointer + r * width, g = dQKV.pointer + r * width
                rmsNormBackward(x, rows: shape.numHeads, dim: shape.headDim, scale: qs, eps: eps, gradOut: g, gradIn: g,
                                gradScale: queryNorm.gradient?.pointer)
                rmsNormBackward(x + qw, rows: shape.numKVHeads, dim: shape.headDim, scale: ks, eps: eps, gradOut: g + qw,
                                gradIn: g + qw, gradScale: keyNorm.gradient?.pointer)
            }
        }
        linearBackward(selfQKV, input: tape.selfInput.pointer, rows: b, gradOut: dQKV.pointer, gradIn: dInput.pointer,
                       threads: threads, precision: products)
        rmsNormBackward(tape.input.pointer, rows: b, dim: h, scale: normScale(preSelfNorm), eps: eps, gradOut: dInput.pointer,
                        gradIn: dx, accumulate: true, gradScale: preSelfNorm.gradient?.pointer)

        // The encoder states: through T5Gemma 2's k_norm, then the K|V product.
        if let keyNorm {
            let ks = normScale(keyNorm)
            for r in 0..<t {
                let x = tape.encoderProjected.pointer + r * 2 * kvw, g = dEncoderKV.pointer + r * 2 * kvw
                rmsNormBackward(x, rows: shape.numKVHeads, dim: shape.headDim, scale: ks, eps: eps, gradOut: g, gradIn: g,
                                gradScale: keyNorm.gradient?.pointer)
            }
        }
        let (weight, gradient, columns) = encoderProjection
        linearInputGradient(m: t, n: 2 * kvw, k: columns, gradOut: dEncoderKV.pointer, lddy: 2 * kvw, w: weight, ldw: columns,
                            gradIn: gradEncoder, lddx: columns, accumulate: true, threads: threads, precision: products)
        if let gradient {
            linearWeightGradient(m: t, n: 2 * kvw, k: columns, gradOut: dEncoderKV.pointer, lddy: 2 * kvw, x: context.encoder.pointer,
                                 ldx: columns, gradWeight: gradient, ldw: columns, threads: threads, precision: products)
        }
    }

    /// `attend`'s backward: dq written (added) into `gradQuery`, dk and dv added into the own and encoder gradient rows.
    private func attendBackward(_ record: AttentionRecord, gradOut: UnsafePointer<Float>, query: UnsafePointer<Float>, ldq: Int,
                                gradQuery: UnsafeMutablePointer<Float>,
                                own: (k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, ld: Int,
                                      dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>)?,
                                encoder: (k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, ld: Int)?,
                                gradEncoder: (dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>)?,
                                batch: PackedBatch) {
        let hd = shape.headDim, qw = queryWidth
        for pair in 0..<batch.count {
            let keys = keyRows(pair, own: own.map { (k: $0.k, v: $0.v, ld: $0.ld) }, encoder: encoder, batch: batch)
            let grads = keyRows(pair, own: own.map { (k: $0.dk, v: $0.dv, ld: $0.ld) },
                                encoder: gradEncoder.map { (k: $0.dk, v: $0.dv, ld: encoder!.ld) }, batch: batch)
            let n = keys.count
            for head in 0..<shape.numHeads {
                let g = shape.group(of: head), at = record.start[pair] + head * n
                let q = query + pair * ldq + head * hd, dq = gradQuery + pair * ldq + head * hd
                let dOut = gradOut + pair * qw + head * hd
                // dp_j = dO · v_j; ds_j = p_j (dp_j − Σ p dp), through the soft-cap and the scale.
                let dp = keys.map { key in (0..<hd).reduce(Float(0)) { $0 + dOut[$1] * key.v[g * hd + $1] } }
                var sum: Float = 0
                for j in 0..<n { sum += record.probabilities[at + j] * dp[j] }
                for j in 0..<n {
                    let p = record.probabilities[at + j]
                    var ds = p * (dp[j] - sum)
                    if let cap = shape.softcap {
                        let c = record.scores[at + j] / cap
                        ds *= 1 - c * c
                    }
                    ds *= shape.scale
                    let key = keys[j].k + g * hd, dk = grads[j].k + g * hd, dv = grads[j].v + g * hd
                    for d in 0..<hd {
                        dq[d] += ds * key[d]
                        dk[d] += ds * q[d]
                        dv[d] += p * dOut[d]
                    }
                }
            }
        }
    }
}
