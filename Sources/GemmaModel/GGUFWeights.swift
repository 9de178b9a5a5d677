import EncoderKernels
import Foundation
import ModelFormats

/// A GGUF file's tensors under the Hugging Face names the transformer asks for. Quantized weights stay in
/// the mapping in their own format; llama.cpp's converter stored Gemma's norm weights as (1 + w), which is
/// what `normScale` returns unchanged.
public struct GGUFWeights: WeightProvider {
    public let gguf: GGUFFile
    public let family: GemmaFamily
    private let infos: [String: GGUFTensorInfo]

    /// `family` decides only how layer names map (Gemma 1's MLP input norm is llama.cpp's ffn_norm); by default
    /// it is the one the file's `general.architecture` names.
    public init(_ gguf: GGUFFile, family: GemmaFamily? = nil) {
        let family = family ?? gguf["general.architecture"]?.stringValue.flatMap(GGUFGemmaArchitecture.init(rawValue:))?.family ?? .gemma3
        self.gguf = gguf
        self.family = family
        infos = Dictionary(gguf.tensors.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// llama.cpp's tensor name for a Hugging Face text-model name.
    public func ggufName(_ name: String) -> String {
        if name == "embed_tokens.weight" { return "token_embd.weight" }
        if name == "norm.weight" { return "output_norm.weight" }
        let parts = name.split(separator: ".", maxSplits: 2).map(String.init)
        guard parts.count == 3, parts[0] == "layers" else { return name }
        let renames: [String: String] = [
            "input_layernorm.weight": "attn_norm.weight",
            "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
            "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
            "self_attn.q_norm.weight": "attn_q_norm.weight", "self_attn.k_norm.weight": "attn_k_norm.weight",
            "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
            "mlp.down_proj.weight": "ffn_down.weight",
            // Gemma 1's post-attention norm is the norm in front of the MLP; Gemma 2/3 have both.
            "post_attention_layernorm.weight": family == .gemma ? "ffn_norm.weight" : "post_attention_norm.weight",
            "pre_feedforward_layernorm.weight": "ffn_norm.weight",
            "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
        ]
        return "blk.\(parts[1]).\(renames[parts[2]] ?? parts[2])"
    }

    /// The tensor as a weight of `shape` (out, in) — GGUF lists dimensions fastest first, so [in, out] — with
    /// its bytes checked against the file's end.
    public func weight(_ name: String, shape: [Int]) throws(FormatError) -> LinearWeight {
        let key = ggufName(name), path = gguf.url.path
        guard let info = infos[key] else { throw FormatError(file: path, item: key, message: "missing tensor (\(name))") }
        let rows = shape.count == 2 ? shape[0] : 1, columns = shape.last ?? 1
        guard info.dimensions == Array(shape.reversed()) else {
            throw FormatError(file: path, item: key, message: "dimensions \(info.dimensions) do not match the config's \(Array(shape.reversed()))")
        }
        guard let type = Int32(exactly: info.ggmlType), let format = WeightFormat(rawValue: type) else {
            throw FormatError(file: path, item: key, message: "unsupported tensor type \(info.ggmlType) (supported: \(WeightFormat.allCases.map(\.description).joined(separator: ", ")))")
        }
        guard let rowBytes = format.rowBytes(columns: columns) else {
            throw FormatError(file: path, item: key, message: "\(columns) columns is not a whole number of \(format) blocks")
        }
        let start = gguf.dataOffset + info.offset
        let (byteCount, overflow) = rows.multipliedReportingOverflow(by: rowBytes)
        guard start % 4 == 0 || format != .f32, !overflow, byteCount <= gguf.file.size - start else {
            throw FormatError(file: path, item: key, message: "truncated: \(rows) rows of \(rowBytes) bytes of \(format) from offset \(start), file has \(gguf.file.size)")
        }
        do {
            return try LinearWeight(format: format, rows: rows, columns: columns, borrowing: gguf.file.base + start, owner: gguf.file)
        } catch {
            throw FormatError(file: path, item: key, message: "\(error)")
        }
    }

    public func floats(_ name: String, shape: [Int]) throws(FormatError) -> FloatBuffer {
        let w = try weight(name, shape: shape)
        if w.format == .f32 { return FloatBuffer(borrowing: w.bytes.assumingMemoryBound(to: Float.self), count: w.rows * w.columns, owner: w) }
        return FloatBuffer(count: w.rows * w.columns) { w.dequantize(rows: 0..<w.rows, into: $0.baseAddress!) }
    }

    /// Quantized tensors keep their format (the point of the file) and are borrowed from the mapping; float
    /// tensors follow `precision`.
    public func storedLinear(_ name: String, shape: [Int], precision: WeightPrecision) throws(FormatError)
        -> (weight: LinearWeight, release: () -> Void) {
        let w = try weight(name, shape: shape)
        let file = gguf.file, offset = w.bytes - gguf.file.base, count = w.byteCount
        let release = { file.discard(offset: offset, count: count) }
        guard [.f32, .f16, .bf16].contains(w.format), w.format != precision.format else { return (w, release) }
        let values = try floats(name, shape: shape)
        do {
            return (try LinearWeight(quantizing: values.pointer, rows: w.rows, columns: w.columns, to: precision.format), release)
        } catch {
            throw FormatError(file: gguf.url.path, item: ggufName(name), message: "\(error)")
        }
    }

    public func embedding(_ name: String, shape: [Int]) throws(FormatError) -> LinearWeight {
        try weight(name, shape: shape)
    }

    public func normScale(_ name: String, dimension: Int) throws(FormatError) -> FloatBuffer {
        try floats(name, shape: [dimension])
    }

    /// w = stored − 1 (the converter added the 1).
    public func normWeight(_ name: String, dimension: Int) throws(FormatError) -> FloatBuffer {
        let stored = try floats(name, shape: [dimension])
        return FloatBuffer(count: dimension) { dst in for i in 0..<dimension { dst[i] = stored.pointer[i] - 1 } }
    }

    public func contains(_ name: String) -> Bool { infos[ggufName(name)] != nil }
}
