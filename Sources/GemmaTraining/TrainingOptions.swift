import Foundation

/// Dropout inside the encoder, as the Gemma Encoder paper studies it: on the attention weights, and on each
/// residual branch (after attention and after the MLP) before it joins the stream. Off at inference; rate 0
/// is an exact no-op.
public struct EncoderDropout: Sendable, Equatable, Codable {
    public var attention: Float
    public var residual: Float

    public init(attention: Float = 0, residual: Float = 0) {
        self.attention = attention
        self.residual = residual
    }

    public static let none = EncoderDropout()
}

/// What of the encoder a run trains (`--finetune none | all | top:K | lora:R`).
public enum FineTuneScope: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The frozen encoder: only a head trains (its token states can be cached).
    case none
    /// Every layer and the final norm.
    case all
    /// The last K layers and the final norm; the layers below stay frozen (their output can be cached).
    case top(Int)
    /// Rank-r adapters with scaling alpha / r on `targets`; the base weights stay frozen.
    case lora(rank: Int, alpha: Float, targets: [LoRATarget])

    public var description: String {
        switch self {
        case .none: "none"
        case .all: "all"
        case let .top(k): "top:\(k)"
        case let .lora(r, _, _): "lora:\(r)"
        }
    }

    /// Parses `none`, `all`, `top:K`, `lora:R` (alpha and targets come from their own flags).
    public init(parsing text: String, loraAlpha: Float? = nil, loraTargets: [LoRATarget] = LoRATarget.allCases) throws(TrainingError) {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        switch (parts.first, parts.count) {
        case ("none", 1): self = .none
        case ("all", 1): self = .all
        case ("top", 2):
            guard let k = Int(parts[1]), k > 0 else { throw .invalidOption("--finetune top:K needs a layer count K ≥ 1, got '\(text)'") }
            self = .top(k)
        case ("lora", 2):
            guard let r = Int(parts[1]), r > 0 else { throw .invalidOption("--finetune lora:R needs a rank R ≥ 1, got '\(text)'") }
            guard !loraTargets.isEmpty else { throw .invalidOption("--lora-targets names no projection") }
            self = .lora(rank: r, alpha: loraAlpha ?? Float(2 * r), targets: loraTargets)
        default:
            throw .invalidOption("--finetune takes none, all, top:K or lora:R, got '\(text)'")
        }
    }
}

public enum TrainingError: Error, Equatable, CustomStringConvertible {
    case invalidOption(String)
    case shapeMismatch(String)

    public var description: String {
        switch self {
        case let .invalidOption(m), let .shapeMismatch(m): m
        }
    }
}
