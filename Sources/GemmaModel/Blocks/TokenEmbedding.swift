import EncoderKernels
import ModelFormats

/// Gemma's input embedding: the token's table row × √hidden (the normalizer rounded to float32, as transformers
/// forms it), or, for T5Gemma 2's eoi token, the checkpoint's own `eoi_embedding`, unscaled. The table stays as
/// stored (a GGUF's quantized): rows are dequantized as tokens look them up.
public struct TokenEmbedding: Sendable {
    /// vocabulary × hidden.
    public let table: LinearWeight
    let eoi: (id: Int32, vector: FloatBuffer)?
    let normalizer: Float

    /// `weights` holds "embed_tokens.weight" (and "embed_tokens.eoi_embedding" when `config` names an eoi token).
    public init(config: GemmaConfig, weights: some WeightProvider) throws(FormatError) {
        let h = config.hiddenSize
        table = try weights.embedding("embed_tokens.weight", shape: [config.vocabSize, h])
        if let id = config.eoiTokenIndex {
            eoi = (Int32(truncatingIfNeeded: id), try weights.floats("embed_tokens.eoi_embedding", shape: [h]))
        } else {
            eoi = nil
        }
        normalizer = Float(Double(h).squareRoot())
    }

    /// Whether `id` is T5Gemma 2's eoi token, whose vector is its own (no table row: nothing to train there).
    public func isEOI(_ id: Int32) -> Bool { eoi?.id == id }

    /// With `rows`, the table's rows come from there (training's f32 copy of the table) instead of the stored table.
    // ids: T tokens; x: (T, C); rows: (vocabulary, C)
    public func embed(_ ids: some Sequence<Int32>, into x: UnsafeMutablePointer<Float>, rows: UnsafePointer<Float>? = nil) {
        let h = table.columns
        for (row, id) in ids.enumerated() {
            let dst = x + row * h
            if let eoi, id == eoi.id {
                dst.update(from: eoi.vector.pointer, count: h)
                continue
            }
            if let rows {
                dst.update(from: rows + Int(id) * h, count: h)
            } else {
                table.dequantize(rows: Int(id)..<(Int(id) + 1), into: dst)
            }
            scaleInPlace(dst, count: h, by: normalizer)
        }
    }
}
