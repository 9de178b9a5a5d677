import CKernels
import Foundation

/// Gemma's RMSNorm over each of `rows` rows of length `dim`: x / sqrt(mean(x²) + eps) · scale, where
/// `scale` is (1 + weight), precomputed once at load as transformers computes it in float32. In place allowed.
@inline(__always)
public func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, dim: Int, scale: UnsafePointer<Float>, eps: Float,
                    out: UnsafeMutablePointer<Float>) {
    ck_rms_norm(x, rows, dim, scale, eps, out)
}

/// A branch joining the residual stream, in one pass over the rows (rows × dim each): x += rmsNorm(branch) ·
/// branchScale (x += branch without it), then, with `nextScale`, normed = rmsNorm(x) · nextScale. The
/// separate passes it replaces (norm, add, norm) each streamed the whole batch through memory.
public func residualRMSNorm(_ x: UnsafeMutablePointer<Float>, branch: UnsafePointer<Float>, rows: Int, dim: Int,
                            branchScale: UnsafePointer<Float>?, nextScale: UnsafePointer<Float>?, eps: Float,
                            normed: UnsafeMutablePointer<Float>?) {
    ck_residual_rms_norm(x, branch, rows, dim, branchScale, nextScale, eps, normed)
}

/// dst[i] += src[i].
public func addInPlace(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { dst[i] += src[i] }
}

/// dst[i] *= s.
public func scaleInPlace(_ dst: UnsafeMutablePointer<Float>, count: Int, by s: Float) {
    for i in 0..<count { dst[i] *= s }
}

/// gate[i] = act(gate[i]) · up[i]: the gated-GELU MLP's middle, with transformers' gelu_pytorch_tanh
/// (vectorized in C: tanh through a polynomial exp, within a few ulp of libm).
@inline(__always)
public func geluTanhGate(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
    ck_gelu_tanh_gate(gate, up, count)
}

public func geluErfGate(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
    for i in 0..<count { gate[i] = geluErf(gate[i]) * up[i] }
}

/// Softmax of `row[0..<count]` in place; entries at −∞ become 0. Returns false for an all-masked row.
@discardableResult
public func softmaxInPlace(_ row: UnsafeMutablePointer<Float>, count: Int) -> Bool {
    var maxValue = -Float.infinity
    for i in 0..<count where row[i] > maxValue { maxValue = row[i] }
    guard maxValue > -Float.infinity else {
        for i in 0..<count { row[i] = 0 }
        return false
    }
    var sum: Float = 0
    for i in 0..<count {
        let e = expf(row[i] - maxValue)
        row[i] = e
        sum += e
    }
    let inv = 1 / sum
    for i in 0..<count { row[i] *= inv }
    return true
}

/// L2-normalizes `v` in place (a zero vector stays zero, as torch's F.normalize with eps does).
public func l2NormalizeInPlace(_ v: UnsafeMutablePointer<Float>, count: Int) {
    var sum: Float = 0
    for i in 0..<count { sum += v[i] * v[i] }
    let norm = max(sum.squareRoot(), 1e-12)
    for i in 0..<count { v[i] /= norm }
}

/// GELU with the exact normal CDF (PyTorch's nn.GELU default).
@inline(__always)
public func geluErf(_ x: Float) -> Float { 0.5 * x * (1 + erff(x * 0.7071067811865476)) }

/// d/dx of `geluErf`: Φ(x) + x·φ(x).
@inline(__always)
public func geluErfDerivative(_ x: Float) -> Float {
    let cdf = 0.5 * (1 + erff(x * 0.7071067811865476))
    let pdf = expf(-0.5 * x * x) * 0.3989422804014327
    return cdf + x * pdf
}

/// The logistic function 1 / (1 + e^−x): multi-label probabilities and their loss gradient.
@inline(__always)
public func sigmoid(_ x: Float) -> Float { 1 / (1 + expf(-x)) }

// MARK: - Backward passes (each next to its forward above; shapes as in the forward)

/// The RMSNorm's backward: with r = 1/sqrt(mean(x²) + eps), y = x · r · scale gives
/// dx = r · (dy ⊙ scale) − x · r³ · Σ(dy ⊙ scale ⊙ x) / dim, and d(scale) = Σ_rows dy ⊙ x · r.
/// dx is written (or added to, when `accumulate`); `gradScale` (dim) is always added to, and may be nil when the
/// norm's weight is frozen. dx may alias dy only when not accumulating.
// x, dy, dx: (rows, dim) at row stride `stride` (dim unless the vectors sit inside wider rows)
public func rmsNormBackward(_ x: UnsafePointer<Float>, rows: Int, dim: Int, stride: Int? = nil,
                            scale: UnsafePointer<Float>, eps: Float, gradOut dy: UnsafePointer<Float>,
                            gradIn dx: UnsafeMutablePointer<Float>, accumulate: Bool = false,
                            gradScale: UnsafeMutablePointer<Float>?) {
    let stride = stride ?? dim
    for row in 0..<rows {
        let xr = x + row * stride, dyr = dy + row * stride, dxr = dx + row * stride
        var squares: Float = 0, dot: Float = 0
        for i in 0..<dim {
            squares += xr[i] * xr[i]
            dot += dyr[i] * scale[i] * xr[i]
        }
        let r = 1 / (squares / Float(dim) + eps).squareRoot()
        let c = r * r * r * dot / Float(dim)
        if let gradScale { for i in 0..<dim { gradScale[i] += dyr[i] * xr[i] * r } }
        if accumulate {
            for i in 0..<dim { dxr[i] += r * dyr[i] * scale[i] - xr[i] * c }
        } else {
            for i in 0..<dim { dxr[i] = r * dyr[i] * scale[i] - xr[i] * c }
        }
    }
}

/// transformers' gelu_pytorch_tanh, 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))), one value at a time (the
/// training path's reference; the gated forward above is its vectorized twin).
@inline(__always)
public func geluTanh(_ x: Float) -> Float {
    0.5 * x * (1 + tanhf(0.7978845608028654 * (x + 0.044715 * x * x * x)))
}

/// d/dx of `geluTanh`: 0.5·(1 + t) + 0.5·x·(1 − t²)·√(2/π)·(1 + 3·0.044715·x²), t the tanh above.
@inline(__always)
public func geluTanhDerivative(_ x: Float) -> Float {
    let t = tanhf(0.7978845608028654 * (x + 0.044715 * x * x * x))
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * 0.7978845608028654 * (1 + 0.134145 * x * x)
}

/// The gated MLP middle's backward, h = act(g) · u: dg = dh · u · act'(g), du = dh · act(g). `gate` and `up`
/// hold the pre-activation product; the gradients are written into `gradGate` and `gradUp`.
// gate, up, dh, gradGate, gradUp: (count)
public func gatedActivationBackward(tanhApproximation: Bool, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                                    gradOut dh: UnsafePointer<Float>, gradGate: UnsafeMutablePointer<Float>,
                                    gradUp: UnsafeMutablePointer<Float>, count: Int) {
    if tanhApproximation {
        // Vectorized in C: one exp serves the value and the derivative.
        ck_gelu_tanh_gate_backward(gate, up, dh, gradGate, gradUp, count)
    } else {
        for i in 0..<count {
            let g = gate[i], d = dh[i]
            gradUp[i] = d * geluErf(g)
            gradGate[i] = d * up[i] * geluErfDerivative(g)
        }
    }
}
