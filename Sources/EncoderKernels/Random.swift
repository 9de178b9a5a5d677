import Foundation

/// SplitMix64: a small, fast generator whose sequence is fixed by its seed, so a training run is repeatable.
/// A numeric primitive next to the kernels: dropout masks, weight initialization and synthetic benchmark
/// vectors all draw from it.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A uniform Float in [0, 1).
    public mutating func unit() -> Float { Float(next() >> 40) * 0x1p-24 }

    /// A standard normal sample (Box–Muller).
    public mutating func normal() -> Float {
        let u1 = max(unit(), .leastNonzeroMagnitude), u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}
