import EncoderKernels
import Foundation
import ModelFormats

public enum ModelError: Error, CustomStringConvertible, Equatable {
    case tokenOutOfRange(sequence: Int, position: Int, id: Int32, vocabularySize: Int)
    case paddingNotRight(sequence: Int)
    case shapeMismatch(String)

    public var description: String {
        switch self {
        case let .tokenOutOfRange(s, p, id, v):
            return "sequence \(s), position \(p): token id \(id) is outside the vocabulary (0..<\(v))"
        case let .paddingNotRight(s):
            return "sequence \(s): attention mask must be ones followed by zeros (right padding)"
        case let .shapeMismatch(m):
            return m
        }
    }
}

/// Final hidden states (after the last norm) of a batch, packed without padding: sequence i owns rows
/// offsets[i] ..< offsets[i+1] of a (tokens × hiddenSize) row-major matrix.
public struct HiddenStates: Sendable {
    public let hiddenSize: Int
    public let offsets: [Int]
    public let values: [Float]

    public var count: Int { offsets.count - 1 }
    public func length(_ i: Int) -> Int { offsets[i + 1] - offsets[i] }

    /// Row-major (length × hiddenSize) states of sequence i.
    public func sequence(_ i: Int) -> ArraySlice<Float> {
        values[(offsets[i] * hiddenSize)..<(offsets[i + 1] * hiddenSize)]
    }
}

/// What the encoder API needs from a model: token ids in, one hidden state per token out. Every
/// architecture the registry loads conforms; nothing above this module sees a concrete model type.
public protocol EncoderModel: AnyObject, Sendable {
    /// Width of each token's hidden state.
    var hiddenSize: Int { get }
    var vocabularySize: Int { get }
    /// Longest input the checkpoint was trained for (`max_position_embeddings`).
    var maxPositions: Int { get }
    /// How the Linear weights are stored at run time.
    var precision: WeightPrecision { get }
    /// Bytes of the weights per storage format (quantized GGUF weights stay quantized).
    var weightBytes: [WeightFormat: Int] { get }
    /// Floating-point operations to encode one sequence of `length` tokens (for benchmark ratios).
    func flops(length: Int, mode: AttentionMode) -> Double
    /// Runs unpadded sequences of token ids on up to `threads` cores; returns the final hidden state of every token.
    func forward(_ sequences: [[Int32]], mode: AttentionMode, threads: Int) throws(ModelError) -> HiddenStates
    /// Time per operation of the forward calls, for models that keep one.
    var profile: OperationProfile? { get }
}

extension EncoderModel {
    public var profile: OperationProfile? { nil }

    /// One core: what a batch running beside other batches uses.
    public func forward(_ sequences: [[Int32]], mode: AttentionMode) throws(ModelError) -> HiddenStates {
        try forward(sequences, mode: mode, threads: 1)
    }

    /// Runs a right-padded batch: `attentionMask[i]` is ones for real tokens, then zeros.
    public func forward(inputIds: [[Int32]], attentionMask: [[Int32]], mode: AttentionMode) throws(ModelError) -> HiddenStates {
        var sequences: [[Int32]] = []
        for (s, (ids, mask)) in zip(inputIds, attentionMask).enumerated() {
            let real = mask.prefix { $0 != 0 }.count
            guard mask.count == ids.count, !mask.dropFirst(real).contains(where: { $0 != 0 }) else {
                throw .paddingNotRight(sequence: s)
            }
            sequences.append(Array(ids.prefix(real)))
        }
        return try forward(sequences, mode: mode)
    }
}
