import EncoderKernels
import Foundation

/// Best single-precision GEMM rate of the linked BLAS on an n×n×n product on all cores (the method of
/// shared/tools/sgemm_peak.c): the compute ceiling that benchmark figures are reported against. BLAS runs
/// single-threaded under `ComputeThreads`, so the product is split across the cores the way the encoder
/// splits its own products. Benchmark code, so it lives with the `bench` command.
/// With another `format`, the same product on a weight stored in it: the ceiling of that precision's path.
func measureGemmPeak(n: Int = 2048, repeats: Int = 5, format: WeightFormat = .f32,
                            threads: Int = CPUBudget.threads) -> Double {
    ComputeThreads.configure()
    let count = n * n
    let a = UnsafeMutablePointer<Float>.allocate(capacity: count)
    let b = UnsafeMutablePointer<Float>.allocate(capacity: count)
    let c = UnsafeMutablePointer<Float>.allocate(capacity: count)
    defer { a.deallocate(); b.deallocate(); c.deallocate() }
    for i in 0..<count {
        a[i] = Float(i % 7) / 7
        b[i] = Float(i % 5) / 5
    }
    let weight = format == .f32 ? nil : (try? LinearWeight(quantizing: b, rows: n, columns: n, to: format)).map { LinearWeight(copying: $0, packed: true) }
    func product() {
        if let weight { linear(m: n, a: a, lda: n, weight: weight, c: c, ldc: n, threads: threads) }
        else { linear(m: n, n: n, k: n, a: a, lda: n, w: b, ldw: n, c: c, ldc: n, threads: threads) }
    }
    product()  // warm-up
    var best = Double.infinity
    for _ in 0..<repeats {
        let start = DispatchTime.now().uptimeNanoseconds
        product()
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
}
