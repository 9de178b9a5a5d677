import CBLAS
import Foundation

/// Pools one text's token states x (T × d) into out (d), keeping what the backward pass needs.
struct PoolingCache {
    /// max: the row each output came from. attention: softmax weights (heads × T) and the weighted sums
    /// z (heads × d) of the raw states.
    var argmax: [Int32] = []
    var weights: [Float] = []
    var sums: [Float] = []
}

struct Pooler {
    let architecture: HeadArchitecture

    var d: Int { architecture.inputDimension }

    /// Attention pooling in its cheaper but identical form: with K = X Wkᵀ, head h's scores q_h·K_t equal
    /// (Wk_hᵀ q_h)·x_t, and Σ_t p_t V_t = Wv_h (Σ_t p_t x_t) + bv_h because the weights sum to one; so no
    /// T × d projection is ever formed.
    func forward(_ x: UnsafePointer<Float>, tokens t: Int, parameters p: UnsafePointer<Float>, layout: ParameterLayout,
                 out: UnsafeMutablePointer<Float>) -> PoolingCache {
        var cache = PoolingCache()
        switch architecture.pooling {
        case .mean:
            out.update(repeating: 0, count: d)
            for r in 0..<t { cblas_saxpy(Int32(d), 1 / Float(t), x + r * d, 1, out, 1) }
        case .first:
            out.update(from: x, count: d)
        case .last:
            out.update(from: x + (t - 1) * d, count: d)
        case .max:
            cache.argmax = [Int32](repeating: 0, count: d)
            out.update(from: x, count: d)
            for r in 1..<max(t, 1) {
                let row = x + r * d
                for j in 0..<d where row[j] > out[j] { out[j] = row[j]; cache.argmax[j] = Int32(r) }
            }
        case .attention:
            let heads = architecture.attentionHeads, dh = d / heads
            let q = p + layout["pool.query"].lowerBound, wk = p + layout["pool.key.weight"].lowerBound
            let wv = p + layout["pool.value.weight"].lowerBound, bv = p + layout["pool.value.bias"].lowerBound
            cache.weights = [Float](repeating: 0, count: heads * t)
            cache.sums = [Float](repeating: 0, count: heads * d)
            var a = [Float](repeating: 0, count: d)
            let scale = 1 / Float(dh).squareRoot()
            for h in 0..<heads {
                // a = Wk_hᵀ q_h (Wk_h: rows h·dh..<(h+1)·dh of Wk); scores = X a / √dh.
                cblas_sgemv(CblasRowMajor, CblasTrans, Int32(dh), Int32(d), 1, wk + h * dh * d, Int32(d), q + h * dh, 1, 0, &a, 1)
                cache.weights.withUnsafeMutableBufferPointer { w in
                    let s = w.baseAddress! + h * t
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(t), Int32(d), scale, x, Int32(d), a, 1, 0, s, 1)
                    softmax(s, count: t)
                    // z_h = Xᵀ p
                    cache.sums.withUnsafeMutableBufferPointer { z in
                        cblas_sgemv(CblasRowMajor, CblasTrans, Int32(t), Int32(d), 1, x, Int32(d), s, 1, 0, z.baseAddress! + h * d, 1)
                    }
                }
                // out_h = Wv_h z_h + bv_h
                (out + h * dh).update(from: bv + h * dh, count: dh)
                cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(dh), Int32(d), 1, wv + h * dh * d, Int32(d),
                            cache.sums.withUnsafeBufferPointer { $0.baseAddress! + h * d }, 1, 1, out + h * dh, 1)
            }
        }
        return cache
    }

    /// Accumulates the parameter gradients of pooling (attention only) given dL/d(out).
    func backward(_ x: UnsafePointer<Float>, tokens t: Int, parameters p: UnsafePointer<Float>, layout: ParameterLayout,
                  cache: PoolingCache, gradOut g: UnsafePointer<Float>, grads: UnsafeMutablePointer<Float>) {
        guard architecture.pooling == .attention else { return } // the other pools have no parameters
        let heads = architecture.attentionHeads, dh = d / heads
        let q = p + layout["pool.query"].lowerBound, wk = p + layout["pool.key.weight"].lowerBound
        let wv = p + layout["pool.value.weight"].lowerBound
        let gq = grads + layout["pool.query"].lowerBound, gwk = grads + layout["pool.key.weight"].lowerBound
        let gwv = grads + layout["pool.value.weight"].lowerBound, gbv = grads + layout["pool.value.bias"].lowerBound
        let scale = 1 / Float(dh).squareRoot()
        var dz = [Float](repeating: 0, count: d), dp = [Float](repeating: 0, count: t), da = [Float](repeating: 0, count: d)
        cache.weights.withUnsafeBufferPointer { weights in
            cache.sums.withUnsafeBufferPointer { sums in
                for h in 0..<heads {
                    let gh = g + h * dh, z = sums.baseAddress! + h * d, pw = weights.baseAddress! + h * t
                    cblas_saxpy(Int32(dh), 1, gh, 1, gbv + h * dh, 1)
                    cblas_sger(CblasRowMajor, Int32(dh), Int32(d), 1, gh, 1, z, 1, gwv + h * dh * d, Int32(d))
                    // dz = Wv_hᵀ g_h; dp_t = dz·x_t; ds = p ⊙ (dp − p·dp); da = Xᵀ ds / √dh
                    cblas_sgemv(CblasRowMajor, CblasTrans, Int32(dh), Int32(d), 1, wv + h * dh * d, Int32(d), gh, 1, 0, &dz, 1)
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(t), Int32(d), 1, x, Int32(d), dz, 1, 0, &dp, 1)
                    var dot: Float = 0
                    for i in 0..<t { dot += pw[i] * dp[i] }
                    for i in 0..<t { dp[i] = pw[i] * (dp[i] - dot) }
                    cblas_sgemv(CblasRowMajor, CblasTrans, Int32(t), Int32(d), scale, x, Int32(d), dp, 1, 0, &da, 1)
                    // a = Wk_hᵀ q_h: dq_h = Wk_h da, dWk_h = q_h ⊗ da
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(dh), Int32(d), 1, wk + h * dh * d, Int32(d), da, 1, 1, gq + h * dh, 1)
                    cblas_sger(CblasRowMajor, Int32(dh), Int32(d), 1, q + h * dh, 1, da, 1, gwk + h * dh * d, Int32(d))
                }
            }
        }
    }
}

/// Numerically stable softmax in place.
func softmax(_ v: UnsafeMutablePointer<Float>, count: Int) {
    var m = -Float.infinity
    for i in 0..<count { m = max(m, v[i]) }
    var sum: Float = 0
    for i in 0..<count { v[i] = exp(v[i] - m); sum += v[i] }
    for i in 0..<count { v[i] /= sum }
}
