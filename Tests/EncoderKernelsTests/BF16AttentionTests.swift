import CKernels
import EncoderKernels
import XCTest

/// Attention with bf16 products (bf16attention.c), on every path this CPU can run (portable always,
/// AVX512-BF16 and AMX where present): against a double-precision reference on the same bf16-rounded Q, K, V
/// and probabilities, under every mask shape, Gemma 2's soft-cap, grouped-query heads, head widths that are not
/// whole AMX steps, and more query rows than one block.
final class BF16AttentionTests: XCTestCase {
    private func bf16(_ x: Float) -> Float { BF16Testing.bf16(x) }
    private var paths: [UInt32] { BF16Testing.paths }

    private struct Case {
        var length: Int, headDim: Int, heads: Int, kvHeads: Int, span: AttentionSpan, softcap: Float?
    }

    private let cases: [Case] = [
        Case(length: 1, headDim: 32, heads: 2, kvHeads: 1, span: .all, softcap: nil),
        Case(length: 5, headDim: 8, heads: 2, kvHeads: 1, span: .causal, softcap: nil),
        Case(length: 33, headDim: 40, heads: 4, kvHeads: 2, span: AttentionSpan(before: 7, after: 7), softcap: nil),
        Case(length: 100, headDim: 64, heads: 3, kvHeads: 1, span: .all, softcap: 5),
        Case(length: 150, headDim: 256, heads: 3, kvHeads: 1, span: AttentionSpan(before: 40, after: 0), softcap: nil),
    ]

    /// One head's rows, as the kernel defines them, in double: P is rounded to bf16 as the kernel rounds it.
    /// Returns the output and, per value, Σ_j P_j·|V_j| (the scale of its rounding error).
    private func reference(_ c: Case, head h: Int, scale: Float, q: [Float], k: [Float], v: [Float])
        -> (out: [Double], magnitude: [Double]) {
        let hd = c.headDim, n = c.length, ldq = c.heads * hd, ldkv = c.kvHeads * hd
        let g = h / (c.heads / c.kvHeads)
        var out = [Double](repeating: 0, count: n * hd), magnitude = out
        for i in 0..<n {
            let range = c.span.keyRange(query: i, length: n)
            var s = [Double](repeating: 0, count: n)
            for j in range {
                var dot = 0.0
                for d in 0..<hd { dot += Double(bf16(q[i * ldq + h * hd + d])) * Double(bf16(k[j * ldkv + g * hd + d])) }
                s[j] = dot * Double(scale)
                if let cap = c.softcap { s[j] = tanh(s[j] / Double(cap)) * Double(cap) }
            }
            let top = range.map { s[$0] }.max()!
            let sum = range.map { exp(s[$0] - top) }.reduce(0, +)
            for j in range {
                let p = Double(bf16(Float(exp(s[j] - top) / sum)))
                for d in 0..<hd {
                    let value = Double(bf16(v[j * ldkv + g * hd + d]))
                    out[i * hd + d] += p * value
                    magnitude[i * hd + d] += p * abs(value)
                }
            }
        }
        return (out, magnitude)
    }

    func testEveryPathMatchesTheReference() {
        var rng = SeededGenerator(seed: 20)
        for c in cases {
            let hd = c.headDim, n = c.length, ldq = c.heads * hd, ldkv = c.kvHeads * hd
            let q = (0..<(n * ldq)).map { _ in rng.unit() * 4 - 2 }
            let k = (0..<(n * ldkv)).map { _ in rng.unit() * 4 - 2 }
            let v = (0..<(n * ldkv)).map { _ in rng.unit() * 4 - 2 }
            let scale = 1 / Float(hd).squareRoot()
            let expected = (0..<c.heads).map { reference(c, head: $0, scale: scale, q: q, k: k, v: v) }
            for isa in paths {
                let count = ck_attention_bf16_packed_count(n, hd)
                var packed = [UInt16](repeating: 0xFFFF, count: count * c.kvHeads)
                for g in 0..<c.kvHeads {
                    packed.withUnsafeMutableBufferPointer {
                        ck_attention_bf16_pack_isa(isa, n, hd, Array(k[(g * hd)...]), Array(v[(g * hd)...]), ldkv,
                                                   $0.baseAddress! + g * count)
                    }
                }
                XCTAssertFalse(packed.contains(0xFFFF), "every packed value written (padding is zeros)")
                // Rows in two calls (as two cores split them), output rows one value wider than the heads.
                let ldo = ldq + 1
                var out = [Float](repeating: .nan, count: n * ldo)
                for h in 0..<c.heads {
                    let g = h / (c.heads / c.kvHeads), split = n / 3
                    for (start, rows) in [(0, split), (split, n - split)] where rows > 0 {
                        let status = out.withUnsafeMutableBufferPointer { o in
                            q.withUnsafeBufferPointer { qp in
                                packed.withUnsafeBufferPointer { pp in
                                    ck_attention_bf16_rows_isa(isa, n, hd, start, rows, scale, c.softcap ?? 0,
                                                               c.span.before, c.span.after, qp.baseAddress! + start * ldq + h * hd, ldq,
                                                               pp.baseAddress! + g * count, o.baseAddress! + start * ldo + h * hd, ldo)
                                }
                            }
                        }
                        XCTAssertEqual(status, 0)
                    }
                }
                var worst = 0.0
                for h in 0..<c.heads {
                    for i in 0..<n {
                        for d in 0..<hd {
                            let e = expected[h], got = Double(out[i * ldo + h * hd + d])
                            worst = max(worst, abs(got - e.out[i * hd + d]) / max(e.magnitude[i * hd + d], 1e-30))
                        }
                    }
                }
                for i in 0..<n { XCTAssertTrue(out[i * ldo + ldq].isNaN, "nothing written past the heads' columns") }
                // f32 sums and probabilities rounded at a boundary the reference's double may put on the other side.
                XCTAssertLessThanOrEqual(worst, 2e-3, "isa \(isa), n \(n), hd \(hd), span \(c.span)")
            }
        }
    }

    /// Through `attention(products: .bf16)`: the same values on one core and two, and within bf16's rounding of
    /// the exact f32 path (a wrong mask, head or normalization would be off by far more).
    func testAttentionEntryPointAgreesWithTheF32Path() {
        var rng = SeededGenerator(seed: 21)
        let shape = AttentionShape(numHeads: 3, numKVHeads: 1, headDim: 64, scale: 0.125, softcap: nil)
        for (length, span) in [(70, AttentionSpan.all), (90, AttentionSpan(before: 20, after: 20))] {
            let ldq = 3 * 64, ldkv = 64
            let q = (0..<(length * ldq)).map { _ in rng.unit() * 2 - 1 }
            let k = (0..<(length * ldkv)).map { _ in rng.unit() * 2 - 1 }
            let v = (0..<(length * ldkv)).map { _ in rng.unit() * 2 - 1 }
            var scores = [Float](repeating: 0, count: 2 * length * length)
            func run(_ products: AttentionProducts, threads: Int) -> [Float] {
                var out = [Float](repeating: .nan, count: length * ldq)
                attention(shape: shape, span: span, length: length, q: q, ldq: ldq, k: k, v: v, ldkv: ldkv,
                          out: &out, ldo: ldq, scores: &scores, threads: threads, products: products)
                return out
            }
            let one = run(.bf16, threads: 1), two = run(.bf16, threads: 2), exact = run(.f32, threads: 1)
            XCTAssertEqual(one, two, "rows are computed the same whichever core takes them")
            var worst = 0.0
            for i in 0..<(length * 3) {
                let a = one[(i * 64)..<(i * 64 + 64)], b = exact[(i * 64)..<(i * 64 + 64)]
                let dot = zip(a, b).map { Double($0) * Double($1) }.reduce(0, +)
                let cos = dot / (a.map { Double($0 * $0) }.reduce(0, +) * b.map { Double($0 * $0) }.reduce(0, +)).squareRoot()
                worst = max(worst, 1 - cos)
            }
            XCTAssertLessThan(worst, 1e-3, "length \(length)")
        }
    }

    /// Attention runs in bf16 only where every Linear product around it does (bf16 panels: a CPU with bf16
    /// units and bf16 weights); int8's block (Q|K in Q8_0 beside bf16 V and O) keeps f32 attention.
    func testBF16AttentionOnlyWhereEveryProductIsBF16() {
        XCTAssertEqual(AttentionProducts.matching([.bf16Panels, .bf16Panels]), .bf16)
        XCTAssertEqual(AttentionProducts.matching([.q8Panels, .bf16Panels, .bf16Panels]), .f32)
        XCTAssertEqual(AttentionProducts.matching([.rows, .rows]), .f32)
        XCTAssertEqual(AttentionProducts.matching([]), .f32)
    }
}
