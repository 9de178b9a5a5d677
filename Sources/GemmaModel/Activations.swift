import Foundation

/// The tensors of one layer's forward that a backward pass reads, copied out only when a caller asks for them
/// (`GemmaTransformer.forward(_:mode:saving:)`); inference never pays for them. All row-major over the
/// packed tokens of the batch.
public final class LayerActivations: @unchecked Sendable {
    public enum Slot: String, CaseIterable, Sendable {
        /// (T, C) the residual stream entering the layer.
        case input
        /// (T, C) the attention branch's normed input.
        case attentionInput
        /// (T, q + 2kv) Q|K|V straight from the projection, before the Q/K norms (kept only when they exist).
        case projectedQKV
        /// (T, q + 2kv) Q|K|V as attention reads them (after the Q/K norms and RoPE).
        case queryKeyValue
        /// (T, q) attention output before the O projection.
        case attentionOutput
        /// (T, C) the O projection's output before the attention output norm.
        case attentionBranch
        /// (T, C) the residual stream after the attention branch.
        case midResidual
        /// (T, C) the MLP branch's normed input.
        case mlpInput
        /// (T, 2I) gate|up before the activation.
        case gateUp
        /// (T, C) the down projection's output before the MLP output norm.
        case mlpBranch
    }

    // Written by one forward call on one thread, read after it returns.
    private var tensors: [Slot: [Float]] = [:]

    public init() {}

    public subscript(slot: Slot) -> [Float]? { tensors[slot] }

    func keep(_ slot: Slot, _ values: UnsafePointer<Float>, count: Int) {
        tensors[slot] = Array(UnsafeBufferPointer(start: values, count: count))
    }
}

/// Everything a forward pass kept for a backward pass: each layer's tensors and the input of the final norm.
public final class ForwardActivations: @unchecked Sendable {
    public let layers: [LayerActivations]
    /// (T, C) the residual stream entering the final norm.
    public internal(set) var finalInput: [Float] = []

    public init(layers: Int) {
        self.layers = (0..<layers).map { _ in LayerActivations() }
    }
}
