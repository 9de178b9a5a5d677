import Foundation

/// Rotary position embedding tables for one base: cos/sin of position × inverse frequency, computed in
/// float32 in the same order as transformers' default RoPE so angles at position 2,047 round alike.
public struct RopeTable: Sendable {
    public let headDim: Int
    public private(set) var positions: Int
    private var cosTable: [Float]   // positions × headDim/2
    private var sinTable: [Float]
    private let inverseFrequencies: [Float]

    public init(headDim: Int, theta: Double, linearFactor: Double = 1, positions: Int) {
        self.headDim = headDim
        let half = headDim / 2
        // inv_freq = 1 / (base ** (arange(0, dim, 2).float() / dim)), then / factor for linear scaling.
        inverseFrequencies = (0..<half).map { i in
            let exponent = Float(2 * i) / Float(headDim)
            let inv = 1 / powf(Float(theta), exponent)
            return linearFactor == 1 ? inv : inv / Float(linearFactor)
        }
        self.positions = 0
        cosTable = []
        sinTable = []
        grow(to: positions)
    }

    /// Extends the tables to cover `count` positions.
    public mutating func grow(to count: Int) {
        guard count > positions else { return }
        let half = headDim / 2
        cosTable.reserveCapacity(count * half)
        sinTable.reserveCapacity(count * half)
        for p in positions..<count {
            for i in 0..<half {
                let angle = Float(p) * inverseFrequencies[i]
                cosTable.append(cosf(angle))
                sinTable.append(sinf(angle))
            }
        }
        positions = count
    }

    /// Rotates `heads` vectors of one token at position `position` in place (rotate-half layout:
    /// dimension i pairs with i + headDim/2). `x` holds heads × headDim contiguous floats.
    @inline(__always)
    public func apply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        rotate(x, heads: heads, position: position, direction: 1)
    }

    /// The backward of `apply`: the transpose of a rotation is the rotation by −angle, applied to the gradient.
    @inline(__always)
    public func applyInverse(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        rotate(x, heads: heads, position: position, direction: -1)
    }

    /// Rotation by `direction` · angle (sin is odd, so −angle negates the sines only).
    @inline(__always)
    private func rotate(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int, direction: Float) {
        let half = headDim / 2
        cosTable.withUnsafeBufferPointer { cosBuf in
            sinTable.withUnsafeBufferPointer { sinBuf in
                let c = cosBuf.baseAddress! + position * half
                let s = sinBuf.baseAddress! + position * half
                for h in 0..<heads {
                    let v = x + h * headDim
                    for i in 0..<half {
                        let x1 = v[i], x2 = v[i + half], sine = direction * s[i]
                        v[i] = x1 * c[i] - x2 * sine
                        v[i + half] = x2 * c[i] + x1 * sine
                    }
                }
            }
        }
    }
}
