import EncoderKernels
import Foundation
import GemmaEncoder

/// What a head's pooling keeps for its backward pass: the max rows, or attention pooling's weights and sums.
struct PoolingCache {
    var argmax: [Int32] = []
    var attention: AttentionPooling.Saved?
}

/// The head's pooling step: the library's one pooling implementation (`Pooling`, `AttentionPooling`) over one
/// text's token states, with attention pooling's parameters taken from the head's flat parameter vector.
struct Pooler {
    let architecture: HeadArchitecture

    var d: Int { architecture.inputDimension }
    private var attention: AttentionPooling { AttentionPooling(heads: architecture.attentionHeads, dimension: d) }

    // x: (T, d); out: (d)
    func forward(_ x: UnsafePointer<Float>, tokens t: Int, parameters p: UnsafePointer<Float>, layout: ParameterLayout,
                 out: UnsafeMutablePointer<Float>) -> PoolingCache {
        guard architecture.pooling.isLearned else {
            return PoolingCache(argmax: architecture.pooling.pool(x, length: t, dimension: d, used: 0..<t, out: out))
        }
        return PoolingCache(attention: attention.forward(x, tokens: t, parameters: parameters(p, layout), out: out))
    }

    /// Accumulates the parameter gradients of pooling (attention only: the other methods have none) given
    /// dL/d(out), and with `gradIn` adds dL/dx to it (T, d).
    func backward(_ x: UnsafePointer<Float>, tokens t: Int, parameters p: UnsafePointer<Float>, layout: ParameterLayout,
                  cache: PoolingCache, gradOut g: UnsafePointer<Float>, grads: UnsafeMutablePointer<Float>,
                  gradIn: UnsafeMutablePointer<Float>?) {
        guard let saved = cache.attention else {
            if let gradIn {
                architecture.pooling.poolBackward(gradOut: g, length: t, dimension: d, used: 0..<t, argmax: cache.argmax,
                                                  gradIn: gradIn)
            }
            return
        }
        let gradients = AttentionPooling.Gradients(
            query: grads + layout["pool.query"].lowerBound, keyWeight: grads + layout["pool.key.weight"].lowerBound,
            valueWeight: grads + layout["pool.value.weight"].lowerBound, valueBias: grads + layout["pool.value.bias"].lowerBound)
        attention.backward(x, tokens: t, parameters: parameters(p, layout), saved: saved, gradOut: g, gradients: gradients,
                           gradIn: gradIn)
    }

    private func parameters(_ p: UnsafePointer<Float>, _ layout: ParameterLayout) -> AttentionPooling.Parameters {
        AttentionPooling.Parameters(query: p + layout["pool.query"].lowerBound, keyWeight: p + layout["pool.key.weight"].lowerBound,
                                    valueWeight: p + layout["pool.value.weight"].lowerBound,
                                    valueBias: p + layout["pool.value.bias"].lowerBound)
    }
}
