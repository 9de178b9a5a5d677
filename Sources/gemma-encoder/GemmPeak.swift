import EncoderKernels
import Foundation

/// Best single-precision GEMM rate of the linked BLAS on an n×n×n product (the method of
/// shared/tools/sgemm_peak.c): the compute ceiling that benchmark figures are reported against. Benchmark
/// code, so it lives with the `bench` command rather than in the kernel library.
func measureGemmPeak(n: Int = 2048, repeats: Int = 5) -> Double {
    let count = n * n
    let a = UnsafeMutablePointer<Float>.allocate(capacity: count)
    let b = UnsafeMutablePointer<Float>.allocate(capacity: count)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { a.deallocate(); b.deallocate(); c.deallocate() }
    for i in 0..<count {
        a[i] = Float(i % 7) / 7
        b[i] = Float(i % 5) / 5
    }
    gemm(m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, c: c, ldc: n)  // warm-up
    var best = Double.infinity
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        gemm(m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, c: c, ldc: n)
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
}
