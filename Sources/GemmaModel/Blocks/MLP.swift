import EncoderKernels
import ModelFormats

/// Gemma's gated MLP: down(act(gate(x)) · up(x)), gate|up in one product.
struct GatedMLP: Sendable {
    let gateUp: StackedLinear
    let down: LinearWeight
    let activation: Activation
    let intermediateSize: Int

    init(config c: GemmaConfig, weights: WeightScope, precision: WeightPrecision) throws(FormatError) {
        let h = c.hiddenSize, inter = c.intermediateSize
        gateUp = try weights.stackedLinear([("gate_proj.weight", [inter, h]), ("up_proj.weight", [inter, h])], precision: precision)
        down = try weights.linear("down_proj.weight", shape: [h, inter], precision: precision)
        activation = c.hiddenActivation
        intermediateSize = inter
    }

    // normed: (T, C); out: (T, C); buffers.gateUp: (T, 2I), the gated product left in its first I columns — or, where
    // the gate|up product is fused with the activation, buffers.gatedBF16 (T, I) in bf16
    func forward(_ normed: UnsafePointer<Float>, rows t: Int, hiddenSize h: Int, buffers: ForwardBuffers,
                 out: UnsafeMutablePointer<Float>) {
        let inter = intermediateSize, gateUpRows = buffers.gateUp
        // Fused where the CPU allows (bf16 panels on AMX): the activation is then the product's epilogue, the gate
        // and up values never reach memory, and the gated values are written once, in bf16, as the down product's
        // input (which rounds its input to bf16 in any case: the same bits as the unfused path).
        if activation == .geluTanh, down.acceptsBF16Rows {
            var fused = false
            buffers.timer.time(.gateUp) {
                fused = gateUp.applyGELUGate(m: t, a: normed, lda: h, c: buffers.gatedBF16, ldc: inter, threads: buffers.threads)
            }
            if fused {
                buffers.timer.time(.down) {
                    linear(m: t, bf16Rows: buffers.gatedBF16, lda: inter, weight: down, c: out, ldc: h, threads: buffers.threads)
                }
                return
            }
        }
        buffers.timer.time(.gateUp) { gateUp.apply(m: t, a: normed, lda: h, c: gateUpRows, ldc: 2 * inter, threads: buffers.threads) }
        buffers.timer.time(.activation) {
            for i in 0..<t {
                let gate = gateUpRows + i * 2 * inter, up = gate + inter
                switch activation {
                case .geluTanh: geluTanhGate(gate, up, count: inter)
                case .gelu: geluErfGate(gate, up, count: inter)
                }
            }
        }
        buffers.timer.time(.down) { linear(m: t, a: gateUpRows, lda: 2 * inter, weight: down, c: out, ldc: h, threads: buffers.threads) }
    }

    var weights: [LinearWeight] { gateUp.weights + [down] }
}
