import Foundation
import GemmaModel
import ModelFormats

/// EmbeddingGemma as llama.cpp converts it (`gemma-embedding`) keeps its sentence-transformers Dense layers
/// in the GGUF file as `dense_2.weight` and `dense_3.weight` (no bias, identity activation).
enum GGUFDenseLayers {
    static func load(_ gguf: GGUFFile, inputDimension: Int) throws(EncoderError) -> [DenseLayer] {
        var dense: [DenseLayer] = []
        let weights = GGUFWeights(gguf)
        for name in ["dense_2.weight", "dense_3.weight"] {
            guard let info = gguf.tensor(named: name) else { break }
            // GGUF lists dimensions fastest first: [in, out].
            guard info.dimensions.count == 2, info.dimensions[0] == (dense.last?.outputDimension ?? inputDimension) else {
                throw .invalidConfig(file: gguf.url.path, field: name, "dimensions \(info.dimensions) do not follow the layer before")
            }
            let weight: FloatBuffer
            do throws(FormatError) { weight = try weights.floats(name, shape: [info.dimensions[1], info.dimensions[0]]) } catch {
                throw EncoderError(error)
            }
            dense.append(DenseLayer(weight: weight, bias: nil, inputDimension: info.dimensions[0],
                                    outputDimension: info.dimensions[1], activation: .identity))
        }
        return dense
    }
}
