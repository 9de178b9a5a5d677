import CBLAS

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
