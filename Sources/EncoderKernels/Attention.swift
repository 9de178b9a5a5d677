import Foundation

/// Which keys a query token sees, as a band around its own position: key j is visible from query i when
/// i − before ≤ j ≤ i + after. Every mask rule of the peers (bidirectional, causal, sliding) is such a band.
public struct AttentionSpan: Sendable, Equatable {
    public var before: Int
    public var after: Int

    public init(before: Int, after: Int) {
        precondition(before >= 0 && after >= 0, "a token always sees itself")
        self.before = before
        self.after = after
    }

    public static let all = AttentionSpan(before: .max, after: .max)
    public static let causal = AttentionSpan(before: .max, after: 0)

    @inline(__always)
    public func keyRange(query i: Int, length: Int) -> ClosedRange<Int> {
        let lo = before >= i ? 0 : i - before
        let hi = after >= length - 1 - i ? length - 1 : i + after
        return lo...hi
    }
}

/// Shapes and constants of one attention call.
public struct AttentionShape: Sendable {
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    /// Multiplies q·k (query_pre_attn_scalar^-0.5).
    public var scale: Float
    /// Gemma 2: scores become tanh(s / cap) · cap.
    public var softcap: Float?

    public init(numHeads: Int, numKVHeads: Int, headDim: Int, scale: Float, softcap: Float?) {
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim
        self.scale = scale
        self.softcap = softcap
    }
}

/// Scaled dot-product attention over one sequence of `length` tokens, all heads, grouped-query.
/// q: length × (numHeads·headDim) with row stride ldq; k, v: length × (numKVHeads·headDim) with row stride ldkv;
/// out: length × (numHeads·headDim) with row stride ldo. `scores` is scratch of at least threads · length²
/// floats. With `threads` > 1 the heads of a long sequence are split across that many cores.
public func attention(shape: AttentionShape, span: AttentionSpan, length: Int,
                      q: UnsafePointer<Float>, ldq: Int,
                      k: UnsafePointer<Float>, v: UnsafePointer<Float>, ldkv: Int,
                      out: UnsafeMutablePointer<Float>, ldo: Int,
                      scores: UnsafeMutablePointer<Float>, threads: Int = 1) {
    // Below this length a head's products take microseconds: dispatching them would cost more than it saves.
    let parts = length >= 64 ? max(1, min(threads, shape.numHeads)) : 1
    guard parts > 1 else {
        return attentionHeads(0..<shape.numHeads, shape: shape, span: span, length: length, q: q, ldq: ldq,
                              k: k, v: v, ldkv: ldkv, out: out, ldo: ldo, scores: scores)
    }
    // Each part owns a range of heads (disjoint columns of out) and its own length² of scratch.
    nonisolated(unsafe) let q = q, k = k, v = v, out = out, scores = scores
    let chunk = (shape.numHeads + parts - 1) / parts
    DispatchQueue.concurrentPerform(iterations: parts) { p in
        let heads = (p * chunk)..<min(shape.numHeads, (p + 1) * chunk)
        attentionHeads(heads, shape: shape, span: span, length: length, q: q, ldq: ldq, k: k, v: v, ldkv: ldkv,
                       out: out, ldo: ldo, scores: scores + p * length * length)
    }
}

private func attentionHeads(_ heads: Range<Int>, shape: AttentionShape, span: AttentionSpan, length: Int,
                            q: UnsafePointer<Float>, ldq: Int,
                            k: UnsafePointer<Float>, v: UnsafePointer<Float>, ldkv: Int,
                            out: UnsafeMutablePointer<Float>, ldo: Int, scores: UnsafeMutablePointer<Float>) {
    let hd = shape.headDim
    let group = shape.numHeads / shape.numKVHeads
    for h in heads {
        let g = h / group
        // scores (length × length) = scale · Q_h · K_gᵀ
        gemmTransposedB(m: length, n: length, k: hd, alpha: shape.scale,
                        a: q + h * hd, lda: ldq, w: k + g * hd, ldw: ldkv,
                        c: scores, ldc: length)
        for i in 0..<length {
            let row = scores + i * length
            let range = span.keyRange(query: i, length: length)
            if let cap = shape.softcap {
                let inv = 1 / cap
                for j in range { row[j] = tanhf(row[j] * inv) * cap }
            }
            for j in 0..<range.lowerBound { row[j] = 0 }
            if range.upperBound + 1 < length {
                for j in (range.upperBound + 1)..<length { row[j] = 0 }
            }
            softmaxInPlace(row + range.lowerBound, count: range.count)
        }
        // out_h (length × hd) = P · V_g
        gemm(m: length, n: hd, k: length, a: scores, lda: length, b: v + g * hd, ldb: ldkv,
             c: out + h * hd, ldc: ldo)
    }
}
