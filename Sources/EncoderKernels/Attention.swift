import CKernels
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

/// How attention's two products (scores = Q·Kᵀ, out = P·V) multiply.
public enum AttentionProducts: Sendable, Equatable {
    /// f32 throughout (OpenBLAS): the exact path.
    case f32
    /// bf16 operands with f32 sums and an f32 softmax (bf16attention.c), as PyTorch's bf16 autocast runs
    /// attention: for models whose Linear products already run in bf16.
    case bf16

    /// bf16 where every Linear product of the attention block (Q|K|V and O: `packings`) already runs in bf16, on
    /// AMX tiles or AVX512-BF16: rounding there costs no more cosine than the products' own (EmbeddingGemma's
    /// parity rows: min 0.99998 to f32 either way). On AMX the fused kernel took attention from 0.20 to 0.09 of a
    /// bf16 forward (`bench --profile`); on an AMD EPYC with AVX512-BF16 and no AMX (vdpbf16ps at 2.1× OpenBLAS's
    /// f32 there) it took 2,048-token texts from 654–667 to 1,074–1,099 tokens/s. (An AMX CPU limited to its
    /// AVX512-BF16 path had measured no faster than f32, but such a CPU always has AMX, which takes precedence.)
    /// int8 keeps f32 attention: its V and O are bf16 but Q and K are Q8_0, and bf16 attention on top took its
    /// cosine to f32 on 64 bench texts from 0.99994 to 0.99990, the edge of its four nines.
    public static func matching(_ packings: [LinearWeight.Packing]) -> AttentionProducts {
        !packings.isEmpty && packings.allSatisfy { $0 == .bf16Panels } ? .bf16 : .f32
    }
}

/// Scaled dot-product attention over one sequence of `length` tokens, all heads, grouped-query.
/// q: length × (numHeads·headDim) with row stride ldq; k, v: length × (numKVHeads·headDim) with row stride ldkv;
/// out: length × (numHeads·headDim) with row stride ldo. `scores` is scratch of at least threads · length²
/// floats. With `threads` > 1 a long sequence's work is split across that many cores in (head, block of query
/// rows) pieces, so a head count that does not divide by the cores (EmbeddingGemma has 3) still balances.
public func attention(shape: AttentionShape, span: AttentionSpan, length: Int,
                      q: UnsafePointer<Float>, ldq: Int,
                      k: UnsafePointer<Float>, v: UnsafePointer<Float>, ldkv: Int,
                      out: UnsafeMutablePointer<Float>, ldo: Int,
                      scores: UnsafeMutablePointer<Float>, threads: Int = 1, products: AttentionProducts = .f32) {
    // Below this length a head's products take microseconds: dispatching them would cost more than it saves.
    let parts = length >= 64 ? max(1, threads) : 1
    if products == .bf16 {
        attentionBF16(shape: shape, span: span, length: length, q: q, ldq: ldq, k: k, v: v, ldkv: ldkv,
                      out: out, ldo: ldo, parts: parts)
        return
    }
    nonisolated(unsafe) let q = q, k = k, v = v, out = out, scores = scores
    forEachPiece(heads: shape.numHeads, length: length, parts: parts) { p, h, rows in
        // Each piece writes its own rows of one head's columns of out; each core has length² of scratch.
        attentionRows(rows, head: h, shape: shape, span: span, length: length, q: q, ldq: ldq, k: k, v: v, ldkv: ldkv,
                      out: out, ldo: ldo, scores: scores + p * length * length)
    }
}

/// Attention's work in (head, block of query rows) pieces over `parts` cores (core p takes pieces p, p + parts,
/// …), so a head count that does not divide by the cores still balances; with one part, each head's rows whole.
private func forEachPiece(heads: Int, length: Int, parts: Int, _ body: @Sendable (Int, Int, Range<Int>) -> Void) {
    guard parts > 1 else {
        for h in 0..<heads { body(0, h, 0..<length) }
        return
    }
    let block = (length + parts - 1) / parts, pieces = heads * parts
    parallelFor(parts) { p in
        for piece in stride(from: p, to: pieces, by: parts) {
            let start = (piece % parts) * block
            let rows = start..<min(length, start + block)
            if !rows.isEmpty { body(p, piece / parts, rows) }
        }
    }
}

/// `attention` with bf16 products: each key/value head's K and V packed once, then (head, block of query rows)
/// pieces as in the f32 path, each fused in C (scores of a block of rows, softmax, times V).
private func attentionBF16(shape: AttentionShape, span: AttentionSpan, length: Int,
                           q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, v: UnsafePointer<Float>, ldkv: Int,
                           out: UnsafeMutablePointer<Float>, ldo: Int, parts: Int) {
    let hd = shape.headDim, isa = ck_cpu_features()
    let count = ck_attention_bf16_packed_count(length, hd)
    let storage = UnsafeMutablePointer<UInt16>.allocate(capacity: count * shape.numKVHeads)
    defer { storage.deallocate() }
    for g in 0..<shape.numKVHeads {
        ck_attention_bf16_pack_isa(isa, length, hd, k + g * hd, v + g * hd, ldkv, storage + g * count)
    }
    nonisolated(unsafe) let q = q, out = out, packed = UnsafePointer(storage)
    forEachPiece(heads: shape.numHeads, length: length, parts: parts) { _, h, rows in
        let start = rows.lowerBound
        let status = ck_attention_bf16_rows_isa(isa, length, hd, start, rows.count, shape.scale, shape.softcap ?? 0,
                                                span.before, span.after, q + start * ldq + h * hd, ldq,
                                                packed + shape.group(of: h) * count, out + start * ldo + h * hd, ldo)
        if status != 0 { fatalError("out of memory for attention over \(length) tokens") }
    }
}

/// Query rows `rows` of head `head`: scores (rows × length), masked softmax, times V.
private func attentionRows(_ rows: Range<Int>, head h: Int, shape: AttentionShape, span: AttentionSpan, length: Int,
                           q: UnsafePointer<Float>, ldq: Int,
                           k: UnsafePointer<Float>, v: UnsafePointer<Float>, ldkv: Int,
                           out: UnsafeMutablePointer<Float>, ldo: Int, scores: UnsafeMutablePointer<Float>) {
    let hd = shape.headDim
    let g = shape.group(of: h)
    attentionProbabilities(rows, head: h, shape: shape, span: span, length: length, q: q, ldq: ldq, k: k, ldkv: ldkv,
                           probabilities: scores, cappedScores: nil)
    // out_h[rows] (m × hd) = P · V_g
    gemm(m: rows.count, n: hd, k: length, a: scores, lda: length, b: v + g * hd, ldb: ldkv,
         c: out + rows.lowerBound * ldo + h * hd, ldc: ldo)
}

extension AttentionShape {
    /// The key/value head that query head h reads (grouped-query attention).
    @inline(__always)
    public func group(of h: Int) -> Int { h / (numHeads / numKVHeads) }
}

/// The attention weights of query rows `rows` of head `h`: scores = scale · Q_h[rows] · K_gᵀ, Gemma 2's
/// soft-cap, the span's band, softmax; (rows.count × length) into `probabilities`, zero outside the band.
/// With `cappedScores`, the scores after the cap and before the softmax are also kept there (the soft-cap's
/// backward reads them). The inference and training paths both call this, so their weights are the same.
public func attentionProbabilities(_ rows: Range<Int>, head h: Int, shape: AttentionShape, span: AttentionSpan,
                                   length: Int, q: UnsafePointer<Float>, ldq: Int, k: UnsafePointer<Float>, ldkv: Int,
                                   probabilities: UnsafeMutablePointer<Float>,
                                   cappedScores: UnsafeMutablePointer<Float>?) {
    let hd = shape.headDim, g = shape.group(of: h), r0 = rows.lowerBound
    // scores (m × length) = scale · Q_h[rows] · K_gᵀ
    gemmTransposedB(m: rows.count, n: length, k: hd, alpha: shape.scale,
                    a: q + r0 * ldq + h * hd, lda: ldq, w: k + g * hd, ldw: ldkv,
                    c: probabilities, ldc: length)
    for i in rows {
        let row = probabilities + (i - r0) * length
        let range = span.keyRange(query: i, length: length)
        if let cap = shape.softcap {
            let inv = 1 / cap
            for j in range { row[j] = tanhf(row[j] * inv) * cap }
        }
        if let cappedScores { (cappedScores + (i - r0) * length).update(from: row, count: length) }
        for j in 0..<range.lowerBound { row[j] = 0 }
        if range.upperBound + 1 < length {
            for j in (range.upperBound + 1)..<length { row[j] = 0 }
        }
        softmaxInPlace(row + range.lowerBound, count: range.count)
    }
}
