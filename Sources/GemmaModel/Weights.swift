import Foundation
import ModelFormats

/// Where the transformer's weights come from: a safetensors checkpoint now, GGUF later. Names are the
/// Hugging Face keys relative to the text model ("layers.3.self_attn.q_proj.weight").
public protocol WeightProvider: Sendable {
    /// The tensor as Float, checked against `shape`; errors name the file and the tensor.
    func floats(_ name: String, shape: [Int]) throws(FormatError) -> FloatBuffer
    func contains(_ name: String) -> Bool
}

/// Safetensors weights of a Gemma text model, whatever prefix its architecture class saved them under
/// (`Gemma3TextModel`: none; `*ForCausalLM`: "model."; Gemma 3 multimodal: "language_model.model." or
/// "model.language_model.").
public struct SafetensorsWeights: WeightProvider {
    public let checkpoint: SafetensorsCheckpoint
    public let prefix: String

    public init(_ checkpoint: SafetensorsCheckpoint) throws(FormatError) {
        self.checkpoint = checkpoint
        let anchor = "embed_tokens.weight"
        let candidates = checkpoint.tensorNames.filter { $0.hasSuffix(anchor) }.map { String($0.dropLast(anchor.count)) }
        guard let prefix = candidates.min(by: { $0.count < $1.count }) else {
            throw FormatError(file: checkpoint.location, item: anchor, message: "missing tensor (is this a Gemma checkpoint?)")
        }
        self.prefix = prefix
    }

    public init(url: URL) throws(FormatError) {
        try self.init(SafetensorsCheckpoint(url: url))
    }

    public func floats(_ name: String, shape: [Int]) throws(FormatError) -> FloatBuffer {
        try checkpoint.tensor(prefix + name, shape: shape).floats()
    }

    public func contains(_ name: String) -> Bool { checkpoint.contains(prefix + name) }
}
