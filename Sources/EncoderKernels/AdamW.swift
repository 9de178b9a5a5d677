import Foundation

/// One AdamW step (PyTorch's formulation: decoupled weight decay, bias-corrected moments) over `count`
/// values: the one implementation behind the head's and the encoder's optimizers. `step` counts from 1.
public func adamWUpdate(_ values: UnsafeMutablePointer<Float>, gradients g: UnsafePointer<Float>,
                        m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int,
                        step: Int, learningRate lr: Float, weightDecay: Float, beta1: Float = 0.9, beta2: Float = 0.999,
                        epsilon: Float = 1e-8) {
    let c1 = 1 - pow(beta1, Float(step)), c2 = 1 - pow(beta2, Float(step))
    let decay = lr * weightDecay
    for i in 0..<count {
        if weightDecay != 0 { values[i] -= decay * values[i] }
        m[i] = beta1 * m[i] + (1 - beta1) * g[i]
        v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
        values[i] -= lr * (m[i] / c1) / ((v[i] / c2).squareRoot() + epsilon)
    }
}
