import EncoderKernels
import Foundation

/// Which projections carry LoRA adapters (PEFT's target_modules names).
public enum LoRATarget: String, Sendable, Codable, CaseIterable {
    case q, k, v, o, gate, up, down

    /// The checkpoint module the adapter sits on ("self_attn.q_proj").
    public var module: String {
        switch self {
        case .q, .k, .v, .o: "self_attn.\(rawValue)_proj"
        case .gate, .up, .down: "mlp.\(rawValue)_proj"
        }
    }
}

/// A low-rank update of one projection (Hu et al., "LoRA"): y += (alpha / r) · x Aᵀ Bᵀ with A (r × in) and
/// B (out × r), B starting at zero so training starts from the pretrained model, as PEFT initializes it.
/// The adapter writes into a column block of its projection's (possibly stacked) output.
public struct LoRAAdapter: Sendable {
    public let target: LoRATarget
    public let a: Parameter
    public let b: Parameter
    public let scaling: Float
    /// First output column of the projection's block inside the stacked product's row.
    let columnOffset: Int

    public var rank: Int { a.shape[0] }
    var inputWidth: Int { a.shape[1] }
    var outputWidth: Int { b.shape[0] }

    /// A from PEFT's default (Kaiming-uniform with a = √5: U(−1/√in, 1/√in)), drawn from `generator`.
    init(target: LoRATarget, layerName: String, rank: Int, alpha: Float, inputWidth: Int, outputWidth: Int,
         columnOffset: Int, generator: inout SeededGenerator) {
        self.target = target
        let bound = 1 / Float(inputWidth).squareRoot()
        let aValues = Tensor(count: rank * inputWidth)
        for i in 0..<aValues.count { aValues.pointer[i] = (2 * generator.unit() - 1) * bound }
        a = Parameter(name: "\(layerName).\(target.module).lora_A.weight", shape: [rank, inputWidth], value: aValues,
                      kind: .adapter)
        b = Parameter(name: "\(layerName).\(target.module).lora_B.weight", shape: [outputWidth, rank],
                      value: Tensor(count: outputWidth * rank), kind: .adapter)
        a.setTrained(true)
        b.setTrained(true)
        scaling = alpha / Float(rank)
        self.columnOffset = columnOffset
    }

    /// u = x Aᵀ (kept for the backward); y[:, block] += s · u Bᵀ.
    // x: (T, in) at stride ldx; y: (T, ·) at stride ldy; u: (T, r)
    func forward(_ x: UnsafePointer<Float>, ldx: Int, rows t: Int, y: UnsafeMutablePointer<Float>, ldy: Int,
                 u: UnsafeMutablePointer<Float>) {
        gemmTransposedB(m: t, n: rank, k: inputWidth, a: x, lda: ldx, w: a.value.pointer, ldw: inputWidth, c: u, ldc: rank)
        gemmTransposedB(m: t, n: outputWidth, k: rank, alpha: scaling, a: u, lda: rank, w: b.value.pointer, ldw: rank,
                        beta: 1, c: y + columnOffset, ldc: ldy)
    }

    /// dB += s · dy_blockᵀ u; du = s · dy_block B; dA += duᵀ x; dx += du A.
    func backward(_ x: UnsafePointer<Float>, ldx: Int, rows t: Int, u: UnsafePointer<Float>,
                  gradOut dy: UnsafePointer<Float>, lddy: Int, gradIn dx: UnsafeMutablePointer<Float>, lddx: Int) {
        let du = Tensor(count: t * rank)
        gemmTransposedA(m: outputWidth, n: rank, k: t, alpha: scaling, a: dy + columnOffset, lda: lddy, b: u, ldb: rank,
                        beta: 1, c: b.gradient!.pointer, ldc: rank)
        gemm(m: t, n: rank, k: outputWidth, alpha: scaling, a: dy + columnOffset, lda: lddy, b: b.value.pointer, ldb: rank,
             c: du.pointer, ldc: rank)
        gemmTransposedA(m: rank, n: inputWidth, k: t, a: du.pointer, lda: rank, b: x, ldb: ldx, beta: 1,
                        c: a.gradient!.pointer, ldc: inputWidth)
        gemm(m: t, n: inputWidth, k: rank, a: du.pointer, lda: rank, b: a.value.pointer, ldb: inputWidth, beta: 1,
             c: dx, ldc: lddx)
    }

    /// W_block += s · B A: the adapter folded into its projection's rows (export of a merged model).
    func merge(into weight: Parameter, firstRow: Int) {
        gemm(m: outputWidth, n: inputWidth, k: rank, alpha: scaling, a: b.value.pointer, lda: rank, b: a.value.pointer,
             ldb: inputWidth, beta: 1, c: weight.value.pointer + firstRow * inputWidth, ldc: inputWidth)
    }
}
