import EncoderKernels

/// How a text's token states become one vector: the one list of pooling methods for embedding pipelines
/// (sentence-transformers' modes), index builds and task heads. Raw values are the names configs store.
public enum Pooling: String, Codable, Sendable, CaseIterable {
    case mean, first, last, max
    /// A learned query per head attends over the token states (a trained head's parameters).
    case attention
    /// sentence-transformers' sum / √length.
    case meanSqrtLen = "mean_sqrt_len_tokens"
    /// sentence-transformers' mean weighted by position (1, 2, …, L).
    case weightedMean = "weightedmean"

    /// Whether the method needs learned parameters (only a trained head can pool this way).
    public var isLearned: Bool { self == .attention }

    /// Pools tokens `used` of one sequence's states x (length × d) into out (d). `first` is token 0 and `last`
    /// the final token whatever `used` says, as sentence-transformers does with include_prompt = false; an
    /// empty selection gives zeros (mean, last) or −1e9 (max), sentence-transformers' padding values.
    /// Returns, for max, the row each output came from (what its backward routes the gradient to).
    @discardableResult
    public func pool(_ x: UnsafePointer<Float>, length: Int, dimension d: Int, used: Range<Int>,
                     out: UnsafeMutablePointer<Float>) -> [Int32] {
        precondition(!isLearned, "attention pooling takes a head's parameters: use AttentionPooling")
        switch self {
        case .first:
            if length > 0 { out.update(from: x, count: d) } else { out.update(repeating: 0, count: d) }
        case .last:
            if used.isEmpty { out.update(repeating: 0, count: d) } else { out.update(from: x + (length - 1) * d, count: d) }
        case .max:
            var argmax = [Int32](repeating: 0, count: d)
            out.update(repeating: used.isEmpty ? -1e9 : -.infinity, count: d)
            for t in used {
                let row = x + t * d
                for i in 0..<d where row[i] > out[i] { out[i] = row[i]; argmax[i] = Int32(t) }
            }
            return argmax
        case .mean, .meanSqrtLen:
            out.update(repeating: 0, count: d)
            for t in used { addInPlace(out, x + t * d, count: d) }
            // torch.clamp(sum_mask, min=1e-9) keeps an empty selection at zero instead of NaN.
            let n = Swift.max(Float(used.count), 1e-9)
            let divisor = self == .mean ? n : n.squareRoot()
            for i in 0..<d { out[i] /= divisor }
        case .weightedMean:
            out.update(repeating: 0, count: d)
            var total: Float = 0
            for t in used {
                let w = Float(t + 1)
                total += w
                let row = x + t * d
                for i in 0..<d { out[i] += row[i] * w }
            }
            let divisor = Swift.max(total, 1e-9)
            for i in 0..<d { out[i] /= divisor }
        case .attention:
            preconditionFailure("checked above")
        }
        return []
    }

    /// The backward of `pool`: adds dL/d(out) (d) to the token rows of dx (length × d) each output came from.
    /// `argmax` is what `pool` returned for max.
    public func poolBackward(gradOut g: UnsafePointer<Float>, length: Int, dimension d: Int, used: Range<Int>,
                             argmax: [Int32], gradIn dx: UnsafeMutablePointer<Float>) {
        precondition(!isLearned, "attention pooling's backward is AttentionPooling.backward")
        switch self {
        case .first:
            if length > 0 { addInPlace(dx, g, count: d) }
        case .last:
            if !used.isEmpty { addInPlace(dx + (length - 1) * d, g, count: d) }
        case .max:
            guard !used.isEmpty else { return }
            for i in 0..<d { dx[Int(argmax[i]) * d + i] += g[i] }
        case .mean, .meanSqrtLen:
            let n = Swift.max(Float(used.count), 1e-9)
            let inv = 1 / (self == .mean ? n : n.squareRoot())
            for t in used { for i in 0..<d { dx[t * d + i] += g[i] * inv } }
        case .weightedMean:
            let total = Swift.max(Float(used.reduce(0) { $0 + $1 + 1 }), 1e-9)
            for t in used {
                let w = Float(t + 1) / total
                for i in 0..<d { dx[t * d + i] += g[i] * w }
            }
        case .attention:
            preconditionFailure("checked above")
        }
    }
}
