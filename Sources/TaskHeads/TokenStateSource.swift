import GemmaEncoder

extension Optional where Wrapped == TokenStateCache {
    /// The states of `request` through the cache when there is one (read, or computed and saved), else
    /// computed: the one place heads, predictors and rerankers decide between the two.
    public func states(_ request: TokenStateCache.Request, encoder: TextEncoder,
                       progress: ((Int, Int) -> Void)? = nil) throws -> TokenStateSet {
        if let cache = self { return try cache.states(request, encoder: encoder, progress: progress).states }
        return try TokenStateCache.compute(request, encoder: encoder, progress: progress)
    }
}

extension TokenStateCache {
    /// The states without a cache (still in chunks, with progress).
    public static func compute(_ request: Request, encoder: TextEncoder, chunk: Int = 512,
                               progress: ((Int, Int) -> Void)? = nil) throws -> TokenStateSet {
        let inputs = request.inputs(encoder)
        var set = TokenStateSet(dimension: encoder.hiddenSize)
        progress?(0, inputs.count)
        for start in stride(from: 0, to: inputs.count, by: chunk) {
            let part = Array(inputs[start..<min(start + chunk, inputs.count)])
            for states in try encoder.tokenStates(part, attention: request.attention) { set.append(states) }
            progress?(set.count, inputs.count)
        }
        return set
    }
}
