import CKernels
import EncoderKernels
import XCTest

/// The bf16 products (bf16gemm.c): packed panels hold the weight exactly, and every path the CPU can run
/// computes Σ bf16(a)·w summed in f32, against a double-precision reference on the same rounded values.
final class BF16KernelTests: XCTestCase {
    private func bf16(_ x: Float) -> Float { BF16Testing.bf16(x) }
    private var paths: [UInt32] { BF16Testing.paths }

    private func randomBF16(_ count: Int, using rng: inout SeededGenerator) -> [UInt16] {
        (0..<count).map { _ in ck_float_to_bf16(rng.unit() * 2 - 1) }
    }

    func testPanelsRoundTripEveryShape() {
        var rng = SeededGenerator(seed: 1)
        for (n, k) in [(1, 1), (16, 2), (17, 3), (37, 101), (48, 768)] {
            let rows = randomBF16(n * k, using: &rng)
            var panels = [UInt16](repeating: 0xFFFF, count: ck_bf16_panels_bytes(n, k) / 2)
            ck_bf16_pack(rows, k, n, k, &panels)
            var back = [UInt16](repeating: 0, count: n * k)
            ck_bf16_unpack(panels, n, k, 0, n, &back)
            XCTAssertEqual(back, rows, "\(n)×\(k)")
            // Rows from the middle, and the padding (rows past n, the column past an odd k) is zeros.
            var middle = [UInt16](repeating: 0, count: k)
            ck_bf16_unpack(panels, n, k, n / 2, 1, &middle)
            XCTAssertEqual(middle, Array(rows[(n / 2 * k)..<(n / 2 * k + k)]))
            XCTAssertEqual(panels.filter { $0 == 0xFFFF }.count, 0, "every panel value written")
        }
    }

    func testProductsMatchTheReferenceOnEveryPath() throws {
        var rng = SeededGenerator(seed: 2)
        for (n, k) in [(16, 64), (20, 63), (37, 101), (100, 768)] {
            let w = randomBF16(n * k, using: &rng)
            var panels = [UInt16](repeating: 0, count: ck_bf16_panels_bytes(n, k) / 2)
            ck_bf16_pack(w, k, n, k, &panels)
            for m in [1, 3, 8, 10, 33, 57, 200] {
                let lda = k + 3  // a row stride other than k
                let a = (0..<(m * lda)).map { _ in rng.unit() * 4 - 2 }
                for isa in paths {
                    var c = [Float](repeating: .nan, count: m * (n + 1))
                    XCTAssertEqual(ck_bf16_gemm_isa(isa, m, k, a, lda, panels, n, &c, n + 1), 0)
                    var worst = 0.0
                    for i in 0..<m {
                        for j in 0..<n {
                            var s = 0.0, magnitude = 0.0
                            for p in 0..<k {
                                let t = Double(bf16(a[i * lda + p])) * Double(Float(bitPattern: UInt32(w[j * k + p]) << 16))
                                s += t
                                magnitude += abs(t)
                            }
                            worst = max(worst, abs(Double(c[i * (n + 1) + j]) - s) / max(magnitude, 1e-30))
                        }
                        XCTAssertTrue(c[i * (n + 1) + n].isNaN, "nothing written past the columns asked for")
                    }
                    XCTAssertLessThanOrEqual(worst, 1e-5, "isa \(isa), \(m)×\(n)×\(k)")
                }
            }
        }
    }

    /// A bf16 weight on a CPU with bf16 products is kept as panels only (half the bytes of f32, no row copy),
    /// reads back exactly, and its products — stacked, split across threads — are the rounded-activation ones.
    func testPackedWeightsThroughLinear() throws {
        try XCTSkipUnless(LinearWeight.panels(for: .bf16) == .bf16Panels, "this CPU has no bf16 products (AVX512-BF16)")
        var rng = SeededGenerator(seed: 3)
        let k = 256, parts = [48, 24, 40]
        var values: [[Float]] = []
        var weights: [LinearWeight] = []
        for rows in parts {
            let v = (0..<(rows * k)).map { _ in rng.unit() - 0.5 }
            values.append(v)
            weights.append(try LinearWeight(quantizing: v, rows: rows, columns: k, to: .bf16))
        }
        XCTAssertTrue(weights.allSatisfy { $0.packing == .rows }, "quantizing gives rows; packing is asked for")
        let stacked = try XCTUnwrap(LinearWeight(stacking: weights, packed: true))
        XCTAssertEqual(stacked.packing, .bf16Panels)
        XCTAssertEqual(stacked.byteCount, 112 * k * 2, "panels only: no row copy kept")
        let n = stacked.rows
        XCTAssertEqual(stacked.dequantized(), values.flatMap { $0 }.map(bf16), "panels hold the bf16 values exactly")
        let w = stacked.dequantized()
        for m in [5, 64, 77] {
            let a = (0..<(m * k)).map { _ in rng.unit() * 2 - 1 }
            for threads in [1, 2] {
                var c = [Float](repeating: .nan, count: m * n)
                a.withUnsafeBufferPointer { ab in
                    c.withUnsafeMutableBufferPointer { cb in
                        linear(m: m, a: ab.baseAddress!, lda: k, weight: stacked, c: cb.baseAddress!, ldc: n, threads: threads)
                    }
                }
                var worst = 0.0, worstF32 = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var s = 0.0, f32 = 0.0, magnitude = 0.0
                        for p in 0..<k {
                            s += Double(bf16(a[i * k + p])) * Double(w[j * k + p])
                            f32 += Double(a[i * k + p]) * Double(w[j * k + p])
                            magnitude += abs(Double(a[i * k + p]) * Double(w[j * k + p]))
                        }
                        worst = max(worst, abs(Double(c[i * n + j]) - s) / magnitude)
                        worstF32 = max(worstF32, abs(Double(c[i * n + j]) - f32) / magnitude)
                    }
                }
                XCTAssertLessThanOrEqual(worst, 1e-5, "\(m) rows, \(threads) threads")
                // Against the f32 activations: bf16's 8-bit mantissa, 2^-9 relative per value at most.
                XCTAssertLessThanOrEqual(worstF32, 4e-3, "\(m) rows, \(threads) threads")
            }
        }
    }

    /// Training's products (both operands f32, packed per call): every transpose combination, written or added,
    /// shapes with partial tiles everywhere (k not a multiple of 32, rows and columns past whole tiles), on every
    /// path, against a double reference on the bf16-rounded operands.
    func testTwoOperandProductsOnEveryPath() {
        var rng = SeededGenerator(seed: 4)
        for (m, n, k) in [(1, 1, 1), (5, 7, 3), (33, 40, 100), (70, 17, 64), (128, 96, 257)] {
            for transposeA in [false, true] {
                for transposeB in [false, true] {
                    let lda = (transposeA ? m : k) + 2, ldb = (transposeB ? k : n) + 1, ldc = n + 3
                    let a = (0..<((transposeA ? k : m) * lda)).map { _ in rng.unit() * 2 - 1 }
                    let b = (0..<((transposeB ? n : k) * ldb)).map { _ in rng.unit() * 2 - 1 }
                    let start = (0..<(m * ldc)).map { _ in rng.unit() }
                    for accumulate in [false, true] {
                        for isa in paths {
                            var c = start
                            XCTAssertEqual(ck_bf16_gemm_f32_isa(isa, transposeA ? 1 : 0, transposeB ? 1 : 0, m, n, k, a, lda, b, ldb,
                                                                accumulate ? 1 : 0, &c, ldc), 0)
                            var worst = 0.0
                            for i in 0..<m {
                                for j in 0..<n {
                                    var s = accumulate ? Double(start[i * ldc + j]) : 0, magnitude = abs(s)
                                    for p in 0..<k {
                                        let x = bf16(transposeA ? a[p * lda + i] : a[i * lda + p])
                                        let y = bf16(transposeB ? b[j * ldb + p] : b[p * ldb + j])
                                        s += Double(x) * Double(y)
                                        magnitude += abs(Double(x) * Double(y))
                                    }
                                    worst = max(worst, abs(Double(c[i * ldc + j]) - s) / max(magnitude, 1e-30))
                                }
                                for j in n..<ldc { XCTAssertEqual(c[i * ldc + j], start[i * ldc + j], "nothing written past n") }
                            }
                            XCTAssertLessThanOrEqual(worst, 1e-5, "isa \(isa), \(m)×\(n)×\(k), tA \(transposeA) tB \(transposeB), add \(accumulate)")
                        }
                    }
                }
            }
        }
    }

    /// The gated MLP product (gelu_tanh(gate) · up as the AMX product's epilogue, written in bf16) gives the same
    /// bits as the product followed by the separate activation pass and the rounding the down product applies to
    /// its input, on shapes with partial row tiles and several weight blocks, and writes nothing past its
    /// columns; paths without AMX refuse it (-1) and write nothing.
    func testGatedProductEqualsProductThenActivation() throws {
        var rng = SeededGenerator(seed: 5)
        let amx = BF16Testing.paths.filter { $0 & UInt32(CK_ISA_AMX_BF16) != 0 }
        let untouched: UInt16 = 0x7FC1  // a NaN the product never writes
        for (inter, k) in [(16, 32), (48, 64), (1152, 768)] {
            let w = randomBF16(2 * inter * k, using: &rng)
            var panels = [UInt16](repeating: 0, count: ck_bf16_panels_bytes(2 * inter, k) / 2)
            ck_bf16_pack(w, k, 2 * inter, k, &panels)
            for m in [2, 15, 16, 17, 33, 70] {
                let lda = k + 5, ldc = inter + 3
                let a = (0..<(m * lda)).map { _ in rng.unit() * 4 - 2 }
                for isa in BF16Testing.paths where !amx.contains(isa) {
                    XCTAssertEqual(ck_bf16_gelu_gate_fusable(isa, m, k, inter), 0, "isa \(isa) has no AMX")
                    var c = [UInt16](repeating: untouched, count: m * ldc)
                    XCTAssertEqual(ck_bf16_gelu_gate_gemm_isa(isa, m, k, a, lda, panels, inter / 16, inter, &c, ldc), -1)
                    XCTAssertTrue(c.allSatisfy { $0 == untouched }, "a refused call writes nothing")
                }
                for isa in amx {
                    var separate = [Float](repeating: 0, count: m * 2 * inter)
                    XCTAssertEqual(ck_bf16_gemm_isa(isa, m, k, a, lda, panels, 2 * inter, &separate, 2 * inter), 0)
                    for i in 0..<m {
                        separate.withUnsafeMutableBufferPointer { row in
                            ck_gelu_tanh_gate(row.baseAddress! + i * 2 * inter, row.baseAddress! + i * 2 * inter + inter, inter)
                        }
                    }
                    var fused = [UInt16](repeating: untouched, count: m * ldc)
                    XCTAssertEqual(ck_bf16_gelu_gate_fusable(isa, m, k, inter), 1)
                    XCTAssertEqual(ck_bf16_gelu_gate_gemm_isa(isa, m, k, a, lda, panels, inter / 16, inter, &fused, ldc), 0)
                    for i in 0..<m {
                        XCTAssertEqual(Array(fused[(i * ldc)..<(i * ldc + inter)]),
                                       separate[(i * 2 * inter)..<(i * 2 * inter + inter)].map(ck_float_to_bf16),
                                       "row \(i) of \(m)×\(inter)×\(k)")
                        XCTAssertTrue(fused[(i * ldc + inter)..<(i * ldc + ldc)].allSatisfy { $0 == untouched },
                                      "nothing written past the columns")
                    }
                }
            }
        }
        // Shapes the tiles do not cover are refused, never computed wrongly.
        for isa in amx {
            XCTAssertEqual(ck_bf16_gelu_gate_fusable(isa, 1, 64, 16), 0, "a single row")
            XCTAssertEqual(ck_bf16_gelu_gate_fusable(isa, 8, 48, 16), 0, "k not whole tiles")
            XCTAssertEqual(ck_bf16_gelu_gate_fusable(isa, 8, 64, 24), 0, "columns not whole panels")
        }
    }

    /// A product whose A already is bf16 (the gated MLP's output) gives, on every path, the bits of the product
    /// that rounds the same values from f32; odd widths are refused.
    func testProductOfBF16RowsEqualsProductOfTheirValues() throws {
        var rng = SeededGenerator(seed: 7)
        for (n, k) in [(16, 32), (40, 64), (768, 1152), (24, 6)] {
            let w = randomBF16(n * k, using: &rng)
            var panels = [UInt16](repeating: 0, count: ck_bf16_panels_bytes(n, k) / 2)
            ck_bf16_pack(w, k, n, k, &panels)
            for m in [1, 2, 15, 17, 40] {
                let lda = k + 2, ldc = n + 3, padded = (m + 15) / 16 * 16
                // The rows past m hold garbage: their results must never be stored.
                let rows = (0..<(padded * lda)).map { i in i < m * lda ? ck_float_to_bf16(rng.unit() * 4 - 2) : UInt16(0x7FC0) }
                let values = rows.map { Float(bitPattern: UInt32($0) << 16) }
                for isa in BF16Testing.paths {
                    var expected = [Float](repeating: -1, count: m * ldc), got = expected
                    XCTAssertEqual(ck_bf16_gemm_isa(isa, m, k, values, lda, panels, n, &expected, ldc), 0)
                    XCTAssertEqual(ck_bf16_rows_gemm_isa(isa, m, k, rows, lda, panels, n, &got, ldc), 0)
                    XCTAssertEqual(got.map(\.bitPattern), expected.map(\.bitPattern), "isa \(isa), \(m)×\(n)×\(k)")
                }
            }
        }
        var c = [Float](repeating: 0, count: 16)
        XCTAssertEqual(ck_bf16_rows_gemm_isa(ck_cpu_features(), 2, 31, [UInt16](repeating: 0, count: 64), 32, [], 16, &c, 16), -1, "odd k")
        XCTAssertEqual(ck_bf16_rows_gemm_isa(ck_cpu_features(), 2, 30, [UInt16](repeating: 0, count: 64), 31, [], 16, &c, 16), -1, "odd lda")
    }

    /// Through `StackedLinear` and `linear(m:bf16Rows:…)`: the fused gate|up on 1 and 2 threads equals `apply` plus
    /// `geluTanhGate` rounded to bf16, bit for bit, and the down product on it equals `linear` on the f32 values,
    /// where the CPU has AMX; elsewhere it declines and writes nothing.
    func testStackedGateUpFusesWhereTheCPUAllows() throws {
        var rng = SeededGenerator(seed: 6)
        let k = 256, inter = 192, m = 40, padded = 48
        let parts = try (0..<2).map { _ in
            try LinearWeight(quantizing: (0..<(inter * k)).map { _ in rng.unit() - 0.5 }, rows: inter, columns: k, to: .bf16)
        }
        let packed = LinearWeight.panels(for: .bf16) == .bf16Panels
        let stack = StackedLinear(parts, packed: packed)
        let down = LinearWeight(copying: try LinearWeight(quantizing: (0..<(k * inter)).map { _ in rng.unit() - 0.5 },
                                                          rows: k, columns: inter, to: .bf16), packed: packed)
        XCTAssertEqual(down.acceptsBF16Rows, packed)
        let a = (0..<(m * k)).map { _ in rng.unit() * 2 - 1 }
        var separate = [Float](repeating: 0, count: m * 2 * inter)
        a.withUnsafeBufferPointer { ab in
            separate.withUnsafeMutableBufferPointer { cb in
                stack.apply(m: m, a: ab.baseAddress!, lda: k, c: cb.baseAddress!, ldc: 2 * inter)
                for i in 0..<m { geluTanhGate(cb.baseAddress! + i * 2 * inter, cb.baseAddress! + i * 2 * inter + inter, count: inter) }
            }
        }
        var separateDown = [Float](repeating: 0, count: m * k)
        linear(m: m, a: separate, lda: 2 * inter, weight: down, c: &separateDown, ldc: k)
        let expected = stack.weights.first?.packing == .bf16Panels && ck_bf16_gelu_gate_fusable(ck_cpu_features(), m, k, inter) != 0
        if ck_cpu_features() & UInt32(CK_ISA_AMX_BF16) != 0 { XCTAssertTrue(expected, "a CPU with AMX fuses") }
        let untouched: UInt16 = 0x7FC1
        for threads in [1, 2] {
            var fused = [UInt16](repeating: untouched, count: padded * inter)
            let done = a.withUnsafeBufferPointer { ab in
                fused.withUnsafeMutableBufferPointer { cb in
                    stack.applyGELUGate(m: m, a: ab.baseAddress!, lda: k, c: cb.baseAddress!, ldc: inter, threads: threads)
                }
            }
            XCTAssertEqual(done, expected)
            for i in 0..<m {
                let row = Array(fused[(i * inter)..<(i * inter + inter)])
                if done {
                    XCTAssertEqual(row, separate[(i * 2 * inter)..<(i * 2 * inter + inter)].map(ck_float_to_bf16), "row \(i), \(threads) threads")
                } else {
                    XCTAssertTrue(row.allSatisfy { $0 == untouched }, "declined: nothing written")
                }
            }
            guard done else { continue }
            var fusedDown = [Float](repeating: 0, count: m * k)
            linear(m: m, bf16Rows: fused, lda: inter, weight: down, c: &fusedDown, ldc: k, threads: threads)
            XCTAssertEqual(fusedDown.map(\.bitPattern), separateDown.map(\.bitPattern), "down product, \(threads) threads")
        }
    }

    func testTheCapNeverAddsFeatures() {
        let used = ck_cpu_features(), detected = ck_cpu_features_detected()
        XCTAssertEqual(used & ~detected, 0)
    }
}
