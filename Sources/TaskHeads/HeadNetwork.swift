import EncoderKernels
import Foundation

/// Pooling → dropout → [Linear → GELU → dropout] → Linear, with all parameters in one flat vector.
public struct HeadNetwork: Sendable, Equatable {
    public let architecture: HeadArchitecture
    public let layout: ParameterLayout
    public var parameters: [Float]

    /// PyTorch's Linear initialization (uniform ±1/√fan_in). Attention pooling starts as mean pooling: a
    /// near-zero query gives uniform weights and the value projection starts as the identity.
    public init(architecture: HeadArchitecture, seed: UInt64) throws(HeadError) {
        try architecture.validate()
        self.architecture = architecture
        layout = ParameterLayout(architecture)
        parameters = [Float](repeating: 0, count: layout.count)
        var rng = SeededGenerator(seed: seed)
        let weightShapes = Dictionary(uniqueKeysWithValues: layout.entries.map { ($0.name, $0.shape) })
        for entry in layout.entries {
            switch entry.name {
            case "pool.query":
                for i in entry.range { parameters[i] = 0.02 * rng.normal() }
            case "pool.value.weight":
                let d = architecture.inputDimension
                for i in 0..<d { parameters[entry.range.lowerBound + i * d + i] = 1 }
            case "pool.value.bias":
                break
            default:
                // A bias takes the fan-in of its layer's weight.
                let weight = entry.name.replacingOccurrences(of: ".bias", with: ".weight")
                let bound = 1 / Float(weightShapes[weight]?[1] ?? 1).squareRoot()
                for i in entry.range { parameters[i] = (2 * rng.unit() - 1) * bound }
            }
        }
    }

    /// Loads parameters by name, checking every shape.
    public init(architecture: HeadArchitecture, tensors: [String: (shape: [Int], values: [Float])]) throws(HeadError) {
        try architecture.validate()
        self.architecture = architecture
        layout = ParameterLayout(architecture)
        parameters = [Float](repeating: 0, count: layout.count)
        for entry in layout.entries {
            guard let t = tensors[entry.name] else { throw .invalidHead("missing tensor \(entry.name)") }
            guard t.shape == entry.shape, t.values.count == entry.range.count else {
                throw .invalidHead("tensor \(entry.name) has shape \(t.shape), expected \(entry.shape)")
            }
            parameters.replaceSubrange(entry.range, with: t.values)
        }
    }

    /// Everything the backward pass needs from one forward pass.
    public struct Activations {
        var pooled: [Float] = []       // B × d, before dropout
        var poolCaches: [PoolingCache] = []
        var inputMask: [Float] = []    // B × d dropout scale (0 or 1/(1−p)); empty when off
        var dropped: [Float] = []      // B × d, after dropout
        var preActivation: [Float] = []  // B × H
        var hiddenMask: [Float] = []
        var hidden: [Float] = []       // B × H, after GELU and dropout
        public var logits: [Float] = []  // B × outputs
    }

    /// Logits for the texts `items` of `states`. With `rng`, dropout is on (training); without, off.
    public func forward(_ states: TokenStateSet, items: [Int], rng: inout SeededGenerator?) -> Activations {
        precondition(states.dimension == architecture.inputDimension, "token states have the wrong dimension")
        let b = items.count, d = architecture.inputDimension
        var act = Activations()
        act.pooled = [Float](repeating: 0, count: b * d)
        let pooler = Pooler(architecture: architecture)
        parameters.withUnsafeBufferPointer { p in
            states.values.withUnsafeBufferPointer { x in
                act.pooled.withUnsafeMutableBufferPointer { out in
                    act.poolCaches = items.enumerated().map { row, i in
                        pooler.forward(x.baseAddress! + states.offsets[i] * d, tokens: states.tokens(i), parameters: p.baseAddress!,
                                       layout: layout, out: out.baseAddress! + row * d)
                    }
                }
            }
        }
        (act.dropped, act.inputMask) = Self.dropout(act.pooled, rate: architecture.dropout, rng: &rng)
        var last = act.dropped, width = d
        if let h = architecture.hiddenSize {
            act.preActivation = linear(last, rows: b, input: d, output: h, weight: "hidden.weight", bias: "hidden.bias")
            (act.hidden, act.hiddenMask) = Self.dropout(act.preActivation.map(geluErf), rate: architecture.hiddenDropout, rng: &rng)
            last = act.hidden
            width = h
        }
        act.logits = linear(last, rows: b, input: width, output: architecture.outputs, weight: "out.weight", bias: "out.bias")
        return act
    }

    /// dL/dparameters for one forward pass, given dL/dlogits. With `gradStates` (laid out like `states.values`),
    /// dL/d(token states) of the texts `items` is added there: the gradient a fine-tuned encoder continues with.
    public func backward(_ states: TokenStateSet, items: [Int], activations act: Activations, gradLogits: [Float],
                         gradStates: UnsafeMutablePointer<Float>? = nil) -> [Float] {
        let b = items.count, d = architecture.inputDimension, c = architecture.outputs
        var grads = [Float](repeating: 0, count: layout.count)
        grads.withUnsafeMutableBufferPointer { gp in
            let g = gp.baseAddress!
            let lastInput = architecture.hiddenSize == nil ? act.dropped : act.hidden
            let width = architecture.hiddenSize ?? d
            // out: dW = dYᵀ X, db = Σ dY, dX = dY W
            var gradLast = linearBackward(gradLogits, input: lastInput, rows: b, inputWidth: width, output: c,
                                          weight: "out.weight", bias: "out.bias", grads: g)
            if let h = architecture.hiddenSize {
                if !act.hiddenMask.isEmpty { for i in gradLast.indices { gradLast[i] *= act.hiddenMask[i] } }
                for i in gradLast.indices { gradLast[i] *= geluErfDerivative(act.preActivation[i]) }
                gradLast = linearBackward(gradLast, input: act.dropped, rows: b, inputWidth: d, output: h,
                                          weight: "hidden.weight", bias: "hidden.bias", grads: g)
            }
            guard architecture.pooling == .attention || gradStates != nil else { return }
            if !act.inputMask.isEmpty { for i in gradLast.indices { gradLast[i] *= act.inputMask[i] } }
            let pooler = Pooler(architecture: architecture)
            parameters.withUnsafeBufferPointer { p in
                states.values.withUnsafeBufferPointer { x in
                    gradLast.withUnsafeBufferPointer { gl in
                        for (row, i) in items.enumerated() {
                            pooler.backward(x.baseAddress! + states.offsets[i] * d, tokens: states.tokens(i), parameters: p.baseAddress!,
                                            layout: layout, cache: act.poolCaches[row], gradOut: gl.baseAddress! + row * d, grads: g,
                                            gradIn: gradStates.map { $0 + states.offsets[i] * d })
                        }
                    }
                }
            }
        }
        return grads
    }

    /// Y (rows × output) = X Wᵀ + b.
    private func linear(_ x: [Float], rows: Int, input: Int, output: Int, weight: String, bias: String) -> [Float] {
        var y = [Float](repeating: 0, count: rows * output)
        let bRange = layout[bias]
        for r in 0..<rows { for j in 0..<output { y[r * output + j] = parameters[bRange.lowerBound + j] } }
        parameters.withUnsafeBufferPointer { p in
            gemmTransposedB(m: rows, n: output, k: input, a: x, lda: input, w: p.baseAddress! + layout[weight].lowerBound,
                            ldw: input, beta: 1, c: &y, ldc: output)
        }
        return y
    }

    /// Accumulates dW and db into `grads`; returns dX.
    private func linearBackward(_ dy: [Float], input x: [Float], rows: Int, inputWidth: Int, output: Int,
                                weight: String, bias: String, grads: UnsafeMutablePointer<Float>) -> [Float] {
        gemmTransposedA(m: output, n: inputWidth, k: rows, a: dy, lda: output, b: x, ldb: inputWidth,
                        beta: 1, c: grads + layout[weight].lowerBound, ldc: inputWidth)
        let gb = grads + layout[bias].lowerBound
        for r in 0..<rows { for j in 0..<output { gb[j] += dy[r * output + j] } }
        var dx = [Float](repeating: 0, count: rows * inputWidth)
        parameters.withUnsafeBufferPointer { p in
            gemm(m: rows, n: inputWidth, k: output, a: dy, lda: output, b: p.baseAddress! + layout[weight].lowerBound,
                 ldb: inputWidth, c: &dx, ldc: inputWidth)
        }
        return dx
    }

    /// Inverted dropout: kept units are scaled by 1/(1−p) so inference needs no rescaling. Returns the output
    /// and the per-unit scale (empty when dropout is off).
    static func dropout(_ x: [Float], rate: Float, rng: inout SeededGenerator?) -> ([Float], [Float]) {
        guard rate > 0, rng != nil else { return (x, []) }
        let keep = 1 / (1 - rate)
        let mask = x.indices.map { _ in rng!.unit() < rate ? Float(0) : keep }
        return (zip(x, mask).map(*), mask)
    }
}
