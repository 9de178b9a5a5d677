import EncoderKernels

/// Learned attention pooling over one text's token states x (T × d): per head h, softmax(q_h · K_tᵀ / √d_h)
/// weights the values V_t, with K = X Wkᵀ and V = X Wvᵀ + bv (PyTorch's Linear layout, out × in).
///
/// Computed in its cheaper but identical form: head h's scores q_h·K_t equal (Wk_hᵀ q_h)·x_t, and
/// Σ_t p_t V_t = Wv_h (Σ_t p_t x_t) + bv_h because the weights sum to one; so no T × d projection is formed.
public struct AttentionPooling {
    public let heads: Int
    public let dimension: Int

    /// The parameters, borrowed: query (heads × d/heads), key weight (d × d), value weight (d × d), value bias (d).
    public struct Parameters {
        public var query: UnsafePointer<Float>
        public var keyWeight: UnsafePointer<Float>
        public var valueWeight: UnsafePointer<Float>
        public var valueBias: UnsafePointer<Float>

        public init(query: UnsafePointer<Float>, keyWeight: UnsafePointer<Float>, valueWeight: UnsafePointer<Float>,
                    valueBias: UnsafePointer<Float>) {
            self.query = query
            self.keyWeight = keyWeight
            self.valueWeight = valueWeight
            self.valueBias = valueBias
        }
    }

    /// Their gradients, accumulated into.
    public struct Gradients {
        public var query: UnsafeMutablePointer<Float>
        public var keyWeight: UnsafeMutablePointer<Float>
        public var valueWeight: UnsafeMutablePointer<Float>
        public var valueBias: UnsafeMutablePointer<Float>

        public init(query: UnsafeMutablePointer<Float>, keyWeight: UnsafeMutablePointer<Float>,
                    valueWeight: UnsafeMutablePointer<Float>, valueBias: UnsafeMutablePointer<Float>) {
            self.query = query
            self.keyWeight = keyWeight
            self.valueWeight = valueWeight
            self.valueBias = valueBias
        }
    }

    /// What the backward pass reads: softmax weights (heads × T) and the weighted sums z (heads × d) of x.
    public struct Saved {
        var weights: [Float]
        var sums: [Float]
    }

    public init(heads: Int, dimension: Int) {
        precondition(heads > 0 && dimension % heads == 0, "the heads must divide the dimension")
        self.heads = heads
        self.dimension = dimension
    }

    var headDimension: Int { dimension / heads }
    var scale: Float { 1 / Float(headDimension).squareRoot() }

    // x: (T, d); out: (d)
    public func forward(_ x: UnsafePointer<Float>, tokens t: Int, parameters p: Parameters,
                        out: UnsafeMutablePointer<Float>) -> Saved {
        let d = dimension, dh = headDimension
        var saved = Saved(weights: [Float](repeating: 0, count: heads * t), sums: [Float](repeating: 0, count: heads * d))
        var a = [Float](repeating: 0, count: d)
        saved.weights.withUnsafeMutableBufferPointer { w in
            saved.sums.withUnsafeMutableBufferPointer { z in
                for h in 0..<heads {
                    let s = w.baseAddress! + h * t, zh = z.baseAddress! + h * d
                    // a = Wk_hᵀ q_h (Wk_h: rows h·dh..<(h+1)·dh of Wk); scores = X a / √dh; z_h = Xᵀ softmax.
                    gemv(transposed: true, m: dh, n: d, a: p.keyWeight + h * dh * d, lda: d, x: p.query + h * dh, y: &a)
                    gemv(m: t, n: d, alpha: scale, a: x, lda: d, x: a, y: s)
                    softmaxInPlace(s, count: t)
                    gemv(transposed: true, m: t, n: d, a: x, lda: d, x: s, y: zh)
                    // out_h = Wv_h z_h + bv_h
                    (out + h * dh).update(from: p.valueBias + h * dh, count: dh)
                    gemv(m: dh, n: d, a: p.valueWeight + h * dh * d, lda: d, x: zh, beta: 1, y: out + h * dh)
                }
            }
        }
        return saved
    }

    /// Accumulates the parameter gradients given dL/d(out), and with `gradIn` adds dL/dx (what fine-tuning the
    /// encoder below needs): dx_t = Σ_h p_h,t · dz_h + ds_h,t · a_h / √dh.
    // x: (T, d); gradOut: (d); gradIn: (T, d)
    public func backward(_ x: UnsafePointer<Float>, tokens t: Int, parameters p: Parameters, saved: Saved,
                         gradOut g: UnsafePointer<Float>, gradients gr: Gradients,
                         gradIn dx: UnsafeMutablePointer<Float>? = nil) {
        let d = dimension, dh = headDimension
        var dz = [Float](repeating: 0, count: d), dp = [Float](repeating: 0, count: t), da = [Float](repeating: 0, count: d)
        var a = [Float](repeating: 0, count: d)
        saved.weights.withUnsafeBufferPointer { weights in
            saved.sums.withUnsafeBufferPointer { sums in
                for h in 0..<heads {
                    let gh = g + h * dh, z = sums.baseAddress! + h * d, pw = weights.baseAddress! + h * t
                    addInPlace(gr.valueBias + h * dh, gh, count: dh)
                    ger(m: dh, n: d, x: gh, y: z, a: gr.valueWeight + h * dh * d, lda: d)
                    // dz = Wv_hᵀ g_h; dp_t = dz·x_t; ds = p ⊙ (dp − p·dp); da = Xᵀ ds / √dh
                    gemv(transposed: true, m: dh, n: d, a: p.valueWeight + h * dh * d, lda: d, x: gh, y: &dz)
                    gemv(m: t, n: d, a: x, lda: d, x: dz, y: &dp)
                    var dot: Float = 0
                    for i in 0..<t { dot += pw[i] * dp[i] }
                    for i in 0..<t { dp[i] = pw[i] * (dp[i] - dot) }
                    gemv(transposed: true, m: t, n: d, alpha: scale, a: x, lda: d, x: dp, y: &da)
                    // a = Wk_hᵀ q_h: dq_h = Wk_h da, dWk_h = q_h ⊗ da
                    gemv(m: dh, n: d, a: p.keyWeight + h * dh * d, lda: d, x: da, beta: 1, y: gr.query + h * dh)
                    ger(m: dh, n: d, x: p.query + h * dh, y: da, a: gr.keyWeight + h * dh * d, lda: d)
                    if let dx {
                        gemv(transposed: true, m: dh, n: d, a: p.keyWeight + h * dh * d, lda: d, x: p.query + h * dh, y: &a)
                        ger(m: t, n: d, x: pw, y: dz, a: dx, lda: d)
                        ger(m: t, n: d, alpha: scale, x: dp, y: a, a: dx, lda: d)
                    }
                }
            }
        }
    }
}
