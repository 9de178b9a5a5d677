import CBLAS
import CKernels
import Foundation

/// C (m×n) = alpha · A (m×k, row stride lda) · Wᵀ where W is n×k (row stride ldw) — PyTorch's Linear layout —
/// plus beta · C. All row-major.
@inline(__always)
public func gemmTransposedB(m: Int, n: Int, k: Int, alpha: Float = 1,
                            a: UnsafePointer<Float>, lda: Int,
                            w: UnsafePointer<Float>, ldw: Int,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    sgemm(CblasNoTrans, CblasTrans, m, n, k, alpha, a, lda, w, ldw, beta, c, ldc)
}

/// C (m×n) = A (m×k) · B (k×n), all row-major with the given row strides.
@inline(__always)
public func gemm(m: Int, n: Int, k: Int, alpha: Float = 1,
                 a: UnsafePointer<Float>, lda: Int,
                 b: UnsafePointer<Float>, ldb: Int,
                 beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    sgemm(CblasNoTrans, CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// Rows at or below which a Linear layer skips BLAS: OpenBLAS packs the whole weight matrix on every call,
/// which for a 10-token query costs more than the arithmetic. The skinny kernel streams each weight row once.
public let skinnyGemmMaxRows = 32

/// How the products of two f32 operands are computed: exactly in f32 (BLAS), or with both operands rounded to
/// bf16 and the products summed in f32 — training's products on CPUs with bf16 units (AMX, AVX512-BF16), the
/// master weights, gradients and sums staying f32, as PyTorch's bf16 autocast trains.
public enum ProductPrecision: String, Sendable, Codable, CaseIterable {
    case f32, bf16

    /// bf16 where the CPU has bf16 products (where bf16 weights are packed for them), f32 elsewhere (bf16 by
    /// emulation would only be slower).
    public static var fastest: ProductPrecision { LinearWeight.panels(for: .bf16) == .bf16Panels ? .bf16 : .f32 }
}

/// C (m×n) (+)= op(A) · op(B) in bf16 (ProductPrecision.bf16), row-major: the one call into the bf16 kernel.
@inline(__always)
private func bf16Gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                      b: UnsafePointer<Float>, ldb: Int, accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard m > 0, n > 0 else { return }
    let status = ck_bf16_gemm_f32(transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, a, lda, b, ldb, accumulate ? 1 : 0, c, ldc)
    precondition(status == 0, "out of memory in the bf16 product")
}

/// A Linear layer, C (m×n) = A (m×k) · Wᵀ with W (n×k): BLAS for batches, the skinny kernel for a few rows.
/// With `threads` > 1 the output columns (weight rows) are split into that many ranges computed at once, so
/// each core streams its own part of W; BLAS itself always runs single-threaded (`ComputeThreads`).
/// `precision` .bf16 rounds both operands to bf16 (training's forward on f32 master weights).
public func linear(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, w: UnsafePointer<Float>, ldw: Int,
                   c: UnsafeMutablePointer<Float>, ldc: Int, threads: Int = 1, precision: ProductPrecision = .f32) {
    // The ranges write disjoint columns of c.
    nonisolated(unsafe) let a = a, w = w, c = c
    splitColumns(n: n, parts: threads) { start, count in
        if precision == .bf16 {
            bf16Gemm(transposeA: false, transposeB: true, m: m, n: count, k: k, a: a, lda: lda, b: w + start * ldw, ldb: ldw,
                     accumulate: false, c: c + start, ldc: ldc)
        } else if m <= skinnyGemmMaxRows {
            ck_skinny_gemm_nt(m, count, k, a, lda, w + start * ldw, ldw, c + start, ldc)
        } else {
            gemmTransposedB(m: m, n: count, k: k, a: a, lda: lda, w: w + start * ldw, ldw: ldw, c: c + start, ldc: ldc)
        }
    }
}

/// Runs `body(start, count)` over [0, n) in up to `parts` contiguous ranges at once, each at least `minimum`
/// long: columns of a product, rows of an elementwise pass, elements of an optimizer update.
public func splitColumns(n: Int, parts: Int, minimum: Int = 64, _ body: @Sendable (Int, Int) -> Void) {
    let parts = max(1, min(parts, n / max(minimum, 1)))
    guard parts > 1 else { return body(0, n) }
    let chunk = (n + parts - 1) / parts
    parallelFor(parts) { p in
        let start = p * chunk
        if start < n { body(start, min(chunk, n - start)) }
    }
}

/// y (m) = alpha · A (m×n, row stride lda) · x + beta · y, or Aᵀ · x (y of length n) when `transposed`.
@inline(__always)
public func gemv(transposed: Bool = false, m: Int, n: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                 x: UnsafePointer<Float>, beta: Float = 0, y: UnsafeMutablePointer<Float>) {
    cblas_sgemv(CblasRowMajor, transposed ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), alpha, a, Int32(lda),
                x, 1, beta, y, 1)
}

/// A (m×n, row stride lda) += alpha · x yᵀ: the rank-one update of a weight gradient.
@inline(__always)
public func ger(m: Int, n: Int, alpha: Float = 1, x: UnsafePointer<Float>, y: UnsafePointer<Float>,
                a: UnsafeMutablePointer<Float>, lda: Int) {
    cblas_sger(CblasRowMajor, Int32(m), Int32(n), alpha, x, 1, y, 1, a, Int32(lda))
}

/// C (m×n) = alpha · Aᵀ · B + beta · C with A (k×m) and B (k×n): the weight gradient dYᵀ X of a Linear layer.
@inline(__always)
public func gemmTransposedA(m: Int, n: Int, k: Int, alpha: Float = 1,
                            a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    sgemm(CblasTrans, CblasNoTrans, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// The one call into BLAS's GEMM, row-major; an empty product does nothing.
@inline(__always)
private func sgemm(_ ta: CBLAS_TRANSPOSE, _ tb: CBLAS_TRANSPOSE, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
                   _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float,
                   _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    guard m > 0, n > 0 else { return }
    cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// OpenBLAS's thread count is one setting for the whole process. The encoder parallelizes on its own (batches
/// on separate cores, a lone batch's weight rows and attention heads split across them), so BLAS runs
/// single-threaded: set once, the first time a model is loaded, and never changed per call.
public enum ComputeThreads {
    private static let singleThreadedBLAS: Void = { openblas_set_num_threads(1) }()

    /// Idempotent and thread-safe (Swift runs a static initializer once).
    public static func configure() { _ = singleThreadedBLAS }
}

// MARK: - A Linear layer's backward, y = x Wᵀ with W (n×k)

/// dx (m×k) = dy (m×n) · W (n×k), written or (with `accumulate`) added; the k columns are split across cores.
public func linearInputGradient(m: Int, n: Int, k: Int, gradOut dy: UnsafePointer<Float>, lddy: Int,
                                w: UnsafePointer<Float>, ldw: Int, gradIn dx: UnsafeMutablePointer<Float>, lddx: Int,
                                accumulate: Bool = false, threads: Int = 1, precision: ProductPrecision = .f32) {
    nonisolated(unsafe) let dy = dy, w = w, dx = dx
    splitColumns(n: k, parts: threads) { start, count in
        if precision == .bf16 {
            bf16Gemm(transposeA: false, transposeB: false, m: m, n: count, k: n, a: dy, lda: lddy, b: w + start, ldb: ldw,
                     accumulate: accumulate, c: dx + start, ldc: lddx)
        } else {
            gemm(m: m, n: count, k: n, a: dy, lda: lddy, b: w + start, ldb: ldw, beta: accumulate ? 1 : 0,
                 c: dx + start, ldc: lddx)
        }
    }
}

/// dW (n×k) += dyᵀ (n×m) · x (m×k); the n weight rows are split across cores.
public func linearWeightGradient(m: Int, n: Int, k: Int, gradOut dy: UnsafePointer<Float>, lddy: Int,
                                 x: UnsafePointer<Float>, ldx: Int, gradWeight dw: UnsafeMutablePointer<Float>, ldw: Int,
                                 threads: Int = 1, precision: ProductPrecision = .f32) {
    nonisolated(unsafe) let dy = dy, x = x, dw = dw
    splitColumns(n: n, parts: threads) { start, count in
        if precision == .bf16 {
            bf16Gemm(transposeA: true, transposeB: false, m: count, n: k, k: m, a: dy + start, lda: lddy, b: x, ldb: ldx,
                     accumulate: true, c: dw + start * ldw, ldc: ldw)
        } else {
            gemmTransposedA(m: count, n: k, k: m, a: dy + start, lda: lddy, b: x, ldb: ldx, beta: 1,
                            c: dw + start * ldw, ldc: ldw)
        }
    }
}
