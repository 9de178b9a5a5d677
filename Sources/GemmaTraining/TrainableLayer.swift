import EncoderKernels
import Foundation
import GemmaModel
import ModelFormats

/// What one layer's forward keeps for its backward, row-major over the packed tokens of the batch.
final class LayerTape {
    /// (T, C) the residual stream entering the layer (all an activation checkpoint keeps).
    let input: Tensor
    private(set) var full = false
    // The rest, present after a full forward:
    var attentionInput: Tensor!   // (T, C) normed input of attention
    var projected: Tensor!        // (T, W) Q|K|V from the product (before the Q/K norms; only with them)
    var qkv: Tensor!              // (T, W) Q|K|V as attention reads them (normed, rotated)
    var attentionOutput: Tensor!  // (T, q) before O
    var attentionBranch: Tensor!  // (T, C) O's output before the output norm
    var midResidual: Tensor!      // (T, C)
    var mlpInput: Tensor!         // (T, C)
    var gateUp: Tensor!           // (T, 2I) before the activation
    var gated: Tensor!            // (T, I) act(gate) · up
    var mlpBranch: Tensor!        // (T, C) down's output before the output norm
    var lora: [LoRATarget: Tensor] = [:]   // (T, r) x Aᵀ of each adapter

    init(input: Tensor) { self.input = input }

    func markFull() { full = true }
}

/// Everything one training step shares across layers: the batch, the attention rule, dropout, the cores.
struct StepContext {
    let batch: PackedBatch
    let mode: AttentionMode
    let dropout: EncoderDropout
    /// Per-step seed: the dropout masks of step n are a function of (seed, layer, site, element).
    let seed: UInt64
    let threads: Int
    let rotary: RotaryEmbedding
    /// Whether frozen weights still get their gradient (never, outside parity tests and `all`).
    var training: Bool
    /// The Linear layers' products, forward and backward: f32, or bf16 operands with f32 sums and master weights.
    var products: ProductPrecision = .f32
}

/// One Gemma decoder layer with f32 master weights, run as an encoder layer that can be trained: the same
/// kernels and order as `GemmaModel`'s inference blocks, plus dropout, LoRA and a backward pass.
/// (Sendable: its parameters change only between steps, never while a step reads them from several cores.)
final class TrainableLayer: @unchecked Sendable {
    let index: Int
    let config: GemmaConfig
    let type: LayerType
    let inputNorm: Parameter
    /// Q|K|V stacked: (q + 2kv) × C.
    let qkv: Parameter
    let o: Parameter
    let queryNorm: Parameter?
    let keyNorm: Parameter?
    /// Gemma 2/3's norm of the attention output (post_attention_layernorm).
    let attentionOutputNorm: Parameter?
    /// pre_feedforward_layernorm (Gemma 2/3) or Gemma 1's post_attention_layernorm.
    let mlpInputNorm: Parameter
    /// gate|up stacked: 2I × C.
    let gateUp: Parameter
    let down: Parameter
    let mlpOutputNorm: Parameter?
    private(set) var adapters: [LoRAAdapter] = []
    let shape: AttentionShape

    var queryWidth: Int { config.numHeads * config.headDim }
    var keyValueWidth: Int { config.numKVHeads * config.headDim }
    var stackedWidth: Int { queryWidth + 2 * keyValueWidth }

    init(config c: GemmaConfig, index: Int, weights: any WeightProvider) throws(FormatError) {
        self.index = index
        config = c
        type = c.layerTypes[index]
        let p = "layers.\(index)."
        let h = c.hiddenSize, hd = c.headDim, q = c.numHeads * hd, kv = c.numKVHeads * hd, inter = c.intermediateSize
        func norm(_ name: String, _ dimension: Int) throws(FormatError) -> Parameter {
            try Parameter.norm(p + name, dimension: dimension, from: weights)
        }
        func matrix(_ name: String, _ parts: [(String, Int)], columns: Int) throws(FormatError) -> Parameter {
            try Parameter.matrix(p + name, parts: parts.map { (p + $0.0, $0.1) }, columns: columns, from: weights)
        }
        inputNorm = try norm("input_layernorm.weight", h)
        qkv = try matrix("self_attn.qkv", [("self_attn.q_proj.weight", q), ("self_attn.k_proj.weight", kv),
                                           ("self_attn.v_proj.weight", kv)], columns: h)
        o = try matrix("self_attn.o_proj.weight", [("self_attn.o_proj.weight", h)], columns: q)
        if c.usesQueryKeyNorm {
            queryNorm = try norm("self_attn.q_norm.weight", hd)
            keyNorm = try norm("self_attn.k_norm.weight", hd)
        } else {
            queryNorm = nil
            keyNorm = nil
        }
        if c.usesSandwichNorms {
            attentionOutputNorm = try norm("post_attention_layernorm.weight", h)
            mlpInputNorm = try norm("pre_feedforward_layernorm.weight", h)
            mlpOutputNorm = try norm("post_feedforward_layernorm.weight", h)
        } else {
            attentionOutputNorm = nil
            mlpInputNorm = try norm("post_attention_layernorm.weight", h)
            mlpOutputNorm = nil
        }
        gateUp = try matrix("mlp.gate_up", [("mlp.gate_proj.weight", inter), ("mlp.up_proj.weight", inter)], columns: h)
        down = try matrix("mlp.down_proj.weight", [("mlp.down_proj.weight", h)], columns: inter)
        shape = AttentionShape(numHeads: c.numHeads, numKVHeads: c.numKVHeads, headDim: hd,
                               scale: Float(1 / c.queryPreAttnScalar.squareRoot()),
                               softcap: c.attnLogitSoftcapping.map { Float($0) })
    }

    /// Every parameter of the layer (norms, projections), adapters excluded.
    var baseParameters: [Parameter] {
        [inputNorm, qkv, o] + [queryNorm, keyNorm, attentionOutputNorm].compactMap { $0 }
            + [mlpInputNorm, gateUp, down] + [mlpOutputNorm].compactMap { $0 }
    }

    /// The base parameters and each adapter's A and B.
    var parameters: [Parameter] { baseParameters + adapters.flatMap { [$0.a, $0.b] } }

    /// Adds LoRA adapters on `targets`, drawing their A from `generator`.
    func addAdapters(rank: Int, alpha: Float, targets: [LoRATarget], generator: inout SeededGenerator) {
        let h = config.hiddenSize, inter = config.intermediateSize
        for target in targets {
            let (input, output, offset): (Int, Int, Int) = switch target {
            case .q: (h, queryWidth, 0)
            case .k: (h, keyValueWidth, queryWidth)
            case .v: (h, keyValueWidth, queryWidth + keyValueWidth)
            case .o: (queryWidth, h, 0)
            case .gate: (h, inter, 0)
            case .up: (h, inter, inter)
            case .down: (inter, h, 0)
            }
            adapters.append(LoRAAdapter(target: target, layerName: "layers.\(index)", rank: rank, alpha: alpha,
                                        inputWidth: input, outputWidth: output, columnOffset: offset, generator: &generator))
        }
    }

    private func adapters(on targets: Set<LoRATarget>) -> [LoRAAdapter] { adapters.filter { targets.contains($0.target) } }

    /// Folds every adapter into its projection (then drops them): the merged model a LoRA run exports.
    func mergeAdapters() {
        for adapter in adapters {
            switch adapter.target {
            case .q: adapter.merge(into: qkv, firstRow: 0)
            case .k: adapter.merge(into: qkv, firstRow: queryWidth)
            case .v: adapter.merge(into: qkv, firstRow: queryWidth + keyValueWidth)
            case .o: adapter.merge(into: o, firstRow: 0)
            case .gate: adapter.merge(into: gateUp, firstRow: 0)
            case .up: adapter.merge(into: gateUp, firstRow: config.intermediateSize)
            case .down: adapter.merge(into: down, firstRow: 0)
            }
        }
        adapters = []
    }

    // MARK: Dropout streams

    private enum Site: UInt64 { case attentionWeights = 0, attentionBranch = 1, mlpBranch = 2 }

    private func stream(_ site: Site) -> UInt64 { UInt64(index) << 8 | site.rawValue }

    private func residualDropout(_ context: StepContext, _ site: Site, _ x: UnsafeMutablePointer<Float>) {
        guard context.dropout.residual > 0 else { return }
        DropoutMask(rate: context.dropout.residual, seed: context.seed)
            .apply(x, count: context.batch.tokens * config.hiddenSize, stream: stream(site), first: 0)
    }

    private func attentionDropout(_ context: StepContext, firstRow: Int) -> AttentionDropout? {
        guard context.dropout.attention > 0 else { return nil }
        return AttentionDropout(mask: DropoutMask(rate: context.dropout.attention, seed: context.seed),
                                stream: stream(.attentionWeights), firstRow: firstRow)
    }

    // MARK: Forward

    /// x ← x + norm?(attention(norm(x))); x ← x + norm?(mlp(norm(x))), keeping what the backward reads in `tape`.
    // x: (T, C), updated in place
    func forward(_ x: UnsafeMutablePointer<Float>, context: StepContext, tape: LayerTape) {
        let t = context.batch.tokens, h = config.hiddenSize, inter = config.intermediateSize, width = stackedWidth
        let threads = context.threads
        tape.input.pointer.update(from: x, count: t * h)

        // Attention branch.
        tape.attentionInput = Tensor(uninitialized: t * h)
        norm(x, inputNorm, context, out: tape.attentionInput.pointer)
        let qkvRows = Tensor(uninitialized: t * width)
        linear(m: t, n: width, k: h, a: tape.attentionInput.pointer, lda: h, w: qkv.value.pointer, ldw: h,
               c: qkvRows.pointer, ldc: width, threads: threads, precision: context.products)
        for adapter in adapters(on: [.q, .k, .v]) {
            let u = Tensor(count: t * adapter.rank)
            adapter.forward(tape.attentionInput.pointer, ldx: h, rows: t, y: qkvRows.pointer, ldy: width, u: u.pointer)
            tape.lora[adapter.target] = u
        }
        if queryNorm != nil { tape.projected = Tensor(copying: qkvRows.pointer, count: t * width) }
        let qs = queryNorm.map(normScale) ?? [], ks = keyNorm.map(normScale) ?? []
        qs.withUnsafeBufferPointer { qp in
            ks.withUnsafeBufferPointer { kp in
                context.rotary.table(for: type).normalizeAndRotate(
                    qkvRows.pointer, offsets: context.batch.offsets, stride: width, queryHeads: self.shape.numHeads,
                    keyHeads: self.shape.numKVHeads, keyOffset: queryWidth, queryScale: qs.isEmpty ? nil : qp.baseAddress,
                    keyScale: ks.isEmpty ? nil : kp.baseAddress, eps: config.rmsNormEps, threads: threads)
            }
        }
        let batch = context.batch
        tape.qkv = qkvRows
        tape.attentionOutput = Tensor(uninitialized: t * queryWidth)
        let span = config.attentionSpan(layer: index, mode: context.mode)
        let shape = self.shape, qw = queryWidth, kvw = keyValueWidth
        nonisolated(unsafe) let q = qkvRows.pointer, out = tape.attentionOutput.pointer
        forEachSequence(batch, threads: threads) { s, scratch in
            let start = batch.offsets[s]
            attentionTrainingForward(shape: shape, span: span, length: batch.length(s),
                                     q: q + start * width, ldq: width, k: q + start * width + qw,
                                     v: q + start * width + qw + kvw, ldkv: width,
                                     out: out + start * qw, ldo: qw, scratch: scratch,
                                     dropout: self.attentionDropout(context, firstRow: start))
        }
        tape.attentionBranch = Tensor(uninitialized: t * h)
        linear(m: t, n: h, k: queryWidth, a: tape.attentionOutput.pointer, lda: queryWidth, w: o.value.pointer,
               ldw: queryWidth, c: tape.attentionBranch.pointer, ldc: h, threads: threads, precision: context.products)
        for adapter in adapters(on: [.o]) {
            let u = Tensor(count: t * adapter.rank)
            adapter.forward(tape.attentionOutput.pointer, ldx: queryWidth, rows: t, y: tape.attentionBranch.pointer, ldy: h,
                            u: u.pointer)
            tape.lora[.o] = u
        }
        let branch = Tensor(uninitialized: t * h)
        if let attentionOutputNorm {
            norm(tape.attentionBranch.pointer, attentionOutputNorm, context, out: branch.pointer)
        } else {
            branch.pointer.update(from: tape.attentionBranch.pointer, count: t * h)
        }
        residualDropout(context, .attentionBranch, branch.pointer)
        addInPlace(x, branch.pointer, count: t * h)

        // MLP branch.
        tape.midResidual = Tensor(copying: x, count: t * h)
        tape.mlpInput = Tensor(uninitialized: t * h)
        norm(x, mlpInputNorm, context, out: tape.mlpInput.pointer)
        tape.gateUp = Tensor(uninitialized: t * 2 * inter)
        linear(m: t, n: 2 * inter, k: h, a: tape.mlpInput.pointer, lda: h, w: gateUp.value.pointer, ldw: h,
               c: tape.gateUp.pointer, ldc: 2 * inter, threads: threads, precision: context.products)
        for adapter in adapters(on: [.gate, .up]) {
            let u = Tensor(count: t * adapter.rank)
            adapter.forward(tape.mlpInput.pointer, ldx: h, rows: t, y: tape.gateUp.pointer, ldy: 2 * inter, u: u.pointer)
            tape.lora[adapter.target] = u
        }
        tape.gated = Tensor(uninitialized: t * inter)
        let activation = config.hiddenActivation
        nonisolated(unsafe) let gateUpRows = tape.gateUp.pointer, gatedRows = tape.gated.pointer
        forRows(t, context) { range in
            for i in range {
                let gate = gateUpRows + i * 2 * inter, dst = gatedRows + i * inter
                dst.update(from: gate, count: inter)
                switch activation {
                case .geluTanh: geluTanhGate(dst, gate + inter, count: inter)
                case .gelu: geluErfGate(dst, gate + inter, count: inter)
                }
            }
        }
        tape.mlpBranch = Tensor(uninitialized: t * h)
        linear(m: t, n: h, k: inter, a: tape.gated.pointer, lda: inter, w: down.value.pointer, ldw: inter,
               c: tape.mlpBranch.pointer, ldc: h, threads: threads, precision: context.products)
        for adapter in adapters(on: [.down]) {
            let u = Tensor(count: t * adapter.rank)
            adapter.forward(tape.gated.pointer, ldx: inter, rows: t, y: tape.mlpBranch.pointer, ldy: h, u: u.pointer)
            tape.lora[.down] = u
        }
        if let mlpOutputNorm {
            norm(tape.mlpBranch.pointer, mlpOutputNorm, context, out: branch.pointer)
        } else {
            branch.pointer.update(from: tape.mlpBranch.pointer, count: t * h)
        }
        residualDropout(context, .mlpBranch, branch.pointer)
        addInPlace(x, branch.pointer, count: t * h)
        tape.markFull()
    }

    /// An RMSNorm over the batch's rows with `weight`'s (1 + w), rows split across the cores.
    private func norm(_ x: UnsafePointer<Float>, _ weight: Parameter, _ context: StepContext, out: UnsafeMutablePointer<Float>) {
        let scale = normScale(weight), h = weight.count, eps = config.rmsNormEps
        nonisolated(unsafe) let x = x, out = out
        forRows(context.batch.tokens, context) { range in
            scale.withUnsafeBufferPointer { s in
                rmsNorm(x + range.lowerBound * h, rows: range.count, dim: h, scale: s.baseAddress!, eps: eps,
                        out: out + range.lowerBound * h)
            }
        }
    }

    /// Row-wise work split across the step's cores (rows are independent).
    private func forRows(_ t: Int, _ context: StepContext, _ body: @Sendable (Range<Int>) -> Void) {
        splitColumns(n: t, parts: context.threads, minimum: 16) { start, count in body(start..<(start + count)) }
    }

    // MARK: Backward

    /// Given dL/d(output) in `dx`, accumulates parameter gradients (of trained parameters) and leaves
    /// dL/d(input) in `dx`. Reads only the tape of a full forward.
    // dx: (T, C), updated in place
    func backward(_ dx: UnsafeMutablePointer<Float>, context: StepContext, tape: LayerTape) {
        precondition(tape.full, "the backward reads a full tape: recompute the layer first")
        let t = context.batch.tokens, h = config.hiddenSize, inter = config.intermediateSize, width = stackedWidth
        let threads = context.threads, eps = config.rmsNormEps, count = t * h

        // MLP branch: x_out = x_mid + drop(norm?(down(act(gate) · up))).
        let db = Tensor(copying: dx, count: count)
        residualDropout(context, .mlpBranch, db.pointer)
        if let mlpOutputNorm {
            rmsNormBackward(tape.mlpBranch.pointer, rows: t, dim: h, scale: normScale(mlpOutputNorm), eps: eps,
                            gradOut: db.pointer, gradIn: db.pointer, gradScale: mlpOutputNorm.gradient?.pointer)
        }
        let dGated = Tensor(uninitialized: t * inter)
        linearBackward(down, input: tape.gated.pointer, rows: t, gradOut: db.pointer, gradIn: dGated.pointer, threads: threads,
                       precision: context.products)
        for adapter in adapters(on: [.down]) {
            adapter.backward(tape.gated.pointer, ldx: inter, rows: t, u: tape.lora[.down]!.pointer, gradOut: db.pointer,
                             lddy: h, gradIn: dGated.pointer, lddx: inter)
        }
        let dGateUp = Tensor(uninitialized: t * 2 * inter)
        let tanhApproximation = config.hiddenActivation == .geluTanh
        nonisolated(unsafe) let gateUpRows = tape.gateUp.pointer, dGateUpRows = dGateUp.pointer, dGatedRows = dGated.pointer
        forRows(t, context) { range in
            for i in range {
                let gate = gateUpRows + i * 2 * inter, dgate = dGateUpRows + i * 2 * inter
                gatedActivationBackward(tanhApproximation: tanhApproximation, gate: gate, up: gate + inter,
                                        gradOut: dGatedRows + i * inter, gradGate: dgate, gradUp: dgate + inter, count: inter)
            }
        }
        let dMLPInput = Tensor(uninitialized: count)
        linearBackward(gateUp, input: tape.mlpInput.pointer, rows: t, gradOut: dGateUp.pointer, gradIn: dMLPInput.pointer,
                       threads: threads, precision: context.products)
        for adapter in adapters(on: [.gate, .up]) {
            adapter.backward(tape.mlpInput.pointer, ldx: h, rows: t, u: tape.lora[adapter.target]!.pointer,
                             gradOut: dGateUp.pointer, lddy: 2 * inter, gradIn: dMLPInput.pointer, lddx: h)
        }
        rmsNormBackward(tape.midResidual.pointer, rows: t, dim: h, scale: normScale(mlpInputNorm), eps: eps,
                        gradOut: dMLPInput.pointer, gradIn: dx, accumulate: true, gradScale: mlpInputNorm.gradient?.pointer)

        // Attention branch: x_mid = x_in + drop(norm?(O · attention(rope(qknorm?(QKV · norm(x_in)))))).
        db.pointer.update(from: dx, count: count)
        residualDropout(context, .attentionBranch, db.pointer)
        if let attentionOutputNorm {
            rmsNormBackward(tape.attentionBranch.pointer, rows: t, dim: h, scale: normScale(attentionOutputNorm), eps: eps,
                            gradOut: db.pointer, gradIn: db.pointer, gradScale: attentionOutputNorm.gradient?.pointer)
        }
        let dAttention = Tensor(uninitialized: t * queryWidth)
        linearBackward(o, input: tape.attentionOutput.pointer, rows: t, gradOut: db.pointer, gradIn: dAttention.pointer,
                       threads: threads, precision: context.products)
        for adapter in adapters(on: [.o]) {
            adapter.backward(tape.attentionOutput.pointer, ldx: queryWidth, rows: t, u: tape.lora[.o]!.pointer,
                             gradOut: db.pointer, lddy: h, gradIn: dAttention.pointer, lddx: queryWidth)
        }
        let dQKV = Tensor(count: t * width)
        let batch = context.batch, span = config.attentionSpan(layer: index, mode: context.mode)
        let shape = self.shape, qw = queryWidth, kvw = keyValueWidth
        nonisolated(unsafe) let q = tape.qkv.pointer, dOut = dAttention.pointer, dq = dQKV.pointer
        forEachSequence(batch, threads: threads) { s, scratch in
            let start = batch.offsets[s], row = start * width
            attentionBackward(shape: shape, span: span, length: batch.length(s),
                              q: q + row, ldq: width, k: q + row + qw, v: q + row + qw + kvw, ldkv: width,
                              gradOut: dOut + start * qw, ldo: qw,
                              gradQ: dq + row, gradK: dq + row + qw, gradV: dq + row + qw + kvw,
                              scratch: scratch, dropout: self.attentionDropout(context, firstRow: start))
        }
        let rope = context.rotary.table(for: type)
        for s in 0..<batch.count {
            for p in 0..<batch.length(s) {
                let row = dQKV.pointer + (batch.offsets[s] + p) * width
                rope.applyInverse(row, heads: shape.numHeads, position: p)
                rope.applyInverse(row + queryWidth, heads: shape.numKVHeads, position: p)
            }
        }
        if let queryNorm, let keyNorm {
            let qs = normScale(queryNorm), ks = normScale(keyNorm)
            for i in 0..<t {
                let x = tape.projected.pointer + i * width, g = dQKV.pointer + i * width
                rmsNormBackward(x, rows: shape.numHeads, dim: shape.headDim, scale: qs, eps: eps, gradOut: g, gradIn: g,
                                gradScale: queryNorm.gradient?.pointer)
                rmsNormBackward(x + queryWidth, rows: shape.numKVHeads, dim: shape.headDim, scale: ks, eps: eps,
                                gradOut: g + queryWidth, gradIn: g + queryWidth, gradScale: keyNorm.gradient?.pointer)
            }
        }
        let dInput = Tensor(uninitialized: count)
        linearBackward(qkv, input: tape.attentionInput.pointer, rows: t, gradOut: dQKV.pointer, gradIn: dInput.pointer,
                       threads: threads, precision: context.products)
        for adapter in adapters(on: [.q, .k, .v]) {
            adapter.backward(tape.attentionInput.pointer, ldx: h, rows: t, u: tape.lora[adapter.target]!.pointer,
                             gradOut: dQKV.pointer, lddy: width, gradIn: dInput.pointer, lddx: h)
        }
        rmsNormBackward(tape.input.pointer, rows: t, dim: h, scale: normScale(inputNorm), eps: eps,
                        gradOut: dInput.pointer, gradIn: dx, accumulate: true, gradScale: inputNorm.gradient?.pointer)
    }
}

/// y = x Wᵀ's backward for a weight of `weight`'s shape: dx = dy W (written), dW += dyᵀ x when it trains.
// input: (T, in); dy: (T, out); dx: (T, in)
func linearBackward(_ weight: Parameter, input: UnsafePointer<Float>, rows t: Int, gradOut dy: UnsafePointer<Float>,
                    gradIn dx: UnsafeMutablePointer<Float>, threads: Int, precision: ProductPrecision = .f32) {
    let n = weight.shape[0], k = weight.shape[1]
    linearInputGradient(m: t, n: n, k: k, gradOut: dy, lddy: n, w: weight.value.pointer, ldw: k, gradIn: dx, lddx: k,
                        threads: threads, precision: precision)
    if let gradient = weight.gradient {
        linearWeightGradient(m: t, n: n, k: k, gradOut: dy, lddy: n, x: input, ldx: k, gradWeight: gradient.pointer,
                             ldw: k, threads: threads, precision: precision)
    }
}

/// Runs `body(sequence, scratch)` for every sequence of the batch, spread over `threads` cores with the longest
/// sequences dealt first (attention costs length²), each core with scratch of its own.
func forEachSequence(_ batch: PackedBatch, threads: Int, _ body: @escaping @Sendable (Int, UnsafeMutablePointer<Float>) -> Void) {
    let order = (0..<batch.count).sorted { batch.length($0) > batch.length($1) }
    let scratchCount = attentionTrainingScratch(length: batch.maxLength)
    let workers = max(1, min(threads, batch.count))
    // Greedy: each sequence goes to the core with the least work so far.
    var load = [Int](repeating: 0, count: workers), assigned = [[Int]](repeating: [], count: workers)
    for s in order where batch.length(s) > 0 {
        let w = load.indices.min { load[$0] < load[$1] }!
        assigned[w].append(s)
        load[w] += batch.length(s) * batch.length(s)
    }
    let scratch = Tensor(uninitialized: workers * scratchCount)
    nonisolated(unsafe) let base = scratch.pointer
    let plan = assigned
    parallelFor(workers) { w in
        for s in plan[w] { body(s, base + w * scratchCount) }
    }
    withExtendedLifetime(scratch) {}
}
