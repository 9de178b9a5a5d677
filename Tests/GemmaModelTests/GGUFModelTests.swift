import CKernels
import EncoderKernels
import Foundation
import GemmaModel
import GemmaTraining
import ModelFormats
import TestSupport
import XCTest

/// The tiny transformers checkpoints converted to GGUF the way llama.cpp's converter does (its tensor names,
/// dimensions fastest first, norm weights stored as 1 + w, hyperparameters as metadata), then run from the
/// GGUF and compared with transformers' reference outputs: the whole GGUF path, for all three families.
final class GGUFModelTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try temporaryDirectory("gguf-model") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Writes `family`'s tiny checkpoint as GGUF; Linear weights in `linearType` (0 F32, 1 F16, 8 Q8_0, 30 BF16).
    func convert(_ family: String, architecture: String, linearType: UInt32 = 0, extraMetadata: [(String, GGUFTestValue)] = []) throws -> URL {
        let url = dir.appendingPathComponent("\(family)-\(linearType).gguf")
        try writeTinyGGUF(family, architecture: architecture, to: url, linearType: linearType, extraMetadata: extraMetadata)
        return url
    }

    func emptyGGUF() throws -> URL {
        let url = dir.appendingPathComponent("empty.gguf")
        try writeGGUF(url, metadata: [], tensors: [])
        return url
    }

    func run(_ url: URL, _ family: String, _ mode: AttentionMode) throws -> (HiddenStates, [[[Float]]]) {
        let model = try ModelRegistry.standard.load(gguf: try GGUFFile(url: url))
        let ref = try JSONDecoder().decode(TinyReference.self, from: Data(contentsOf: fixturesDirectory.appendingPathComponent("tiny/\(family)/reference.json")))
        return (try model.forward(ref.input_ids, mode: mode), ref.expected(mode))
    }

    func testF32GGUFMatchesTransformersForEveryFamily() throws {
        // gemma3's tiny checkpoint is bidirectional with its last of 4 layers full: as EmbeddingGemma's
        // architecture with an explicit pattern.
        let cases: [(String, String, [(String, GGUFTestValue)])] = [
            ("gemma", "gemma", []), ("gemma2", "gemma2", []),
            ("gemma3", "gemma-embedding", [("gemma-embedding.attention.sliding_window_pattern", .uint32(4))]),
        ]
        for (family, architecture, extra) in cases {
            let url = try convert(family, architecture: architecture, extraMetadata: extra)
            for mode in AttentionMode.allCases {
                let (out, expected) = try run(url, family, mode)
                for (s, sequence) in expected.enumerated() {
                    for (p, token) in sequence.enumerated() {
                        let row = out.sequence(s).dropFirst(p * out.hiddenSize).prefix(out.hiddenSize)
                        XCTAssertLessThanOrEqual(maxAbsDiff(row, token), 1e-4, "\(family) \(mode) sequence \(s) token \(p)")
                    }
                }
            }
        }
    }

    /// Training starts from any source: a GGUF's quantized weights become f32 master copies (norms back to w
    /// from llama.cpp's 1 + w) whose forward is the quantized inference model's.
    func testTrainableMasterWeightsFromQuantizedGGUF() throws {
        let url = try convert("gemma3", architecture: "gemma-embedding", linearType: 8,
                              extraMetadata: [("gemma-embedding.attention.sliding_window_pattern", .uint32(4))])
        let gguf = try GGUFFile(url: url)
        let config = try GemmaConfig(gguf: gguf)
        let trainable = try TrainableGemma(config: config, weights: GGUFWeights(gguf, family: config.family))
        let original = try SafetensorsCheckpoint(url: fixturesDirectory.appendingPathComponent("tiny/gemma3")).tensor("norm.weight").floats().array
        XCTAssertLessThanOrEqual(maxAbsDiff(trainable.finalNorm.value.array[...], original), 1e-6)
        let (inference, _) = try run(url, "gemma3", .bidirectional)
        let ref = try JSONDecoder().decode(TinyReference.self, from: Data(contentsOf: fixturesDirectory.appendingPathComponent("tiny/gemma3/reference.json")))
        let states = try trainable.forward(ref.input_ids, mode: .bidirectional).hidden.array
        XCTAssertGreaterThan(cosine(states, inference.values), 0.99999)
    }

    func testQuantizedGGUFStaysQuantizedAndClose() throws {
        for type: UInt32 in [8, 30, 1] {   // Q8_0, BF16, F16
            let url = try convert("gemma3", architecture: "gemma-embedding", linearType: type,
                                  extraMetadata: [("gemma-embedding.attention.sliding_window_pattern", .uint32(4))])
            let (out, expected) = try run(url, "gemma3", .bidirectional)
            var worst = 1.0
            for (s, sequence) in expected.enumerated() {
                for (p, token) in sequence.enumerated() {
                    worst = min(worst, cosine(Array(out.sequence(s).dropFirst(p * out.hiddenSize).prefix(out.hiddenSize)), token))
                }
            }
            XCTAssertGreaterThan(worst, 0.999, "type \(type)")
        }
    }

    func testConfigFromMetadata() throws {
        let url = try convert("gemma2", architecture: "gemma2")
        let config = try GemmaConfig(gguf: try GGUFFile(url: url))
        let expected = try GemmaConfig.load(fixturesDirectory.appendingPathComponent("tiny/gemma2/config.json"))
        XCTAssertEqual(config.family, .gemma2)
        XCTAssertEqual(config.layerTypes, expected.layerTypes)
        XCTAssertEqual(config.attnLogitSoftcapping, 2)
        XCTAssertEqual(config.slidingWindow, 4)
        XCTAssertEqual(config.queryPreAttnScalar, 16)
        XCTAssertEqual(config.vocabSize, 320)
        // Gemma 3 without a pattern key follows llama.cpp: every sixth layer full, local RoPE base 10,000.
        let g3 = try GemmaConfig(gguf: try GGUFFile(url: try convert("gemma3", architecture: "gemma3")))
        XCTAssertEqual(g3.layerTypes, [.sliding, .sliding, .sliding, .sliding])
        XCTAssertEqual(g3.ropeSliding.theta, 10_000)
        XCTAssertEqual(g3.ropeFull.theta, 1_000_000)
    }

    func testBrokenFilesAreErrorsNamingTheTensorOrKey() throws {
        let good = try convert("gemma", architecture: "gemma")
        var bytes = try Data(contentsOf: good)
        let truncated = dir.appendingPathComponent("truncated.gguf")
        try bytes.prefix(bytes.count - 5000).write(to: truncated)
        XCTAssertThrowsError(try ModelRegistry.standard.load(gguf: try GGUFFile(url: truncated))) { error in
            XCTAssertTrue("\(error)".contains("truncated"), "\(error)")
            XCTAssertTrue("\(error)".contains("blk.") || "\(error)".contains("output_norm"), "\(error)")
        }
        let llama = dir.appendingPathComponent("llama.gguf")
        try writeGGUF(llama, metadata: [("general.architecture", .string("llama"))], tensors: [])
        XCTAssertThrowsError(try GemmaConfig(gguf: try GGUFFile(url: llama))) {
            XCTAssertTrue("\($0)".contains("unsupported architecture 'llama'"), "\($0)")
        }
        // A tensor type we do not know (ggml's IQ2_XXS, 16) on a Linear weight.
        let header = Data("blk.0.attn_q.weight".utf8)
        if let range = bytes.range(of: header) {
            let typeOffset = range.upperBound + 4 + 2 * 8   // n_dims, two dimensions
            bytes[typeOffset] = 16
            let unknown = dir.appendingPathComponent("unknown.gguf")
            try bytes.write(to: unknown)
            XCTAssertThrowsError(try ModelRegistry.standard.load(gguf: try GGUFFile(url: unknown))) {
                XCTAssertTrue("\($0)".contains("blk.0.attn_q.weight: unsupported tensor type 16"), "\($0)")
            }
        } else {
            XCTFail("tensor name not found in the file")
        }
    }
}
