import Foundation
import ModelFormats

/// sentence-transformers' `1_Pooling/config.json`: the enabled methods (outputs concatenated in
/// sentence-transformers' order: cls, max, mean, mean_sqrt_len, weightedmean, lasttoken), the token
/// dimension, and whether prompt tokens take part.
public struct PoolingConfig: Sendable, Equatable {
    public var modes: [Pooling]
    public var dimension: Int
    /// false: prompt tokens (and `<bos>`) do not take part in pooling.
    public var includePrompt: Bool

    public init(modes: [Pooling], dimension: Int, includePrompt: Bool = true) {
        self.modes = modes
        self.dimension = dimension
        self.includePrompt = includePrompt
    }

    public var outputDimension: Int { modes.count * dimension }

    /// Either schema that exists: the legacy `pooling_mode_*` booleans with `word_embedding_dimension`, or the
    /// newer `pooling_mode` string with `embedding_dimension`.
    public static func load(_ url: URL) throws(EncoderError) -> PoolingConfig {
        let file: PoolingConfigFile
        do throws(FormatError) { file = try JSONFile.decode(PoolingConfigFile.self, from: url) } catch { throw EncoderError(error) }
        return try file.resolve(path: url.path)
    }

    /// Pools one sequence's token states (length × dimension, row-major). Tokens before `firstToken` are
    /// excluded (include_prompt = false), except that first (cls) always takes token 0 as sentence-transformers does.
    public func pool(_ states: ArraySlice<Float>, length: Int, firstToken: Int = 0) -> [Float] {
        let d = dimension
        precondition(states.count == length * d)
        let used = (includePrompt ? 0 : min(firstToken, length))..<length
        var out = [Float](repeating: 0, count: outputDimension)
        states.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { o in
                for (i, mode) in modes.enumerated() {
                    mode.pool(x.baseAddress!, length: length, dimension: d, used: used, out: o.baseAddress! + i * d)
                }
            }
        }
        return out
    }
}

/// The file as written by either sentence-transformers generation; every field optional, checked in `resolve`.
private struct PoolingConfigFile: Decodable {
    var word_embedding_dimension: Int?
    var embedding_dimension: Int?
    var pooling_mode: String?
    var pooling_mode_cls_token: Bool?
    var pooling_mode_max_tokens: Bool?
    var pooling_mode_mean_tokens: Bool?
    var pooling_mode_mean_sqrt_len_tokens: Bool?
    var pooling_mode_weightedmean_tokens: Bool?
    var pooling_mode_lasttoken: Bool?
    var include_prompt: Bool?

    /// sentence-transformers' names for each method.
    static let names: [String: Pooling] = [
        "cls": .first, "max": .max, "mean": .mean, "mean_sqrt_len_tokens": .meanSqrtLen,
        "mean_sqrt_len": .meanSqrtLen, "weightedmean": .weightedMean, "lasttoken": .last,
    ]

    func resolve(path: String) throws(EncoderError) -> PoolingConfig {
        var modes: [Pooling] = []
        if let name = pooling_mode {
            guard let mode = Self.names[name] else {
                throw .invalidConfig(file: path, field: "pooling_mode",
                                     "unknown mode '\(name)' (cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken)")
            }
            modes = [mode]
        } else {
            let flags: [(Bool?, Pooling)] = [
                (pooling_mode_cls_token, .first), (pooling_mode_max_tokens, .max), (pooling_mode_mean_tokens, .mean),
                (pooling_mode_mean_sqrt_len_tokens, .meanSqrtLen), (pooling_mode_weightedmean_tokens, .weightedMean),
                (pooling_mode_lasttoken, .last),
            ]
            modes = flags.filter { $0.0 == true }.map(\.1)
        }
        guard !modes.isEmpty else { throw .invalidConfig(file: path, field: "pooling_mode", "no pooling mode is enabled") }
        guard let dimension = embedding_dimension ?? word_embedding_dimension else {
            throw .invalidConfig(file: path, field: "word_embedding_dimension", "missing field")
        }
        // The dimension sizes every pooled vector (times the modes): bounded so a crafted file cannot overflow it.
        guard (1...(1 << 20)).contains(dimension) else {
            throw .invalidConfig(file: path, field: embedding_dimension == nil ? "word_embedding_dimension" : "embedding_dimension",
                                 "\(dimension) is not a dimension (1 to 1048576)")
        }
        return PoolingConfig(modes: modes, dimension: dimension, includePrompt: include_prompt ?? true)
    }
}
