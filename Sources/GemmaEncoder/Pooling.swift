import Foundation

/// sentence-transformers' pooling modes; several may be enabled at once, their outputs concatenated in
/// this order (cls, max, mean, mean_sqrt_len, weightedmean, lasttoken), as `Pooling.forward` does.
public enum PoolingMode: String, Sendable, CaseIterable, Codable {
    case cls, max, mean
    case meanSqrtLen = "mean_sqrt_len_tokens"
    case weightedMean = "weightedmean"
    case lastToken = "lasttoken"
}

/// `1_Pooling/config.json`, in either of the two schemas that exist: the legacy `pooling_mode_*` booleans
/// with `word_embedding_dimension`, or the newer `pooling_mode` string with `embedding_dimension`.
public struct PoolingConfig: Sendable, Equatable {
    public var modes: [PoolingMode]
    public var dimension: Int
    /// false: prompt tokens (and `<bos>`) do not take part in pooling.
    public var includePrompt: Bool

    public init(modes: [PoolingMode], dimension: Int, includePrompt: Bool = true) {
        self.modes = modes
        self.dimension = dimension
        self.includePrompt = includePrompt
    }

    public var outputDimension: Int { modes.count * dimension }

    public static func load(_ url: URL) throws(EncoderError) -> PoolingConfig {
        let object = try readJSONObject(url)
        func flag(_ key: String) throws(EncoderError) -> Bool {
            guard let v = object[key] else { return false }
            guard let b = v as? Bool else { throw EncoderError.invalidConfig(file: url.path, field: key, "expected true or false") }
            return b
        }
        var modes: [PoolingMode] = []
        if let name = object["pooling_mode"] {
            guard let name = name as? String else {
                throw EncoderError.invalidConfig(file: url.path, field: "pooling_mode", "expected a string")
            }
            let aliases: [String: PoolingMode] = [
                "cls": .cls, "max": .max, "mean": .mean, "mean_sqrt_len_tokens": .meanSqrtLen,
                "mean_sqrt_len": .meanSqrtLen, "weightedmean": .weightedMean, "lasttoken": .lastToken,
            ]
            guard let mode = aliases[name] else {
                throw EncoderError.invalidConfig(file: url.path, field: "pooling_mode",
                                                 "unknown mode '\(name)' (cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken)")
            }
            modes = [mode]
        } else {
            let keys: [(String, PoolingMode)] = [
                ("pooling_mode_cls_token", .cls), ("pooling_mode_max_tokens", .max),
                ("pooling_mode_mean_tokens", .mean), ("pooling_mode_mean_sqrt_len_tokens", .meanSqrtLen),
                ("pooling_mode_weightedmean_tokens", .weightedMean), ("pooling_mode_lasttoken", .lastToken),
            ]
            for (key, mode) in keys where try flag(key) { modes.append(mode) }
        }
        guard !modes.isEmpty else {
            throw EncoderError.invalidConfig(file: url.path, field: "pooling_mode", "no pooling mode is enabled")
        }
        guard let dimension = (object["embedding_dimension"] ?? object["word_embedding_dimension"]) as? Int else {
            throw EncoderError.invalidConfig(file: url.path, field: "word_embedding_dimension", "missing field")
        }
        let includePrompt = (object["include_prompt"] as? Bool) ?? true
        return PoolingConfig(modes: modes, dimension: dimension, includePrompt: includePrompt)
    }

    /// Pools one sequence's token states (length × dimension, row-major). Tokens before `firstToken` are
    /// excluded (include_prompt = false), except that cls always takes token 0 as sentence-transformers does.
    public func pool(_ states: ArraySlice<Float>, length: Int, firstToken: Int = 0) -> [Float] {
        let d = dimension
        precondition(states.count == length * d)
        var out: [Float] = []
        out.reserveCapacity(outputDimension)
        let base = states.startIndex
        let first = includePrompt ? 0 : min(firstToken, length)
        let used = first..<length
        func row(_ t: Int) -> ArraySlice<Float> { states[(base + t * d)..<(base + (t + 1) * d)] }
        for mode in modes {
            switch mode {
            case .cls:
                out += length > 0 ? Array(row(0)) : Array(repeating: 0, count: d)
            case .max:
                // Padding and excluded tokens are −1e9 in sentence-transformers, so an all-negative column wins.
                var m = [Float](repeating: used.isEmpty ? -1e9 : -.infinity, count: d)
                for t in used { for (i, v) in row(t).enumerated() where v > m[i] { m[i] = v } }
                out += m
            case .mean, .meanSqrtLen:
                var sum = [Float](repeating: 0, count: d)
                for t in used { for (i, v) in row(t).enumerated() { sum[i] += v } }
                let n = Float(max(used.count, 0))
                // torch.clamp(sum_mask, min=1e-9) keeps an empty selection at zero instead of NaN.
                let divisor = mode == .mean ? max(n, 1e-9) : max(n, 1e-9).squareRoot()
                out += sum.map { $0 / divisor }
            case .weightedMean:
                // Weights are positions 1…L over the whole sequence, masked.
                var sum = [Float](repeating: 0, count: d)
                var total: Float = 0
                for t in used {
                    let w = Float(t + 1)
                    total += w
                    for (i, v) in row(t).enumerated() { sum[i] += v * w }
                }
                out += sum.map { $0 / max(total, 1e-9) }
            case .lastToken:
                out += used.isEmpty ? Array(repeating: 0, count: d) : Array(row(length - 1))
            }
        }
        return out
    }
}
