import EncoderKernels
import Foundation
import XCTest

/// Each backward kernel against central finite differences of its forward, on a scalar L = Σ wᵢ·yᵢ with
/// fixed random w. In float32 with step 1e-2 the differences carry ~1e-4 of noise relative to the largest
/// gradient; a wrong sign, index or term is off by order one.
final class BackwardKernelTests: XCTestCase {
    var generator = SeededGenerator(seed: 42)
    func random(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in scale * (2 * generator.unit() - 1) } }

    /// Finite-difference gradient of `loss` with respect to `x`.
    func numeric(_ x: [Float], step: Float = 1e-2, _ loss: ([Float]) -> Double) -> [Float] {
        var x = x
        return x.indices.map { i in
            let saved = x[i]
            x[i] = saved + step; let up = loss(x)
            x[i] = saved - step; let down = loss(x)
            x[i] = saved
            return Float((up - down) / Double(2 * step))
        }
    }

    func assertClose(_ analytic: [Float], _ numeric: [Float], tolerance: Float = 2e-3, _ label: String) {
        let scale = max(numeric.map(abs).max() ?? 0, 1e-6)
        let worst = zip(analytic, numeric).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(worst / scale, tolerance, "\(label): worst \(worst), scale \(scale)")
        XCTAssertGreaterThan(scale, 1e-4, "\(label): a vanishing gradient tests nothing")
    }

    func dot(_ a: [Float], _ b: [Float]) -> Double { zip(a, b).reduce(0) { $0 + Double($1.0) * Double($1.1) } }

    func testRMSNormBackward() {
        let rows = 3, dim = 10
        let x = random(rows * dim), scale = random(dim).map { 1 + 0.5 * $0 }, w = random(rows * dim)
        func forward(_ x: [Float], _ s: [Float]) -> [Float] {
            var y = [Float](repeating: 0, count: rows * dim)
            rmsNorm(x, rows: rows, dim: dim, scale: s, eps: 1e-6, out: &y)
            return y
        }
        var dx = [Float](repeating: 0, count: rows * dim), ds = [Float](repeating: 0, count: dim)
        rmsNormBackward(x, rows: rows, dim: dim, scale: scale, eps: 1e-6, gradOut: w, gradIn: &dx, gradScale: &ds)
        assertClose(dx, numeric(x) { dot(forward($0, scale), w) }, "dx")
        assertClose(ds, numeric(scale) { dot(forward(x, $0), w) }, "d(scale)")
    }

    func testGatedActivationBackward() {
        let n = 40
        let gate = random(n, scale: 3), up = random(n), w = random(n)
        for tanh in [true, false] {
            func forward(_ g: [Float], _ u: [Float]) -> [Float] {
                var h = g
                if tanh { geluTanhGate(&h, u, count: n) } else { geluErfGate(&h, u, count: n) }
                return h
            }
            var dg = [Float](repeating: 0, count: n), du = dg
            gatedActivationBackward(tanhApproximation: tanh, gate: gate, up: up, gradOut: w, gradGate: &dg, gradUp: &du, count: n)
            assertClose(dg, numeric(gate) { dot(forward($0, up), w) }, "d(gate), tanh \(tanh)")
            assertClose(du, numeric(up) { dot(forward(gate, $0), w) }, "d(up), tanh \(tanh)")
        }
    }

    func testRopeInverseIsTheTranspose() {
        let table = RopeTable(headDim: 8, theta: 10_000, positions: 20)
        let x = random(16), w = random(16)
        var g = w
        table.applyInverse(&g, heads: 2, position: 13)
        let numericGradient = numeric(x) { x in
            var y = x
            table.apply(&y, heads: 2, position: 13)
            return dot(y, w)
        }
        assertClose(g, numericGradient, "rope")
    }

    /// Attention under every rule the models use: grouped-query, a band, the soft-cap, dropout.
    func testAttentionBackward() {
        let length = 6, heads = 4, kvHeads = 2, hd = 4
        let ldq = heads * hd, ldkv = kvHeads * hd
        for (span, cap, rate) in [(AttentionSpan.all, Float?.none, Float(0)), (AttentionSpan(before: 2, after: 1), 2, 0),
                                  (AttentionSpan.causal, nil, 0.3)] {
            let shape = AttentionShape(numHeads: heads, numKVHeads: kvHeads, headDim: hd, scale: 0.5, softcap: cap)
            let dropout = rate > 0 ? AttentionDropout(mask: DropoutMask(rate: rate, seed: 9), stream: 3, firstRow: 5) : nil
            let q = random(length * ldq), k = random(length * ldkv), v = random(length * ldkv), w = random(length * ldq)
            var scratch = [Float](repeating: 0, count: attentionTrainingScratch(length: length))
            func forward(_ q: [Float], _ k: [Float], _ v: [Float]) -> Double {
                var out = [Float](repeating: 0, count: length * ldq)
                attentionTrainingForward(shape: shape, span: span, length: length, q: q, ldq: ldq, k: k, v: v, ldkv: ldkv,
                                         out: &out, ldo: ldq, scratch: &scratch, dropout: dropout)
                return dot(out, w)
            }
            var dq = [Float](repeating: 0, count: length * ldq), dk = [Float](repeating: 0, count: length * ldkv), dv = dk
            attentionBackward(shape: shape, span: span, length: length, q: q, ldq: ldq, k: k, v: v, ldkv: ldkv,
                              gradOut: w, ldo: ldq, gradQ: &dq, gradK: &dk, gradV: &dv, scratch: &scratch, dropout: dropout)
            let label = "span \(span) cap \(String(describing: cap)) dropout \(rate)"
            assertClose(dq, numeric(q) { forward($0, k, v) }, "dQ, \(label)")
            assertClose(dk, numeric(k) { forward(q, $0, v) }, "dK, \(label)")
            assertClose(dv, numeric(v) { forward(q, k, $0) }, "dV, \(label)")
        }
    }

    /// Inference and training attention compute the same weights (one function forms them): the same output at dropout 0.
    func testTrainingForwardMatchesInferenceAttention() {
        let length = 70, heads = 4, kvHeads = 2, hd = 8, ldq = heads * hd, ldkv = kvHeads * hd
        let shape = AttentionShape(numHeads: heads, numKVHeads: kvHeads, headDim: hd, scale: 0.3, softcap: 2)
        let q = random(length * ldq), k = random(length * ldkv), v = random(length * ldkv)
        var a = [Float](repeating: 0, count: length * ldq), b = a
        var scratch = [Float](repeating: 0, count: 2 * attentionTrainingScratch(length: length))
        attention(shape: shape, span: AttentionSpan(before: 5, after: 5), length: length, q: q, ldq: ldq, k: k, v: v,
                  ldkv: ldkv, out: &a, ldo: ldq, scores: &scratch, threads: 2)
        attentionTrainingForward(shape: shape, span: AttentionSpan(before: 5, after: 5), length: length, q: q, ldq: ldq,
                                 k: k, v: v, ldkv: ldkv, out: &b, ldo: ldq, scratch: &scratch, dropout: nil)
        // Row blocks change BLAS's blocking, so the last bits may differ; a different rule would differ by ~0.1.
        let worst = zip(a, b).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(worst, 1e-6)
    }

    /// Dropout masks: a pure function of (seed, stream, index), rate respected, kept values scaled.
    func testDropoutMask() {
        let mask = DropoutMask(rate: 0.25, seed: 5)
        let factors = (0..<100_000).map { mask.factor(stream: 2, index: UInt64($0)) }
        let dropped = Double(factors.filter { $0 == 0 }.count) / Double(factors.count)
        XCTAssertEqual(dropped, 0.25, accuracy: 0.01)
        XCTAssertTrue(factors.allSatisfy { $0 == 0 || $0 == Float(1) / 0.75 })
        XCTAssertEqual(factors, (0..<100_000).map { mask.factor(stream: 2, index: UInt64($0)) })
        XCTAssertNotEqual(factors, (0..<100_000).map { mask.factor(stream: 3, index: UInt64($0)) })
        var x: [Float] = [1, 2, 3]
        DropoutMask(rate: 0, seed: 1).apply(&x, count: 3, stream: 0, first: 0)
        XCTAssertEqual(x, [1, 2, 3])
    }
}
