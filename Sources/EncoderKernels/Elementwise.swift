import CKernels
import Foundation

/// Gemma's RMSNorm over each of `rows` rows of length `dim`: x / sqrt(mean(x²) + eps) · scale, where
/// `scale` is (1 + weight), precomputed once at load as transformers computes it in float32. In place allowed.
@inline(__always)
public func rmsNorm(_ x: UnsafePointer<Float>, rows: Int, dim: Int, scale: UnsafePointer<Float>, eps: Float,
                    out: UnsafeMutablePointer<Float>) {
    ck_rms_norm(x, rows, dim, scale, eps, out)
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
