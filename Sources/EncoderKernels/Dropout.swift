import Foundation

/// Dropout whose keep/drop decision for element `index` of stream `stream` is a pure function of
/// (seed, stream, index): the forward, the backward and an activation-checkpointing recompute draw the same
/// mask without storing it, and the result does not depend on how work is split across cores.
public struct DropoutMask: Sendable, Equatable {
    /// Probability of dropping an element; 0 turns dropout into an exact no-op.
    public let rate: Float
    public let seed: UInt64
    /// 1 / (1 − rate): kept elements are scaled so the expectation is unchanged (PyTorch's inverted dropout).
    public let keptScale: Float
    private let threshold: UInt64

    public init(rate: Float, seed: UInt64) {
        precondition(rate >= 0 && rate < 1, "a dropout rate is in [0, 1)")
        self.rate = rate
        self.seed = seed
        keptScale = 1 / (1 - rate)
        threshold = UInt64(Double(rate) * 0x1p53)
    }

    public var isActive: Bool { rate > 0 }

    @inline(__always)
    static func mix(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The multiplier of element `index` in `stream`: 0 (dropped) or `keptScale`.
    @inline(__always)
    public func factor(stream: UInt64, index: UInt64) -> Float {
        let bits = DropoutMask.mix(seed ^ DropoutMask.mix(stream &+ DropoutMask.mix(index))) >> 11
        return bits < threshold ? 0 : keptScale
    }

    /// x[i] *= factor(stream, first + i): the same call is the forward and, on the gradient, the backward.
    public func apply(_ x: UnsafeMutablePointer<Float>, count: Int, stream: UInt64, first: UInt64) {
        guard isActive else { return }
        for i in 0..<count { x[i] *= factor(stream: stream, index: first + UInt64(i)) }
    }
}
