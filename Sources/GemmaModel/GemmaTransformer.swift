import EncoderKernels
import Foundation
import ModelFormats

public enum ModelError: Error, CustomStringConvertible, Equatable {
    case tokenOutOfRange(sequence: Int, position: Int, id: Int32, vocabularySize: Int)
    case paddingNotRight(sequence: Int)
    case shapeMismatch(String)

    public var description: String {
        switch self {
        case let .tokenOutOfRange(s, p, id, v):
            return "sequence \(s), position \(p): token id \(id) is outside the vocabulary (0..<\(v))"
        case let .paddingNotRight(s):
            return "sequence \(s): attention mask must be ones followed by zeros (right padding)"
        case let .shapeMismatch(m):
            return m
        }
    }
}

/// Final hidden states (after the last norm) of a batch, packed without padding: sequence i owns rows
/// offsets[i] ..< offsets[i+1] of a (tokens × hiddenSize) row-major matrix.
public struct HiddenStates: Sendable {
    public let hiddenSize: Int
    public let offsets: [Int]
    public let values: [Float]

    public var count: Int { offsets.count - 1 }
    public func length(_ i: Int) -> Int { offsets[i + 1] - offsets[i] }

    /// Row-major (length × hiddenSize) states of sequence i.
    public func sequence(_ i: Int) -> ArraySlice<Float> {
        values[(offsets[i] * hiddenSize)..<(offsets[i + 1] * hiddenSize)]
    }
}

/// One decoder block's weights. Norm weights are stored as (1 + w), the factor Gemma's RMSNorm applies.
struct GemmaLayer: Sendable {
    let inputNorm: FloatBuffer
    let postAttentionNorm: FloatBuffer
    let preFeedforwardNorm: FloatBuffer?   // Gemma 2, 3
    let postFeedforwardNorm: FloatBuffer?  // Gemma 2, 3
    let qNorm: FloatBuffer?                // Gemma 3
    let kNorm: FloatBuffer?                // Gemma 3
    /// Q | K | V and gate | up, each one product over the same normed input.
    let qkv: StackedLinear
    let o: LinearWeight
    let gateUp: StackedLinear
    let down: LinearWeight
}

/// A Gemma, Gemma 2 or Gemma 3 transformer stack run as an encoder: all tokens of a batch go through
/// each linear layer as one GEMM; attention runs per sequence, so padding never costs work and a token's
/// output does not depend on its batch-mates.
public final class GemmaTransformer: Sendable {
    public let config: GemmaConfig
    /// How the Linear weights are stored (norms and embeddings stay f32).
    public let precision: WeightPrecision
    /// vocabulary × hidden, any format (a GGUF's is quantized): rows are dequantized as tokens look them up.
    let embeddings: LinearWeight
    let layers: [GemmaLayer]
    let finalNorm: FloatBuffer
    let ropeFull: RopeTable
    let ropeSliding: RopeTable

    public init(config: GemmaConfig, weights: some WeightProvider, precision: WeightPrecision = .f32) throws(FormatError) {
        self.config = config
        self.precision = precision
        let h = config.hiddenSize, hd = config.headDim, inter = config.intermediateSize
        let qDim = config.numHeads * hd, kvDim = config.numKVHeads * hd
        func linear(_ name: String, _ shape: [Int]) throws(FormatError) -> LinearWeight {
            try weights.linear(name, shape: shape, precision: precision)
        }
        func norm(_ name: String, _ dim: Int) throws(FormatError) -> FloatBuffer {
            try weights.normScale(name, dimension: dim)
        }
        embeddings = try weights.embedding("embed_tokens.weight", shape: [config.vocabSize, h])
        var layers: [GemmaLayer] = []
        let hasSandwichNorms = config.family != .gemma
        for l in 0..<config.numLayers {
            let p = "layers.\(l)."
            layers.append(GemmaLayer(
                inputNorm: try norm(p + "input_layernorm.weight", h),
                postAttentionNorm: try norm(p + "post_attention_layernorm.weight", h),
                preFeedforwardNorm: hasSandwichNorms ? try norm(p + "pre_feedforward_layernorm.weight", h) : nil,
                postFeedforwardNorm: hasSandwichNorms ? try norm(p + "post_feedforward_layernorm.weight", h) : nil,
                qNorm: config.family == .gemma3 ? try norm(p + "self_attn.q_norm.weight", hd) : nil,
                kNorm: config.family == .gemma3 ? try norm(p + "self_attn.k_norm.weight", hd) : nil,
                qkv: try weights.stackedLinear([(p + "self_attn.q_proj.weight", [qDim, h]),
                                                (p + "self_attn.k_proj.weight", [kvDim, h]),
                                                (p + "self_attn.v_proj.weight", [kvDim, h])], precision: precision),
                o: try linear(p + "self_attn.o_proj.weight", [h, qDim]),
                gateUp: try weights.stackedLinear([(p + "mlp.gate_proj.weight", [inter, h]),
                                                   (p + "mlp.up_proj.weight", [inter, h])], precision: precision),
                down: try linear(p + "mlp.down_proj.weight", [h, inter])))
        }
        self.layers = layers
        finalNorm = try norm("norm.weight", h)
        let positions = min(config.maxPositionEmbeddings, 8192)
        ropeFull = RopeTable(headDim: hd, theta: config.ropeFull.theta,
                             linearFactor: config.ropeFull.linearFactor, positions: positions)
        ropeSliding = RopeTable(headDim: hd, theta: config.ropeSliding.theta,
                                linearFactor: config.ropeSliding.linearFactor, positions: positions)
    }

    /// Bytes of the Linear weights per storage format (quantized GGUF weights stay quantized; embeddings
    /// included under their own format).
    public var weightBytes: [WeightFormat: Int] {
        var bytes: [WeightFormat: Int] = [embeddings.format: embeddings.byteCount]
        for layer in layers {
            for w in layer.qkv.weights + [layer.o] + layer.gateUp.weights + [layer.down] { bytes[w.format, default: 0] += w.byteCount }
        }
        return bytes
    }

    /// Loads a GGUF file: config from its metadata, weights kept in their (quantized) formats.
    public convenience init(gguf: GGUFFile, precision: WeightPrecision = .f32) throws(FormatError) {
        let config = try GemmaConfig(gguf: gguf)
        try self.init(config: config, weights: GGUFWeights(gguf, family: config.family), precision: precision)
    }

    /// Loads `config.json` and the safetensors weights of a Hugging Face model directory.
    public convenience init(directory: URL, precision: WeightPrecision = .f32) throws(FormatError) {
        let config = try GemmaConfig.load(directory.appendingPathComponent("config.json"))
        try self.init(config: config, weights: SafetensorsWeights(url: directory), precision: precision)
    }

    /// Runs a right-padded batch: `attentionMask[i]` is ones for real tokens, then zeros.
    public func forward(inputIds: [[Int32]], attentionMask: [[Int32]], mode: AttentionMode) throws(ModelError) -> HiddenStates {
        var sequences: [[Int32]] = []
        for (s, (ids, mask)) in zip(inputIds, attentionMask).enumerated() {
            let real = mask.prefix { $0 != 0 }.count
            guard mask.count == ids.count, !mask.dropFirst(real).contains(where: { $0 != 0 }) else {
                throw .paddingNotRight(sequence: s)
            }
            sequences.append(Array(ids.prefix(real)))
        }
        return try forward(sequences, mode: mode)
    }

    /// Runs unpadded sequences of token ids; returns the final hidden state of every token.
    public func forward(_ sequences: [[Int32]], mode: AttentionMode) throws(ModelError) -> HiddenStates {
        var offsets = [0]
        for (s, ids) in sequences.enumerated() {
            for (p, id) in ids.enumerated() where id < 0 || Int(id) >= config.vocabSize {
                throw .tokenOutOfRange(sequence: s, position: p, id: id, vocabularySize: config.vocabSize)
            }
            offsets.append(offsets.last! + ids.count)
        }
        let tokens = offsets.last!
        let h = config.hiddenSize
        var out = [Float](repeating: 0, count: tokens * h)
        if tokens > 0 {
            out.withUnsafeMutableBufferPointer { dst in
                run(sequences, offsets: offsets, mode: mode, output: dst.baseAddress!)
            }
        }
        return HiddenStates(hiddenSize: h, offsets: offsets, values: out)
    }

    private func run(_ sequences: [[Int32]], offsets: [Int], mode: AttentionMode, output: UnsafeMutablePointer<Float>) {
        let c = config
        let t = offsets.last!, h = c.hiddenSize, hd = c.headDim, inter = c.intermediateSize
        let qDim = c.numHeads * hd, kvDim = c.numKVHeads * hd, qkvDim = qDim + 2 * kvDim
        let maxLength = zip(offsets.dropFirst(), offsets).map { $0 - $1 }.max() ?? 0
        var ropeFull = self.ropeFull, ropeSliding = self.ropeSliding
        ropeFull.grow(to: maxLength)
        ropeSliding.grow(to: maxLength)

        // Activations, allocated once per call: (T, C) row-major.
        // Q, K, V share rows of qkvDim, gate and up rows of 2·inter, as their stacked products write them.
        let ws = Workspace(sizes: [t * h, t * h, t * h, t * qkvDim, t * qDim, t * 2 * inter, maxLength * maxLength])
        defer { ws.release() }
        let x = ws[0], normed = ws[1], tmp = ws[2], attn = ws[4], gateUp = ws[5], scores = ws[6]
        let q = ws[3], k = ws[3] + qDim, v = ws[3] + qDim + kvDim

        // Embeddings × √hidden, the normalizer rounded to float32 as transformers does.
        let normalizer = Float(Double(h).squareRoot())
        var row = 0
        for ids in sequences {
            for id in ids {
                let dst = x + row * h
                embeddings.dequantize(rows: Int(id)..<(Int(id) + 1), into: dst)
                for i in 0..<h { dst[i] *= normalizer }
                row += 1
            }
        }

        let shape = AttentionShape(numHeads: c.numHeads, numKVHeads: c.numKVHeads, headDim: hd,
                                   scale: Float(1 / c.queryPreAttnScalar.squareRoot()),
                                   softcap: c.attnLogitSoftcapping.map { Float($0) })
        for (l, layer) in layers.enumerated() {
            // Attention block.
            rmsNorm(x, rows: t, dim: h, scale: layer.inputNorm.pointer, eps: c.rmsNormEps, out: normed)
            layer.qkv.apply(m: t, a: normed, lda: h, c: q, ldc: qkvDim)
            if let qn = layer.qNorm, let kn = layer.kNorm {
                for i in 0..<t {
                    rmsNorm(q + i * qkvDim, rows: c.numHeads, dim: hd, scale: qn.pointer, eps: c.rmsNormEps, out: q + i * qkvDim)
                    rmsNorm(k + i * qkvDim, rows: c.numKVHeads, dim: hd, scale: kn.pointer, eps: c.rmsNormEps, out: k + i * qkvDim)
                }
            }
            let rope = c.layerTypes[l] == .sliding ? ropeSliding : ropeFull
            let span = c.attentionSpan(layer: l, mode: mode)
            for s in 0..<sequences.count {
                let start = offsets[s], length = offsets[s + 1] - start
                guard length > 0 else { continue }
                for p in 0..<length {
                    rope.apply(q + (start + p) * qkvDim, heads: c.numHeads, position: p)
                    rope.apply(k + (start + p) * qkvDim, heads: c.numKVHeads, position: p)
                }
                attention(shape: shape, span: span, length: length,
                          q: q + start * qkvDim, ldq: qkvDim, k: k + start * qkvDim, v: v + start * qkvDim, ldkv: qkvDim,
                          out: attn + start * qDim, ldo: qDim, scores: scores)
            }
            linear(m: t, a: attn, lda: qDim, weight: layer.o, c: tmp, ldc: h)
            if let post = layer.preFeedforwardNorm {
                // Gemma 2/3 sandwich: x += norm(attn); mlp input = pre_ff_norm(x).
                rmsNorm(tmp, rows: t, dim: h, scale: layer.postAttentionNorm.pointer, eps: c.rmsNormEps, out: tmp)
                addInPlace(x, tmp, count: t * h)
                rmsNorm(x, rows: t, dim: h, scale: post.pointer, eps: c.rmsNormEps, out: normed)
            } else {
                // Gemma 1: x += attn; mlp input = post_attention_layernorm(x).
                addInPlace(x, tmp, count: t * h)
                rmsNorm(x, rows: t, dim: h, scale: layer.postAttentionNorm.pointer, eps: c.rmsNormEps, out: normed)
            }

            // Gated MLP.
            layer.gateUp.apply(m: t, a: normed, lda: h, c: gateUp, ldc: 2 * inter)
            for i in 0..<t {
                let gate = gateUp + i * 2 * inter, up = gate + inter
                switch c.hiddenActivation {
                case .geluTanh: geluTanhGate(gate, up, count: inter)
                case .gelu: geluErfGate(gate, up, count: inter)
                }
            }
            linear(m: t, a: gateUp, lda: 2 * inter, weight: layer.down, c: tmp, ldc: h)
            if let post = layer.postFeedforwardNorm {
                rmsNorm(tmp, rows: t, dim: h, scale: post.pointer, eps: c.rmsNormEps, out: tmp)
            }
            addInPlace(x, tmp, count: t * h)
        }
        rmsNorm(x, rows: t, dim: h, scale: finalNorm.pointer, eps: c.rmsNormEps, out: output)
    }
}

/// Scratch buffers for one forward call, 64-byte aligned for the BLAS kernels.
final class Workspace {
    private var buffers: [UnsafeMutablePointer<Float>]

    init(sizes: [Int]) {
        buffers = sizes.map { n in
            UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * 4, alignment: 64).bindMemory(to: Float.self, capacity: max(n, 1))
        }
    }

    subscript(i: Int) -> UnsafeMutablePointer<Float> { buffers[i] }

    func release() {
        for b in buffers { b.deallocate() }
        buffers = []
    }
}
