import CKernels
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

    /// One token's heads in one pass: Gemma 3's per-head RMS norm (when `scale`, the norm's (1 + w), is given),
    /// then RoPE at `position` — the per-token form of `normalizeAndRotate`, for rows whose positions are not
    /// their places in a packed batch (a decoder's steps).
    public func normalizeAndApply(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int,
                                  scale: UnsafePointer<Float>?, eps: Float) {
        let half = headDim / 2
        cosTable.withUnsafeBufferPointer { c in
            sinTable.withUnsafeBufferPointer { s in
                ck_norm_rope(x, heads, headDim, scale, eps, c.baseAddress! + position * half, s.baseAddress! + position * half, 1)
            }
        }
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
        cosTable.withUnsafeBufferPointer { c in
            sinTable.withUnsafeBufferPointer { s in
                ck_norm_rope(x, heads, headDim, nil, 0, c.baseAddress! + position * half, s.baseAddress! + position * half,
                             direction)
            }
        }
    }

    /// Every token row of a packed batch in one pass: Gemma 3's per-head RMS norms of the queries and keys
    /// (when their scales are given), then RoPE at the token's position within its sequence — where a norm
    /// pass and a rotation pass each streamed the rows. rows: tokens × stride, the queries' heads at column 0,
    /// the keys' at `keyOffset`; `offsets` are the sequences' first rows (and the end). Rows are split across
    /// `threads` cores.
    public func normalizeAndRotate(_ rows: UnsafeMutablePointer<Float>, offsets: [Int], stride: Int,
                                   queryHeads: Int, keyHeads: Int, keyOffset: Int,
                                   queryScale: UnsafePointer<Float>?, keyScale: UnsafePointer<Float>?, eps: Float,
                                   threads: Int) {
        let tokens = offsets.last ?? 0, half = headDim / 2, hd = headDim
        guard tokens > 0 else { return }
        precondition(offsets.indices.dropFirst().allSatisfy { offsets[$0] - offsets[$0 - 1] <= positions },
                     "RoPE tables cover \(positions) positions")
        // Under about 64 rows the dispatch costs more than the pass.
        let parts = tokens >= 64 ? max(1, min(threads, tokens / 32)) : 1
        cosTable.withUnsafeBufferPointer { c in
            sinTable.withUnsafeBufferPointer { s in
                nonisolated(unsafe) let rows = rows, cos = c.baseAddress!, sin = s.baseAddress!
                nonisolated(unsafe) let queryScale = queryScale, keyScale = keyScale
                parallelFor(parts) { part in
                    let first = tokens * part / parts, end = tokens * (part + 1) / parts
                    // The sequence holding `first`: the last offset at or before it.
                    var sequence = 0, lo = 0, hi = offsets.count - 1
                    while lo <= hi {
                        let mid = (lo + hi) / 2
                        if offsets[mid] <= first { sequence = mid; lo = mid + 1 } else { hi = mid - 1 }
                    }
                    for i in first..<end {
                        while offsets[sequence + 1] <= i { sequence += 1 }
                        let p = i - offsets[sequence], row = rows + i * stride
                        ck_norm_rope(row, queryHeads, hd, queryScale, eps, cos + p * half, sin + p * half, 1)
                        ck_norm_rope(row + keyOffset, keyHeads, hd, keyScale, eps, cos + p * half, sin + p * half, 1)
                    }
                }
            }
        }
    }
}
