import GemmaEncoder

/// The vectors a head with parameter-free pooling actually sees: each text's final token states pooled over
/// every token (prompt and special tokens included, as `Pooler` does), with no Dense layers and no
/// normalization. Baselines that must be compared fairly with a head (scripts/baseline-logreg) and the
/// convex fit of linear heads both start from these.
public enum HeadFeatures {
    /// texts × dimension, row-major.
    public static func pooled(_ states: TokenStateSet, pooling: Pooling) throws(HeadError) -> [Float] {
        guard !pooling.isLearned else {
            throw .invalidArchitecture("\(pooling.rawValue) pooling is learned with the head: its input has no fixed vector")
        }
        let d = states.dimension
        var out = [Float](repeating: 0, count: states.count * d)
        states.values.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<states.count {
                    let t = states.tokens(i)
                    pooling.pool(x.baseAddress! + states.offsets[i] * d, length: t, dimension: d, used: 0..<t,
                                 out: o.baseAddress! + i * d)
                }
            }
        }
        return out
    }
}
