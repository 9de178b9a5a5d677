import EncoderKernels
import ModelFormats

/// Gemma's RMSNorm: x / sqrt(mean(x²) + eps) · (1 + w). The multiplier (1 + w) is formed once at load, in
/// float32 as transformers forms it, so the forward is one kernel call.
struct RMSNorm: Sendable {
    /// (1 + w), one value per normalized dimension.
    let scale: FloatBuffer
    let eps: Float

    var dimension: Int { scale.count }

    /// Normalizes each of `rows` rows of `dimension` floats (x and out may be the same buffer).
    // x, out: (rows, dimension)
    func forward(_ x: UnsafePointer<Float>, rows: Int, out: UnsafeMutablePointer<Float>) {
        rmsNorm(x, rows: rows, dim: dimension, scale: scale.pointer, eps: eps, out: out)
    }

    /// x += branchNorm?(branch), then normed = next(x): a branch joining the residual stream and the norm that
    /// reads the stream next, in one pass (`residualRMSNorm`). The norms of one layer share their eps.
    // branch, x, normed: (rows, dimension)
    static func join(_ branch: UnsafePointer<Float>, into x: UnsafeMutablePointer<Float>, rows: Int, dim: Int,
                     branchNorm: RMSNorm?, next: RMSNorm?, normed: UnsafeMutablePointer<Float>?) {
        precondition(next == nil || normed != nil, "the next norm needs somewhere to write")
        residualRMSNorm(x, branch: branch, rows: rows, dim: dim, branchScale: branchNorm?.scale.pointer,
                        nextScale: next?.scale.pointer, eps: branchNorm?.eps ?? next?.eps ?? 0, normed: normed)
    }
}
