import CKernels
import EncoderKernels
import Foundation
import XCTest

/// Every weight format against blocks worked out by hand: the expected values below come from reading the
/// format's layout (ggml-common.h), not from running our own dequantizer.
final class WeightFormatTests: XCTestCase {
    func dequantize(_ format: WeightFormat, _ bytes: [UInt8], count: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: count)
        let status = bytes.withUnsafeBytes { raw in
            out.withUnsafeMutableBufferPointer { ck_dequantize(format.rawValue, raw.baseAddress!, count, $0.baseAddress!) }
        }
        XCTAssertEqual(status, 0)
        return out
    }

    func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }

    func testBlockSizes() {
        let expected: [WeightFormat: (Int, Int)] = [
            .f32: (1, 4), .f16: (1, 2), .bf16: (1, 2), .q4_0: (32, 18), .q4_1: (32, 20), .q5_0: (32, 22),
            .q5_1: (32, 24), .q8_0: (32, 34), .q4_K: (256, 144), .q5_K: (256, 176), .q6_K: (256, 210), .q8_K: (256, 292),
        ]
        for format in WeightFormat.allCases {
            XCTAssertEqual(format.blockSize, expected[format]!.0, "\(format)")
            XCTAssertEqual(format.blockBytes, expected[format]!.1, "\(format)")
        }
        XCTAssertEqual(WeightFormat.q4_K.rowBytes(columns: 512), 288)
        XCTAssertNil(WeightFormat.q4_K.rowBytes(columns: 640))
        var out: Float = 0
        XCTAssertEqual(ck_dequantize(99, [UInt8](repeating: 0, count: 4), 1, &out), -1)
    }

    func testHalfAndBFloat16() {
        let halves: [(UInt16, Float)] = [(0x3C00, 1), (0xC000, -2), (0x7BFF, 65504), (0x0001, 0x1p-24), (0x0400, 0x1p-14),
                                        (0x03FF, 1023 * 0x1p-24), (0x7C00, .infinity), (0x8000, -0.0), (0x3555, 0.333251953125)]
        for (bits, value) in halves {
            XCTAssertEqual(dequantize(.f16, le16(bits), count: 1)[0], value, "0x\(String(bits, radix: 16))")
            XCTAssertEqual(ck_float_to_half(value), bits, "\(value)")
        }
        XCTAssertTrue(dequantize(.f16, le16(0x7E00), count: 1)[0].isNaN)
        // Ties round to even; 65520 is the first value that rounds to infinity.
        XCTAssertEqual(ck_float_to_half(1 + 0x1p-11), 0x3C00)
        XCTAssertEqual(ck_float_to_half(1 + 3 * 0x1p-11), 0x3C02)
        XCTAssertEqual(ck_float_to_half(65519), 0x7BFF)
        XCTAssertEqual(ck_float_to_half(65520), 0x7C00)
        XCTAssertEqual(ck_float_to_half(0x1p-25), 0x0000)
        XCTAssertEqual(ck_float_to_half(3 * 0x1p-25), 0x0002)

        let bf: [(UInt16, Float)] = [(0x3F80, 1), (0xC040, -3), (0x4049, 3.140625), (0x0001, Float(bitPattern: 0x0001_0000))]
        for (bits, value) in bf {
            XCTAssertEqual(dequantize(.bf16, le16(bits), count: 1)[0], value)
            XCTAssertEqual(ck_float_to_bf16(value), bits)
        }
        XCTAssertEqual(ck_float_to_bf16(1 + 0x1p-8), 0x3F80)          // tie → even
        XCTAssertEqual(ck_float_to_bf16(1 + 3 * 0x1p-8), 0x3F82)      // tie → even (up)
        XCTAssertEqual(ck_float_to_bf16(1 + 0x1p-8 + 0x1p-20), 0x3F81) // above the tie
        XCTAssertEqual(ck_float_to_bf16(.pi), 0x4049)
    }

    func testQ4_0AndQ4_1() {
        // Byte j holds element j in its low nibble and element j + 16 in its high nibble: j and 15 − j here.
        let nibbles = (0..<16).map { UInt8($0) | UInt8(15 - $0) << 4 }
        let q40 = dequantize(.q4_0, le16(0x3800) + nibbles, count: 32)          // d = 0.5, value = (q − 8)·d
        for j in 0..<16 {
            XCTAssertEqual(q40[j], Float(j - 8) * 0.5)
            XCTAssertEqual(q40[j + 16], Float(7 - j) * 0.5)
        }
        let q41 = dequantize(.q4_1, le16(0x3800) + le16(0xBC00) + nibbles, count: 32)  // d = 0.5, m = −1: q·d + m
        for j in 0..<16 {
            XCTAssertEqual(q41[j], Float(j) * 0.5 - 1)
            XCTAssertEqual(q41[j + 16], Float(15 - j) * 0.5 - 1)
        }
    }

    func testQ5_0AndQ5_1() {
        let nibbles = (0..<16).map { UInt8($0) | UInt8(15 - $0) << 4 }
        // qh bit i is the fifth bit of element i. Q5_0: 0x0000FFFF sets it for elements 0–15; value = (q − 16)·d.
        let q50 = dequantize(.q5_0, le16(0x3C00) + [0xFF, 0xFF, 0x00, 0x00] + nibbles, count: 32)
        for j in 0..<16 {
            XCTAssertEqual(q50[j], Float(j + 16 - 16))
            XCTAssertEqual(q50[j + 16], Float(15 - j - 16))
        }
        // Q5_1: d = 1, m = 0.5, qh = 0xFFFF0000 (elements 16–31); value = q·d + m.
        let q51 = dequantize(.q5_1, le16(0x3C00) + le16(0x3800) + [0x00, 0x00, 0xFF, 0xFF] + nibbles, count: 32)
        for j in 0..<16 {
            XCTAssertEqual(q51[j], Float(j) + 0.5)
            XCTAssertEqual(q51[j + 16], Float(15 - j + 16) + 0.5)
        }
    }

    func testQ8_0AndQ8_K() {
        let q80 = dequantize(.q8_0, le16(0x3400) + (0..<32).map { UInt8(bitPattern: Int8($0 - 16)) }, count: 32)
        for j in 0..<32 { XCTAssertEqual(q80[j], Float(j - 16) * 0.25) }
        // Q8_K: an f32 scale, 256 int8 values, then 16 int16 block sums the dequantizer does not read.
        let d = withUnsafeBytes(of: Float(0.125).bitPattern.littleEndian) { Array($0) }
        let q8k = dequantize(.q8_K, d + (0..<256).map { UInt8($0) } + [UInt8](repeating: 0xEE, count: 32), count: 256)
        for j in 0..<256 { XCTAssertEqual(q8k[j], Float(Int8(bitPattern: UInt8(j))) * 0.125) }
    }

    /// Eight 6-bit scales and mins in 12 bytes, as worked out by hand: sub-blocks 0–3 read bytes 0–7 directly;
    /// sub-blocks 4–7 take their low 4 bits from bytes 8–11 and their high 2 bits from the top of bytes 0–7.
    let kScales: [UInt8] = [1 | 1 << 6, 2, 3, 4, 2 | 2 << 6, 0, 1, 3, 0x15, 0x00, 0x27, 0xF1]
    let kScale: [Float] = [1, 2, 3, 4, 21, 0, 7, 1]         // 21 = 5 | 1 << 4
    let kMin: [Float] = [2, 0, 1, 3, 33, 0, 2, 15]          // 33 = 1 | 2 << 4

    func testQ4_K() {
        // d = 1, dmin = 0.5; every quant byte 0x53: low nibble 3 (even sub-blocks), high nibble 5 (odd ones).
        let block = le16(0x3C00) + le16(0x3800) + kScales + [UInt8](repeating: 0x53, count: 128)
        let y = dequantize(.q4_K, block, count: 256)
        for e in 0..<256 {
            let s = e / 32, q: Float = s % 2 == 0 ? 3 : 5
            XCTAssertEqual(y[e], 1 * kScale[s] * q - 0.5 * kMin[s], "element \(e)")
        }
    }

    func testQ5_K() {
        // As Q4_K, plus qh: bit s of byte l is the fifth bit of element l of sub-block s; 0x0F sets it for 0–3.
        let block = le16(0x3C00) + le16(0x3800) + kScales + [UInt8](repeating: 0x0F, count: 32)
            + [UInt8](repeating: 0x53, count: 128)
        let y = dequantize(.q5_K, block, count: 256)
        for e in 0..<256 {
            let s = e / 32, q: Float = (s % 2 == 0 ? 3 : 5) + (s < 4 ? 16 : 0)
            XCTAssertEqual(y[e], 1 * kScale[s] * q - 0.5 * kMin[s], "element \(e)")
        }
    }

    func testQ6_K() {
        // Each half of 128 values: quarter t of it takes low bits from ql (nibble 0 for t = 0, 1; nibble 1 for
        // t = 2, 3), high bits from bits 2t, 2t+1 of qh, and scale 8·half + l/16 + 2t. With ql = 0x21 and
        // qh = 0b11100100 the quants are (1|0<<4) − 32, (1|1<<4) − 32, (2|2<<4) − 32, (2|3<<4) − 32.
        let scales = (0..<16).map { UInt8(bitPattern: Int8($0 - 8)) }
        let block = [UInt8](repeating: 0x21, count: 128) + [UInt8](repeating: 0b1110_0100, count: 64) + scales + le16(0x3800)
        let y = dequantize(.q6_K, block, count: 256)
        let quants: [Float] = [-31, -15, 2, 18]
        for e in 0..<256 {
            let half = e / 128, t = (e % 128) / 32, l = e % 32
            let scale = Float(8 * half + l / 16 + 2 * t - 8)
            XCTAssertEqual(y[e], 0.5 * scale * quants[t], "element \(e)")
        }
    }

    func testQ8_0QuantizationFollowsGGML() {
        // max |x| = 16 → d = 16/127 (stored as f16), q = round(x · 127/16), halves away from zero.
        let x = (0..<32).map { Float($0 - 16) }
        var block = [UInt8](repeating: 0, count: 34)
        XCTAssertEqual(block.withUnsafeMutableBytes { ck_quantize(WeightFormat.q8_0.rawValue, x, 32, $0.baseAddress!) }, 0)
        XCTAssertEqual(UInt16(block[0]) | UInt16(block[1]) << 8, ck_float_to_half(16 / 127))
        let q = block[2...].map { Int8(bitPattern: $0) }
        XCTAssertEqual(q[0], -127)                                   // −16
        XCTAssertEqual(q[16], 0)
        XCTAssertEqual(q[17], 8)                                     // 7.9375 → 8
        XCTAssertEqual(q[31], 119)                                   // 15 · 7.9375 = 119.06
        XCTAssertEqual(ck_quantize(WeightFormat.q4_K.rawValue, x, 32, &block), -1)
    }

    /// A weight of every format through both product paths (skinny for few rows, dequantized BLAS blocks for
    /// many) against a double-precision product with the dequantized matrix. k = 2,304 crosses the skinny
    /// kernel's 2,048-column chunks; n = 30 leaves a partial tile.
    func testLinearEveryFormatBothPaths() throws {
        let n = 30, k = 2304
        var rng = SystemRandomNumberGenerator()
        for format in WeightFormat.allCases {
            let rowBytes = try XCTUnwrap(format.rowBytes(columns: k))
            var bytes = (0..<(n * rowBytes)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            sanitizeScales(&bytes, format: format, rowBytes: rowBytes)
            let weight = try bytes.withUnsafeBytes { raw -> LinearWeight in
                let copy = UnsafeMutableRawPointer.allocate(byteCount: raw.count, alignment: 64)
                copy.copyMemory(from: raw.baseAddress!, byteCount: raw.count)
                let owner = Allocation(copy)
                return try LinearWeight(format: format, rows: n, columns: k, borrowing: copy, owner: owner)
            }
            let w = weight.dequantized()
            XCTAssertTrue(w.allSatisfy(\.isFinite), "\(format)")
            for m in [3, 40] {
                let a = (0..<(m * k)).map { _ in Float.random(in: -1...1, using: &rng) }
                var c = [Float](repeating: .nan, count: m * n)
                a.withUnsafeBufferPointer { ab in
                    c.withUnsafeMutableBufferPointer { cb in
                        linear(m: m, a: ab.baseAddress!, lda: k, weight: weight, c: cb.baseAddress!, ldc: n)
                    }
                }
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var s = 0.0, magnitude = 0.0
                        for p in 0..<k {
                            let t = Double(a[i * k + p]) * Double(w[j * k + p])
                            s += t
                            magnitude += abs(t)
                        }
                        worst = max(worst, abs(Double(c[i * n + j]) - s) / max(magnitude, 1e-30))
                    }
                }
                XCTAssertLessThanOrEqual(worst, 2e-6, "\(format), \(m) rows")
            }
        }
    }

    /// Stacked Q|K|V-like groups equal the parts multiplied one by one: a stack of one format (its
    /// copy is 3.4 MiB, so it crosses the huge-page allocation and its small-page tail), a group mixing
    /// formats, and int8's Q|K in Q8_0 beside V in bf16, where each run of one format is stacked on its own.
    /// Few rows (skinny kernel) and many (BLAS).
    func testStackedLinearEqualsItsParts() throws {
        let k = 768
        func weight(_ format: WeightFormat, rows: Int) throws -> LinearWeight {
            let values = (0..<(rows * k)).map { _ in Float.random(in: -1...1) }
            return try LinearWeight(quantizing: values, rows: rows, columns: k, to: format)
        }
        let groups = [[try weight(.f32, rows: 768), try weight(.f32, rows: 256), try weight(.f32, rows: 128)],
                      [try weight(.q8_0, rows: 96), try weight(.f32, rows: 64), try weight(.bf16, rows: 32)],
                      [try weight(.q8_0, rows: 96), try weight(.q8_0, rows: 32), try weight(.bf16, rows: 32)]]
        for (parts, formatRuns) in zip(groups, [[WeightFormat.f32], [.q8_0, .f32, .bf16], [.q8_0, .bf16]]) {
            let stacked = StackedLinear(parts)
            XCTAssertEqual(stacked.widths, parts.map(\.rows))
            XCTAssertEqual(stacked.weights.map(\.format), formatRuns)
            XCTAssertEqual(stacked.weights.map(\.rows).reduce(0, +), stacked.width)
            let width = stacked.width
            for m in [5, 40] {
                let a = (0..<(m * k)).map { _ in Float.random(in: -1...1) }
                var together = [Float](repeating: .nan, count: m * width), apart = together
                a.withUnsafeBufferPointer { ab in
                    together.withUnsafeMutableBufferPointer { stacked.apply(m: m, a: ab.baseAddress!, lda: k, c: $0.baseAddress!, ldc: width) }
                    apart.withUnsafeMutableBufferPointer { cb in
                        var column = 0
                        for part in parts {
                            linear(m: m, a: ab.baseAddress!, lda: k, weight: part, c: cb.baseAddress! + column, ldc: width)
                            column += part.rows
                        }
                    }
                }
                // Same products; BLAS may block a wider n differently, so allow float32 rounding (|c| ≲ 30).
                let worst = zip(together, apart).map { abs($0 - $1) }.max() ?? .nan
                XCTAssertLessThanOrEqual(worst, 1e-4, "\(parts.map(\.format)), \(m) rows")
            }
        }
    }

    /// Random bytes make random f16 scales, some of them infinities or NaN: give every scale a sane value.
    func sanitizeScales(_ bytes: inout [UInt8], format: WeightFormat, rowBytes: Int) {
        let scaleOffsets: [Int]
        switch format {
        case .q4_0, .q5_0, .q8_0: scaleOffsets = [0]
        case .q4_1, .q5_1, .q4_K, .q5_K: scaleOffsets = [0, 2]
        case .q6_K: scaleOffsets = [208]
        case .f16, .bf16:
            for i in stride(from: 1, to: bytes.count, by: 2) { bytes[i] &= 0x3F }  // small exponents
            return
        case .f32:
            for i in stride(from: 3, to: bytes.count, by: 4) { bytes[i] &= 0x3F }
            return
        case .q8_K:
            for b in stride(from: 0, to: bytes.count, by: format.blockBytes) {
                bytes.replaceSubrange(b..<(b + 4), with: withUnsafeBytes(of: Float(0.01).bitPattern.littleEndian) { Array($0) })
            }
            return
        }
        for b in stride(from: 0, to: bytes.count, by: format.blockBytes) {
            for o in scaleOffsets { bytes[b + o] = UInt8.random(in: 0...255); bytes[b + o + 1] = UInt8.random(in: 0x20...0x2B) }
        }
    }
}

/// Owns a raw allocation for a borrowing LinearWeight.
final class Allocation {
    let pointer: UnsafeMutableRawPointer
    init(_ pointer: UnsafeMutableRawPointer) { self.pointer = pointer }
    deinit { pointer.deallocate() }
}
