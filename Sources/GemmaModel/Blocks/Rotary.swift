import EncoderKernels

/// Rotary position embeddings for both layer kinds: Gemma 3 gives sliding and full layers different bases
/// (and full layers an optional linear scaling); Gemma 1 and 2 use one base for both.
public struct RotaryEmbedding: Sendable {
    private var full: RopeTable
    private var sliding: RopeTable

    public init(config: GemmaConfig) {
        // Tables grow on demand; 8,192 positions cover every checkpoint's usual inputs without regrowing.
        let positions = min(config.maxPositionEmbeddings, 8192)
        full = RopeTable(headDim: config.headDim, theta: config.ropeFull.theta,
                         linearFactor: config.ropeFull.linearFactor, positions: positions)
        sliding = RopeTable(headDim: config.headDim, theta: config.ropeSliding.theta,
                            linearFactor: config.ropeSliding.linearFactor, positions: positions)
    }

    /// A copy whose tables cover `length` positions (the shared tables stay immutable across threads).
    public func covering(_ length: Int) -> RotaryEmbedding {
        var copy = self
        copy.full.grow(to: length)
        copy.sliding.grow(to: length)
        return copy
    }

    public func table(for type: LayerType) -> RopeTable { type == .sliding ? sliding : full }
}
