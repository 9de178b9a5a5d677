import Foundation
import ModelFormats

/// The Gemma generation a checkpoint belongs to; it decides norms, soft-capping, Q/K norms and mask rules.
public enum GemmaFamily: String, Sendable, Codable {
    case gemma, gemma2, gemma3
}

public enum LayerType: String, Sendable, Codable {
    case full = "full_attention"
    case sliding = "sliding_attention"
}

public enum Activation: String, Sendable, Codable {
    /// transformers' gelu_pytorch_tanh / gelu_new: the tanh approximation Gemma is trained with.
    case geluTanh
    /// Exact erf GELU.
    case gelu
}

/// RoPE for one layer type: base frequency and linear position scaling (Gemma 3 4B+ global layers).
public struct RopeParameters: Sendable, Equatable, Codable {
    public var theta: Double
    public var linearFactor: Double

    public init(theta: Double, linearFactor: Double = 1) {
        self.theta = theta
        self.linearFactor = linearFactor
    }
}

/// A Gemma-family text config resolved to what the forward pass needs, whichever JSON style it came from.
public struct GemmaConfig: Sendable, Equatable, Codable {
    public var family: GemmaFamily
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var numLayers: Int
    public var numHeads: Int
    public var numKVHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    /// Queries are scaled by queryPreAttnScalar^-0.5.
    public var queryPreAttnScalar: Double
    public var attnLogitSoftcapping: Double?
    public var slidingWindow: Int?
    public var layerTypes: [LayerType]
    public var ropeFull: RopeParameters
    public var ropeSliding: RopeParameters
    /// The checkpoint's own choice (EmbeddingGemma: true); nil when the config says nothing.
    public var useBidirectionalAttention: Bool?
    public var hiddenActivation: Activation
    public var maxPositionEmbeddings: Int
    public var padTokenId: Int?
    public var bosTokenId: Int?
    public var eosTokenId: Int?
    /// Set when the stack is one half of a T5Gemma checkpoint (`T5GemmaConfig`): the variant decides the
    /// encoder's sliding-window rule. nil for a decoder-only Gemma.
    public var t5Gemma: T5GemmaVariant?
    /// T5Gemma 2: the token whose embedding is the checkpoint's own `eoi_embedding` (taken as it is, not scaled).
    public var eoiTokenIndex: Int?

    public init(family: GemmaFamily, vocabSize: Int, hiddenSize: Int, intermediateSize: Int, numLayers: Int,
                numHeads: Int, numKVHeads: Int, headDim: Int, rmsNormEps: Float, queryPreAttnScalar: Double,
                attnLogitSoftcapping: Double?, slidingWindow: Int?, layerTypes: [LayerType],
                ropeFull: RopeParameters, ropeSliding: RopeParameters, useBidirectionalAttention: Bool?,
                hiddenActivation: Activation, maxPositionEmbeddings: Int,
                padTokenId: Int? = 0, bosTokenId: Int? = 2, eosTokenId: Int? = 1) {
        self.family = family
        self.vocabSize = vocabSize
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numLayers = numLayers
        self.numHeads = numHeads
        self.numKVHeads = numKVHeads
        self.headDim = headDim
        self.rmsNormEps = rmsNormEps
        self.queryPreAttnScalar = queryPreAttnScalar
        self.attnLogitSoftcapping = attnLogitSoftcapping
        self.slidingWindow = slidingWindow
        self.layerTypes = layerTypes
        self.ropeFull = ropeFull
        self.ropeSliding = ropeSliding
        self.useBidirectionalAttention = useBidirectionalAttention
        self.hiddenActivation = hiddenActivation
        self.maxPositionEmbeddings = maxPositionEmbeddings
        self.padTokenId = padTokenId
        self.bosTokenId = bosTokenId
        self.eosTokenId = eosTokenId
    }
}

extension GemmaConfig {
    /// The most layers a checkpoint may declare: far above any Gemma (62), low enough that a crafted count
    /// cannot make the per-layer tables huge.
    static let maxLayers = 4_096

    /// Size checks both loaders (config.json, GGUF metadata) make before anything is sized from the values:
    /// every product the model forms from them (projection widths, weight element counts) must fit in an
    /// Int, the layer count must be plausible, and a sliding window must be positive. A crafted file is an
    /// error naming the file, never an arithmetic trap.
    static func checkSizes(hidden: Int, intermediate: Int, layers: Int, heads: Int, kvHeads: Int, headDim: Int,
                           vocab: Int, slidingWindow: Int?, file: String) throws(FormatError) {
        guard layers <= maxLayers else {
            throw FormatError(file: file, item: "layers", message: "\(layers) layers (more than \(maxLayers) is not a Gemma)")
        }
        if let slidingWindow, slidingWindow <= 0 {
            throw FormatError(file: file, item: "sliding_window", message: "\(slidingWindow) must be positive")
        }
        func product(_ factors: [Int]) -> Int? {
            factors.reduce(Int?(1)) { acc, f in acc.flatMap { a in let (p, o) = a.multipliedReportingOverflow(by: f); return o ? nil : p } }
        }
        guard heads < 1 << 24, kvHeads < 1 << 24, let width = product([heads + 2 * kvHeads, headDim]),
              product([width, hidden]) != nil, product([heads, headDim, hidden]) != nil,
              product([2, intermediate, hidden]) != nil, product([vocab, hidden]) != nil else {
            throw FormatError(file: file, message: "sizes too large to hold: hidden \(hidden), intermediate \(intermediate), heads \(heads) / \(kvHeads) of \(headDim), vocabulary \(vocab)")
        }
    }
}

// MARK: - How the families differ, stated once

extension GemmaFamily {
    /// Gemma 2 and 3 also normalize each branch's output before it joins the residual stream ("sandwich"
    /// norms: post_attention, pre_feedforward, post_feedforward); Gemma 1 normalizes branch inputs only.
    public var usesSandwichNorms: Bool { self != .gemma }
    /// Gemma 3 normalizes every query and key head (q_norm, k_norm) before RoPE.
    public var usesQueryKeyNorm: Bool { self == .gemma3 }

    /// The layer kinds when a checkpoint does not list them: every layer full (Gemma 1); sliding and full
    /// alternating from layer 0 (Gemma 2, transformers 4.x `is_sliding = not bool(layer_idx % 2)`); every
    /// `period`-th layer full, the rest sliding (Gemma 3, period 6 unless the checkpoint says otherwise).
    /// llama.cpp applies the same rules to GGUF files.
    public func defaultLayerTypes(count: Int, period: Int? = nil) -> [LayerType] {
        switch self {
        case .gemma: return Array(repeating: .full, count: count)
        case .gemma2: return (0..<count).map { $0 % 2 == 0 ? .sliding : .full }
        case .gemma3: return LayerType.everyNthFull(period ?? 6, count: count)
        }
    }
}

extension LayerType {
    /// Layers (i + 1) % period == 0 are full, the others sliding.
    public static func everyNthFull(_ period: Int, count: Int) -> [LayerType] {
        (0..<count).map { ($0 + 1) % period == 0 ? .full : .sliding }
    }
}

extension GemmaConfig {
    public var usesSandwichNorms: Bool { family.usesSandwichNorms }
    public var usesQueryKeyNorm: Bool { family.usesQueryKeyNorm }
}
