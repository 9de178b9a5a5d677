import CKernels
import EncoderKernels
import XCTest

/// The integer products on Q8_0 weights (q8gemm.c): packed panels hold Q8_0 rows exactly, and every path the CPU
/// can run computes its block products — activations quantized per row and block of 32 to 16 bits (on VNNI as two
/// byte limbs), block sums exact in int32 — against a double-precision reference on the same quantized values.
final class Q8KernelTests: XCTestCase {
    /// The portable path, AVX2's 16-bit products and AVX512-VNNI's, where the CPU has them.
    private var paths: [UInt32] {
        let detected = ck_cpu_features_detected()
        return [0] + (detected & UInt32(CK_ISA_AVX2) != 0 ? [UInt32(CK_ISA_AVX2)] : [])
            + (detected & UInt32(CK_ISA_AVX512_VNNI) != 0 ? [UInt32(CK_ISA_AVX2 | CK_ISA_AVX512 | CK_ISA_AVX512_VNNI)] : [])
    }

    private func q8Rows(_ values: [Float]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: values.count / 32 * 34)
        XCTAssertEqual(ck_quantize(Int32(CK_Q8_0), values, values.count, &bytes), 0)
        return bytes
    }

    /// The activations of every path: per block of 32, q = round(a / d) half away from zero, d = max|a| / 32767, as f32.
    private func quantized16(_ values: [Float]) -> [Float] {
        stride(from: 0, to: values.count, by: 32).flatMap { start -> [Float] in
            let block = values[start..<(start + 32)]
            let d = block.map { abs($0) }.max()! / 32767, inv = d > 0 ? 1 / d : 0
            return block.map { (min(max($0 * inv, -32767), 32767)).rounded() * d }
        }
    }

    private func dequantized(_ bytes: [UInt8], count: Int) -> [Float] {
        var out = [Float](repeating: 0, count: count)
        XCTAssertEqual(ck_dequantize(Int32(CK_Q8_0), bytes, count, &out), 0)
        return out
    }

    func testPanelsRoundTripEveryShape() {
        var rng = SeededGenerator(seed: 4)
        for (n, k) in [(1, 32), (16, 64), (17, 96), (37, 768)] {
            let rows = q8Rows((0..<(n * k)).map { _ in rng.unit() * 2 - 1 })
            var panels = [UInt8](repeating: 0, count: ck_q8_panels_bytes(n, k))
            XCTAssertEqual(ck_q8_pack(rows, k / 32 * 34, n, k, &panels), 0)
            var back = [UInt8](repeating: 0, count: rows.count)
            XCTAssertEqual(ck_q8_unpack(panels, n, k, 0, n, &back), 0)
            XCTAssertEqual(back, rows, "\(n)×\(k)")
        }
        var panels = [UInt8](repeating: 0, count: 64)
        XCTAssertEqual(ck_q8_pack([UInt8](repeating: 0, count: 40), 40, 1, 40, &panels), -1, "k must be whole blocks")
    }

    func testProductsMatchTheReferenceOnEveryPath() {
        var rng = SeededGenerator(seed: 5)
        for (n, k) in [(16, 64), (37, 96), (100, 768)] {
            let wRows = q8Rows((0..<(n * k)).map { _ in rng.unit() - 0.5 })
            let w = dequantized(wRows, count: n * k)
            var panels = [UInt8](repeating: 0, count: ck_q8_panels_bytes(n, k))
            XCTAssertEqual(ck_q8_pack(wRows, k / 32 * 34, n, k, &panels), 0)
            for m in [1, 3, 4, 10, 33, 150] {
                let lda = k + 5
                let a = (0..<(m * lda)).map { _ in rng.normal() }
                // The reference: each row of A quantized to 16 bits, then a dot product in double.
                var qa: [Float] = []
                for i in 0..<m { qa += quantized16(Array(a[(i * lda)..<(i * lda + k)])) }
                for isa in paths {
                    var c = [Float](repeating: .nan, count: m * (n + 1))
                    XCTAssertEqual(ck_q8_gemm_isa(isa, m, k, a, lda, panels, n, &c, n + 1), 0)
                    var worst = 0.0, worstF32 = 0.0
                    for i in 0..<m {
                        for j in 0..<n {
                            var s = 0.0, f32 = 0.0, magnitude = 0.0
                            for p in 0..<k {
                                s += Double(qa[i * k + p]) * Double(w[j * k + p])
                                f32 += Double(a[i * lda + p]) * Double(w[j * k + p])
                                magnitude += abs(Double(a[i * lda + p]) * Double(w[j * k + p]))
                            }
                            worst = max(worst, abs(Double(c[i * (n + 1) + j]) - s) / magnitude)
                            worstF32 = max(worstF32, abs(Double(c[i * (n + 1) + j]) - f32) / magnitude)
                        }
                        XCTAssertTrue(c[i * (n + 1) + n].isNaN, "nothing written past the columns asked for")
                    }
                    XCTAssertLessThanOrEqual(worst, 1e-5, "isa \(isa), \(m)×\(n)×\(k)")
                    // Against f32 activations: the rounding of A, at most half a step of max|a| / 32767 per value (8-bit
                    // activations, as llama.cpp's Q8_0 products, would be up to 1e-2 off).
                    XCTAssertLessThanOrEqual(worstF32, 1e-4, "isa \(isa), \(m)×\(n)×\(k)")
                }
            }
        }
    }

    /// Q8_0 weights asked to be packed on a CPU with integer products (AVX2 or VNNI) are kept only as panels,
    /// read back exactly, and their products (stacked, split across threads) are the quantized-activation ones.
    func testPackedWeightsThroughLinear() throws {
        try XCTSkipUnless(LinearWeight.panels(for: .q8_0) == .q8Panels, "this CPU has no integer products for Q8_0 (AVX2 or AVX512-VNNI)")
        var rng = SeededGenerator(seed: 6)
        let k = 256, parts = [48, 32, 20]
        let weights = try parts.map { rows in
            try LinearWeight(quantizing: (0..<(rows * k)).map { _ in rng.unit() - 0.5 }, rows: rows, columns: k, to: .q8_0)
        }
        let plain = try XCTUnwrap(LinearWeight(stacking: weights))
        let stacked = try XCTUnwrap(LinearWeight(stacking: weights, packed: true))
        XCTAssertEqual(stacked.packing, .q8Panels)
        XCTAssertEqual(stacked.dequantized(), plain.dequantized(), "panels hold the Q8_0 values exactly")
        var some = [Float](repeating: .nan, count: 49 * k)
        some.withUnsafeMutableBufferPointer { stacked.dequantize(rows: 21..<70, into: $0.baseAddress!) }
        XCTAssertEqual(some, Array(plain.dequantized()[(21 * k)..<(70 * k)]), "any rows of them")
        let n = stacked.rows, w = plain.dequantized()
        let vnni = ck_cpu_features() & UInt32(CK_ISA_AVX512_VNNI) != 0
        // 9 rows: the CPU's integer products. 40 rows: the same on VNNI; on AVX2 the dequantized weights times f32 A
        // (BLAS), since its 16-bit products beat f32 only on few rows.
        for m in [9, 40] {
            let a = (0..<(m * k)).map { _ in rng.normal() }
            var reference = [Float](repeating: .nan, count: m * n)
            if m <= skinnyGemmMaxRows || vnni {
                a.withUnsafeBufferPointer { ab in
                    XCTAssertEqual(ck_q8_gemm(m, k, ab.baseAddress!, k, stacked.bytes.assumingMemoryBound(to: UInt8.self), n, &reference, n), 0)
                }
            } else {
                for i in 0..<m {
                    for j in 0..<n { reference[i * n + j] = Float((0..<k).reduce(0.0) { $0 + Double(a[i * k + $1]) * Double(w[j * k + $1]) }) }
                }
            }
            for threads in [1, 2] {
                var packed = [Float](repeating: .nan, count: m * n)
                a.withUnsafeBufferPointer { ab in
                    packed.withUnsafeMutableBufferPointer { cb in
                        linear(m: m, a: ab.baseAddress!, lda: k, weight: stacked, c: cb.baseAddress!, ldc: n, threads: threads)
                    }
                }
                for (x, y) in zip(packed, reference) { XCTAssertEqual(x, y, accuracy: 1e-4 * max(1, abs(y)), "\(m) rows, \(threads) threads") }
            }
        }
    }
}
