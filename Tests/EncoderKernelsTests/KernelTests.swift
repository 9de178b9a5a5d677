import EncoderKernels
import Foundation
import XCTest

/// The kernels against plain double-precision loops. Model-level parity covers them end to end; these pin
/// each one down at sizes the models do not use (tails of the 2×8 skinny blocks, k not a multiple of 16).
final class KernelTests: XCTestCase {
    /// Deterministic values in [-1, 1).
    func values(_ count: Int, seed: Int) -> [Float] {
        (0..<count).map { Float((($0 &+ seed) &* 2_654_435_761) % 2000) / 1000 - 1 }
    }

    func testLinearMatchesReferenceOnBothPaths() {
        for m in [1, 2, 3, 5, 10, 14, 32, 33, 100] {
            for n in [1, 7, 8, 9, 130] {
                for k in [5, 16, 771] {
                    let a = values(m * k, seed: m), w = values(n * k, seed: n + 7)
                    var c = [Float](repeating: .nan, count: m * n)
                    a.withUnsafeBufferPointer { ab in
                        w.withUnsafeBufferPointer { wb in
                            c.withUnsafeMutableBufferPointer { cb in
                                linear(m: m, n: n, k: k, a: ab.baseAddress!, lda: k, w: wb.baseAddress!, ldw: k,
                                       c: cb.baseAddress!, ldc: n)
                            }
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
                    // Error relative to Σ|aᵢwᵢ|: float accumulation gives ~1e-7; a wrong index or a dropped tail, ~1e-2.
                    XCTAssertLessThanOrEqual(worst, 2e-6, "m \(m) n \(n) k \(k)")
                }
            }
        }
    }

    func testGeluTanhGate() {
        let x = (0..<4001).map { Float($0 - 2000) / 100 }   // [-20, 20]
        let up = values(x.count, seed: 3)
        var gate = x
        gate.withUnsafeMutableBufferPointer { g in
            up.withUnsafeBufferPointer { u in geluTanhGate(g.baseAddress!, u.baseAddress!, count: x.count) }
        }
        for i in x.indices {
            let v = Double(x[i])
            let expected = 0.5 * v * (1 + tanh(0.7978845608028654 * (v + 0.044715 * v * v * v))) * Double(up[i])
            XCTAssertEqual(Double(gate[i]), expected, accuracy: 1e-6 * max(1, abs(v)), "x = \(x[i])")
        }
    }

    func testRmsNorm() {
        let dim = 37, rows = 3
        let x = values(rows * dim, seed: 11), scale = values(dim, seed: 5).map { 1 + $0 }
        var out = [Float](repeating: 0, count: rows * dim)
        x.withUnsafeBufferPointer { xb in
            scale.withUnsafeBufferPointer { sb in
                out.withUnsafeMutableBufferPointer { ob in
                    rmsNorm(xb.baseAddress!, rows: rows, dim: dim, scale: sb.baseAddress!, eps: 1e-6, out: ob.baseAddress!)
                }
            }
        }
        for r in 0..<rows {
            let row = x[(r * dim)..<((r + 1) * dim)].map(Double.init)
            let inv = 1 / (row.reduce(0) { $0 + $1 * $1 } / Double(dim) + 1e-6).squareRoot()
            for i in 0..<dim {
                XCTAssertEqual(Double(out[r * dim + i]), row[i] * inv * Double(scale[i]), accuracy: 1e-6)
            }
        }
    }

    func testSoftmaxAndSpans() {
        var row: [Float] = [1, 2, 3, -.infinity]
        row.withUnsafeMutableBufferPointer { _ = softmaxInPlace($0.baseAddress!, count: 4) }
        let e = [exp(-2.0), exp(-1.0), 1.0], total = e.reduce(0, +)
        for i in 0..<3 { XCTAssertEqual(Double(row[i]), e[i] / total, accuracy: 1e-7) }
        XCTAssertEqual(row[3], 0)
        XCTAssertEqual(AttentionSpan.all.keyRange(query: 3, length: 5), 0...4)
        XCTAssertEqual(AttentionSpan.causal.keyRange(query: 3, length: 5), 0...3)
        XCTAssertEqual(AttentionSpan(before: 1, after: 2).keyRange(query: 0, length: 5), 0...2)
        XCTAssertEqual(AttentionSpan(before: 1, after: 2).keyRange(query: 4, length: 5), 3...4)
    }

    func testRopeRotatesPairsHalfADimensionApart() {
        let table = RopeTable(headDim: 4, theta: 10_000, positions: 8)
        var v: [Float] = [1, 0, 0, 1]
        v.withUnsafeMutableBufferPointer { table.apply($0.baseAddress!, heads: 1, position: 3) }
        // Frequencies 1 and 1e-2: dimension 0 pairs with 2, dimension 1 with 3.
        XCTAssertEqual(Double(v[0]), cos(3.0), accuracy: 1e-6)
        XCTAssertEqual(Double(v[2]), sin(3.0), accuracy: 1e-6)
        XCTAssertEqual(Double(v[1]), -sin(0.03), accuracy: 1e-6)
        XCTAssertEqual(Double(v[3]), cos(0.03), accuracy: 1e-6)
    }

    /// The fused pass (Q/K norms, then RoPE at each token's position in its own sequence, rows split across
    /// cores) gives exactly the two passes it replaces: per-head `rmsNorm`, then `apply` position by position.
    func testNormalizeAndRotateIsTheNormThenTheRotation() {
        var rng = SeededGenerator(seed: 9)
        let hd = 8, qHeads = 3, kHeads = 1, stride = (qHeads + 2 * kHeads) * hd + 2, keyOffset = qHeads * hd
        let table = RopeTable(headDim: hd, theta: 10_000, positions: 80)
        let offsets = [0, 5, 5, 80, 117]  // an empty sequence, one of 75 tokens
        let tokens = offsets.last!
        let rows = (0..<(tokens * stride)).map { _ in rng.unit() * 4 - 2 }
        let qs = (0..<hd).map { _ in rng.unit() + 0.5 }, ks = (0..<hd).map { _ in rng.unit() + 0.5 }
        for scaled in [true, false] {
            var expected = rows
            expected.withUnsafeMutableBufferPointer { e in
                for s in 0..<(offsets.count - 1) {
                    for p in 0..<(offsets[s + 1] - offsets[s]) {
                        let row = e.baseAddress! + (offsets[s] + p) * stride
                        if scaled {
                            rmsNorm(row, rows: qHeads, dim: hd, scale: qs, eps: 1e-6, out: row)
                            rmsNorm(row + keyOffset, rows: kHeads, dim: hd, scale: ks, eps: 1e-6, out: row + keyOffset)
                        }
                        table.apply(row, heads: qHeads, position: p)
                        table.apply(row + keyOffset, heads: kHeads, position: p)
                    }
                }
            }
            for threads in [1, 2] {
                var got = rows
                qs.withUnsafeBufferPointer { q in
                    ks.withUnsafeBufferPointer { k in
                        table.normalizeAndRotate(&got, offsets: offsets, stride: stride, queryHeads: qHeads, keyHeads: kHeads,
                                                 keyOffset: keyOffset, queryScale: scaled ? q.baseAddress : nil,
                                                 keyScale: scaled ? k.baseAddress : nil, eps: 1e-6, threads: threads)
                    }
                }
                XCTAssertEqual(got, expected, "scaled \(scaled), threads \(threads)")
            }
        }
    }
}
