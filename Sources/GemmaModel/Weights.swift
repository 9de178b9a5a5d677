import EncoderKernels
import Foundation
import ModelFormats

/// How the transformer's Linear weights are stored at run time. Norms and embeddings stay f32; activations
/// are always f32. Lower precision is an option, never the default.
public enum WeightPrecision: String, Sendable, CaseIterable, Codable {
    case f32
    /// bfloat16: half the memory, f32 arithmetic on the converted values.
    case bf16
    /// 8-bit blocks of 32 values with an f16 scale (ggml's Q8_0) for the query, key, gate and up projections,
    /// bf16 for the value path (`storage(forLinear:)`): about 0.36 of f32's Linear bytes.
    case int8

    public var format: WeightFormat {
        switch self {
        case .f32: .f32
        case .bf16: .bf16
        case .int8: .q8_0
        }
    }

    /// The formats its Linear weights take (int8: Q8_0 and, for the value path, bf16), read off `storage(forLinear:)`.
    public var linearFormats: [WeightFormat] {
        let valuePath = storage(forLinear: "v_proj.weight").format
        return valuePath == format ? [format] : [format, valuePath]
    }

    /// The precision one Linear weight is stored in, by its Hugging Face name. int8 keeps the value path — V, O
    /// and the MLP's down projection — in bf16: Q8_0's rounding there adds up over long inputs (EmbeddingGemma's
    /// 2,048-token parity row: cosine to f32 0.99955 with every Linear in Q8_0, 0.99971 with down alone kept,
    /// 0.99995 with V, O and down in bf16, no single layer standing out), while Q, K, gate and up, which feed a
    /// softmax or a gate, take Q8_0 without measurable loss. Other precisions apply to every Linear.
    public func storage(forLinear name: String) -> WeightPrecision {
        guard self == .int8 else { return self }
        let valuePath = ["v_proj.weight", "o_proj.weight", "down_proj.weight"]
        return valuePath.contains(where: { name.hasSuffix($0) }) ? .bf16 : .int8
    }
}

/// What a user asks for: a precision, or `auto`, the fastest on this CPU whose embeddings stay within cosine
/// 0.9999 of f32 on the parity texts. Measured (EmbeddingGemma, 48 parity texts × 2 prompts against
/// sentence-transformers f32): bf16 with bf16 products 0.99996–0.99998 at 1.8–3.7× f32's tokens/s (AVX512-BF16,
/// AMX); int8 (16-bit activations on every path) 0.99993–0.99994, with batches no faster than f32's on AVX2 and
/// slower than bf16's on AVX512-VNNI + BF16. Without bf16 products bf16 only halves memory, so auto stays f32 there.
public enum PrecisionChoice: String, Sendable, CaseIterable, Codable {
    case f32, bf16, int8, auto

    public var resolved: WeightPrecision {
        switch self {
        case .f32: .f32
        case .bf16: .bf16
        case .int8: .int8
        case .auto: WeightPrecision.hasBF16Products ? .bf16 : .f32
        }
    }
}

extension WeightPrecision {
    /// Whether bf16 weights get bf16 products on this CPU (AVX512-BF16), not only half the memory.
    public static var hasBF16Products: Bool { LinearWeight.panels(for: .bf16) == .bf16Panels }
}

/// Where the transformer's weights come from: a safetensors checkpoint or a GGUF file. Names are the
/// Hugging Face keys relative to the text model ("layers.3.self_attn.q_proj.weight").
public protocol WeightProvider: Sendable {
    /// The tensor as Float, checked against `shape`; errors name the file and the tensor.
    func floats(_ name: String, shape: [Int]) throws(FormatError) -> FloatBuffer
    /// A Linear weight of shape (out, in) in `precision` (a GGUF's quantized formats stay as they are),
    /// borrowed from the file's mapping where the format allows; `release` hands the file pages it was read
    /// from back to the kernel once the caller has copied what it keeps.
    func storedLinear(_ name: String, shape: [Int], precision: WeightPrecision) throws(FormatError)
        -> (weight: LinearWeight, release: () -> Void)
    /// An RMSNorm's multiplier (1 + w), as transformers computes it in float32.
    func normScale(_ name: String, dimension: Int) throws(FormatError) -> FloatBuffer
    /// An RMSNorm's own weight w, the parameter training updates (checkpoints differ in what they store).
    func normWeight(_ name: String, dimension: Int) throws(FormatError) -> FloatBuffer
    /// The token embedding table as stored (rows are read one token at a time, so it is never converted).
    func embedding(_ name: String, shape: [Int]) throws(FormatError) -> LinearWeight
    func contains(_ name: String) -> Bool
}

/// Layer weights are read whole on every forward pass, so they are copied once out of the mapping into
/// memory on huge pages, which streams faster than the mapping's 4 KiB pages, and the file pages are dropped.
extension WeightProvider {
    /// One Linear weight, resident.
    public func linear(_ name: String, shape: [Int], precision: WeightPrecision) throws(FormatError) -> LinearWeight {
        let stored = try storedLinear(name, shape: shape, precision: precision.storage(forLinear: name))
        defer { stored.release() }
        // Below f32, products run on the CPU's panels for the format where it has them (LinearWeight.Packing).
        let packed = precision != .f32
        return stored.weight.isBorrowed || packed ? LinearWeight(copying: stored.weight, packed: packed) : stored.weight
    }

    /// Linear weights over the same input, stacked into one resident weight (each part copied once).
    public func stackedLinear(_ parts: [(name: String, shape: [Int])], precision: WeightPrecision) throws(FormatError) -> StackedLinear {
        var stored: [(weight: LinearWeight, release: () -> Void)] = []
        defer { for part in stored { part.release() } }
        for part in parts {
            stored.append(try storedLinear(part.name, shape: part.shape, precision: precision.storage(forLinear: part.name)))
        }
        return StackedLinear(stored.map(\.weight), packed: precision != .f32)
    }

    /// Hugging Face checkpoints store w.
    public func normWeight(_ name: String, dimension: Int) throws(FormatError) -> FloatBuffer {
        try floats(name, shape: [dimension])
    }

    /// The norm multiplies by 1 + w.
    public func normScale(_ name: String, dimension: Int) throws(FormatError) -> FloatBuffer {
        let w = try normWeight(name, dimension: dimension)
        return FloatBuffer(count: dimension) { dst in for i in 0..<dimension { dst[i] = 1 + w.pointer[i] } }
    }
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

    /// The tensors under an explicit prefix (a checkpoint holding more than one stack names each one itself).
    public init(_ checkpoint: SafetensorsCheckpoint, prefix: String) {
        self.checkpoint = checkpoint
        self.prefix = prefix
    }

    public func floats(_ name: String, shape: [Int]) throws(FormatError) -> FloatBuffer {
        try checkpoint.tensor(prefix + name, shape: shape).floats()
    }

    /// F32 tensors are borrowed from the mapping; other precisions are converted.
    public func storedLinear(_ name: String, shape: [Int], precision: WeightPrecision) throws(FormatError)
        -> (weight: LinearWeight, release: () -> Void) {
        let tensor = try checkpoint.tensor(prefix + name, shape: shape)
        let values = tensor.floats()
        do {
            let weight = precision == .f32
                ? try LinearWeight(format: .f32, rows: shape[0], columns: shape[1], borrowing: values.pointer, owner: values)
                : try LinearWeight(quantizing: values.pointer, rows: shape[0], columns: shape[1], to: precision.format)
            return (weight, { tensor.file.discard(offset: tensor.offset, count: tensor.byteCount) })
        } catch {
            throw FormatError(file: tensor.file.url.path, item: prefix + name, message: "\(error)")
        }
    }

    /// The embedding table stays in the mapping: a forward pass reads only the rows of its tokens.
    public func embedding(_ name: String, shape: [Int]) throws(FormatError) -> LinearWeight {
        try storedLinear(name, shape: shape, precision: .f32).weight
    }

    public func contains(_ name: String) -> Bool { checkpoint.contains(prefix + name) }
}
