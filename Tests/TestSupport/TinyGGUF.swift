import CKernels
import EncoderKernels
import Foundation
import GemmaModel
import ModelFormats

/// A tiny checkpoint (`Tests/Fixtures/tiny/<family>`) converted to GGUF the way llama.cpp converts Gemma:
/// its names, norms stored as 1 + w, dimensions fastest first; Linear weights in `linearType` (0 F32, 1 F16,
/// 8 Q8_0, 30 BF16, …), the rest F32. `extraMetadata` follows the model's (a vocabulary, say). Used by the
/// GGUF model tests and the fuzz seeds.
public func writeTinyGGUF(_ family: String, architecture: String, to url: URL, linearType: UInt32 = 0,
                          extraMetadata: [(String, GGUFTestValue)] = []) throws {
    let source = fixturesDirectory.appendingPathComponent("tiny/\(family)")
    let config = try GemmaConfig.load(source.appendingPathComponent("config.json"))
    let checkpoint = try SafetensorsCheckpoint(url: source)
    try writeGGUF(url, metadata: [], tensors: [])
    let names = GGUFWeights(try GGUFFile(url: url), family: config.family)
    var metadata: [(String, GGUFTestValue)] = [
        ("general.architecture", .string(architecture)),
        ("\(architecture).context_length", .uint32(UInt32(config.maxPositionEmbeddings))),
        ("\(architecture).embedding_length", .uint32(UInt32(config.hiddenSize))),
        ("\(architecture).block_count", .uint32(UInt32(config.numLayers))),
        ("\(architecture).feed_forward_length", .uint32(UInt32(config.intermediateSize))),
        ("\(architecture).attention.head_count", .uint32(UInt32(config.numHeads))),
        ("\(architecture).attention.head_count_kv", .uint32(UInt32(config.numKVHeads))),
        ("\(architecture).attention.key_length", .uint32(UInt32(config.headDim))),
        ("\(architecture).attention.value_length", .uint32(UInt32(config.headDim))),
        ("\(architecture).attention.layer_norm_rms_epsilon", .float32(config.rmsNormEps)),
        ("\(architecture).rope.freq_base", .float32(Float(config.ropeFull.theta))),
    ]
    if let w = config.slidingWindow { metadata.append(("\(architecture).attention.sliding_window", .uint32(UInt32(w)))) }
    if let cap = config.attnLogitSoftcapping { metadata.append(("\(architecture).attn_logit_softcapping", .float32(Float(cap)))) }
    metadata += extraMetadata

    var tensors: [(name: String, dimensions: [Int], type: UInt32, bytes: [UInt8])] = []
    for name in checkpoint.tensorNames.sorted() {
        let tensor = try checkpoint.tensor(name)
        var values = tensor.floats().array
        let isNorm = name.hasSuffix("norm.weight")
        if isNorm { values = values.map { 1 + $0 } }   // llama.cpp stores Gemma's norms as 1 + w
        let linear = !isNorm && tensor.shape.count == 2 && name != "embed_tokens.weight"
        let type = linear ? linearType : 0
        guard let rowBytes = type == 0 ? tensor.shape.last.map({ $0 * 4 }) : WeightFormat(rawValue: Int32(type))?.rowBytes(columns: tensor.shape[1]) else {
            throw FormatError(file: url.path, item: name, message: "no GGUF encoding for type \(type)")
        }
        var bytes = [UInt8](repeating: 0, count: rowBytes * (tensor.shape.count == 2 ? tensor.shape[0] : 1))
        guard bytes.withUnsafeMutableBytes({ ck_quantize(Int32(type), values, values.count, $0.baseAddress!) }) == 0 else {
            throw FormatError(file: url.path, item: name, message: "quantizing to type \(type) failed")
        }
        tensors.append((names.ggufName(name), Array(tensor.shape.reversed()), type, bytes))
    }
    try writeGGUF(url, metadata: metadata, tensors: tensors)
}
