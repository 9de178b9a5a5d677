import Foundation

/// Attention as training runs it: one sequence on one core (a training batch has many sequences, which the
/// caller spreads over the cores), dropout on the attention weights, and a backward that recomputes the
/// weights from Q and K instead of storing length² floats per head. Shapes as in `attention`.

/// Where a sequence's attention-dropout draws live: element (query i, head h, key j) of a sequence whose first
/// token is packed row `firstRow` is index ((firstRow + i) · heads + h) · 2²⁰ + j of `stream`, so no two
/// elements of a batch share a draw (sequences are shorter than 2²⁰ tokens).
public struct AttentionDropout: Sendable {
    public var mask: DropoutMask
    public var stream: UInt64
    public var firstRow: Int

    public init(mask: DropoutMask, stream: UInt64, firstRow: Int) {
        self.mask = mask
        self.stream = stream
        self.firstRow = firstRow
    }

    /// P'_ij = P_ij · factor for one row of one head.
    @inline(__always)
    func apply(_ row: UnsafeMutablePointer<Float>, query i: Int, head h: Int, heads: Int, length: Int) {
        let base = (UInt64(firstRow + i) &* UInt64(heads) &+ UInt64(h)) << 20
        for j in 0..<length { row[j] *= mask.factor(stream: stream, index: base | UInt64(j)) }
    }
}

/// Floats of scratch one core needs for a sequence of `length` tokens.
public func attentionTrainingScratch(length: Int) -> Int { 3 * length * length }

/// out = dropout(softmax(scale · Q Kᵀ under the span)) · V for every head of one sequence.
public func attentionTrainingForward(shape: AttentionShape, span: AttentionSpan, length: Int,
                                     q: UnsafePointer<Float>, ldq: Int,
                                     k: UnsafePointer<Float>, v: UnsafePointer<Float>, ldkv: Int,
                                     out: UnsafeMutablePointer<Float>, ldo: Int,
                                     scratch: UnsafeMutablePointer<Float>, dropout: AttentionDropout?) {
    let hd = shape.headDim, p = scratch
    for h in 0..<shape.numHeads {
        attentionProbabilities(0..<length, head: h, shape: shape, span: span, length: length, q: q, ldq: ldq,
                               k: k, ldkv: ldkv, probabilities: p, cappedScores: nil)
        if let dropout, dropout.mask.isActive {
            for i in 0..<length { dropout.apply(p + i * length, query: i, head: h, heads: shape.numHeads, length: length) }
        }
        gemm(m: length, n: hd, k: length, a: p, lda: length, b: v + shape.group(of: h) * hd, ldb: ldkv,
             c: out + h * hd, ldc: ldo)
    }
}

/// The backward of `attentionTrainingForward` given dOut: dQ is written; dK and dV are added to (the caller
/// zeroes them: the query heads of a group all add to their group's K and V). With P the weights and P' the
/// dropped ones: dV += P'ᵀ dO; dP = (dO Vᵀ) ⊙ mask; dS = P ⊙ (dP − rowsum(P ⊙ dP)); through the soft-cap
/// s = c·tanh(r/c), dr = dS · (1 − (s/c)²); dQ = scale · dR K; dK += scale · dRᵀ Q.
public func attentionBackward(shape: AttentionShape, span: AttentionSpan, length: Int,
                              q: UnsafePointer<Float>, ldq: Int,
                              k: UnsafePointer<Float>, v: UnsafePointer<Float>, ldkv: Int,
                              gradOut dOut: UnsafePointer<Float>, ldo: Int,
                              gradQ: UnsafeMutablePointer<Float>, gradK: UnsafeMutablePointer<Float>,
                              gradV: UnsafeMutablePointer<Float>,
                              scratch: UnsafeMutablePointer<Float>, dropout: AttentionDropout?) {
    let hd = shape.headDim, n = length
    let p = scratch, dp = scratch + n * n, capped = scratch + 2 * n * n
    let dropping = dropout?.mask.isActive == true
    for h in 0..<shape.numHeads {
        let g = shape.group(of: h)
        attentionProbabilities(0..<n, head: h, shape: shape, span: span, length: n, q: q, ldq: ldq, k: k, ldkv: ldkv,
                               probabilities: p, cappedScores: shape.softcap == nil ? nil : capped)
        // dP' = dO_h · V_gᵀ (n × n)
        gemmTransposedB(m: n, n: n, k: hd, a: dOut + h * hd, lda: ldo, w: v + g * hd, ldw: ldkv, c: dp, ldc: n)
        if dropping, let dropout {
            // dP = dP' ⊙ mask; dV needs P' = P ⊙ mask, formed in dS's place after dS is done below.
            for i in 0..<n { dropout.apply(dp + i * n, query: i, head: h, heads: shape.numHeads, length: n) }
        } else {
            // dV_g += Pᵀ · dO_h
            gemmTransposedA(m: n, n: hd, k: n, a: p, lda: n, b: dOut + h * hd, ldb: ldo, beta: 1, c: gradV + g * hd, ldc: ldkv)
        }
        for i in 0..<n {
            let pr = p + i * n, dr = dp + i * n
            let range = span.keyRange(query: i, length: n)
            var dot: Float = 0
            for j in range { dot += pr[j] * dr[j] }
            for j in 0..<n { dr[j] = pr[j] * (dr[j] - dot) }
            if let cap = shape.softcap {
                let cr = capped + i * n, inv = 1 / cap
                for j in range { let t = cr[j] * inv; dr[j] *= 1 - t * t }
            }
        }
        if dropping, let dropout {
            for i in 0..<n { dropout.apply(p + i * n, query: i, head: h, heads: shape.numHeads, length: n) }
            gemmTransposedA(m: n, n: hd, k: n, a: p, lda: n, b: dOut + h * hd, ldb: ldo, beta: 1, c: gradV + g * hd, ldc: ldkv)
        }
        // dQ_h = scale · dS · K_g; dK_g += scale · dSᵀ · Q_h
        gemm(m: n, n: hd, k: n, alpha: shape.scale, a: dp, lda: n, b: k + g * hd, ldb: ldkv, c: gradQ + h * hd, ldc: ldq)
        gemmTransposedA(m: n, n: hd, k: n, alpha: shape.scale, a: dp, lda: n, b: q + h * hd, ldb: ldq, beta: 1,
                        c: gradK + g * hd, ldc: ldkv)
    }
}
