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
    guard m > 0, n > 0 else { return }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(m), Int32(n), Int32(k),
                alpha, a, Int32(lda), w, Int32(ldw), beta, c, Int32(ldc))
}

/// C (m×n) = A (m×k) · B (k×n), all row-major with the given row strides.
@inline(__always)
public func gemm(m: Int, n: Int, k: Int, alpha: Float = 1,
                 a: UnsafePointer<Float>, lda: Int,
                 b: UnsafePointer<Float>, ldb: Int,
                 beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard m > 0, n > 0 else { return }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(m), Int32(n), Int32(k),
                alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Threads OpenBLAS may use for one GEMM.
public enum BLASThreads {
    public static var count: Int { Int(openblas_get_num_threads()) }
    public static func set(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}

/// Rows at or below which a Linear layer skips BLAS: OpenBLAS packs the whole weight matrix on every call,
/// which for a 10-token query costs more than the arithmetic. The skinny kernel streams each weight row once.
public let skinnyGemmMaxRows = 32

/// A Linear layer, C (m×n) = A (m×k) · Wᵀ with W (n×k): BLAS for batches, the skinny kernel for a few rows
/// (split over the BLAS thread count, so it never oversubscribes the cores that BLAS would use).
public func linear(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, w: UnsafePointer<Float>, ldw: Int,
                   c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard m > skinnyGemmMaxRows else {
        // The threads write disjoint column ranges of c.
        nonisolated(unsafe) let a = a, w = w, c = c
        return splitColumns(n: n) { start, count in
            ck_skinny_gemm_nt(m, count, k, a, lda, w + start * ldw, ldw, c + start, ldc)
        }
    }
    gemmTransposedB(m: m, n: n, k: k, a: a, lda: lda, w: w, ldw: ldw, c: c, ldc: ldc)
}

/// Runs `body` over [0, n) in as many contiguous column ranges as BLAS has threads.
func splitColumns(n: Int, _ body: @Sendable (Int, Int) -> Void) {
    let parts = max(1, min(BLASThreads.count, n / 64))
    guard parts > 1 else { return body(0, n) }
    let chunk = (n + parts - 1) / parts
    DispatchQueue.concurrentPerform(iterations: parts) { p in
        let start = p * chunk
        if start < n { body(start, min(chunk, n - start)) }
    }
}
