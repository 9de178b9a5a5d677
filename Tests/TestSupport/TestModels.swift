import Foundation
import GemmaEncoder

/// A model a test needs is not in the cache. The test fails with this message instead of skipping: CI
/// (scripts/test) fetches the models first, so a missing one is a broken setup, not an optional test.
public struct MissingTestModel: Error, CustomStringConvertible {
    public let name: String
    public let cache: String

    public var description: String {
        "model \(name) is not in the cache \(cache): run `gemma-encoder models fetch \(name)` (scripts/test does)"
    }
}

/// The models the tests run, each loaded at most once per test process and shared by every test target
/// (all targets run in one process): the real ones from the gemma-encoder cache by name, and the tiny
/// random fixtures of Tests/Fixtures/tiny.
public enum TestModels {
    /// Cache names of the real models, for targets that do not import GemmaEncoder.
    public static let embeddingGemmaName = KnownModel.embeddingGemma300M.name
    public static let gemma3GGUFName = KnownModel.gemma3_270mQ4KM.name

    private static let encoders = LoadOnce<TextEncoder>()
    private static let tokenizers = LoadOnce<GemmaTokenizer>()
    private static let tinyModels = LoadOnce<TinyModels>()

    /// The cached file or directory of `name` (`$GEMMA_ENCODER_CACHE` or ~/.cache/gemma-encoder); a GGUF
    /// model resolves to its .gguf file.
    public static func path(_ name: String) throws(MissingTestModel) -> URL {
        let store = ModelStore()
        guard let url = store.cachedPath(for: name) else {
            throw MissingTestModel(name: name, cache: store.modelsDirectory.path)
        }
        return url
    }

    /// A cached model by name, loaded once (EmbeddingGemma maps 1.2 GB and parses a 33 MB tokenizer.json).
    public static func encoder(named name: String) throws -> TextEncoder {
        try encoders.value(name) { try TextEncoder(model: try path(name).path) }
    }

    /// EmbeddingGemma-300M, sentence-transformers layout, f32.
    public static func embeddingGemma() throws -> TextEncoder {
        try encoder(named: KnownModel.embeddingGemma300M.name)
    }

    /// Gemma 3 270M, GGUF Q4_K_M, weights kept quantized.
    public static func gemma3GGUF() throws -> TextEncoder {
        try encoder(named: KnownModel.gemma3_270mQ4KM.name)
    }

    /// A cached model's tokenizer alone (its tokenizer.json, or a GGUF file's vocabulary), loaded once:
    /// the tokenizer tests need no weights.
    public static func tokenizer(named name: String) throws -> GemmaTokenizer {
        try tokenizers.value(name) { try ModelSource(at: try path(name)).loadTokenizer() }
    }

    /// EmbeddingGemma's tokenizer.json (HF tokenizers' layout).
    public static func embeddingGemmaTokenizer() throws -> GemmaTokenizer { try tokenizer(named: embeddingGemmaName) }

    /// The Gemma 3 270M GGUF file's vocabulary (llama.cpp's tokenization).
    public static func gemma3GGUFTokenizer() throws -> GemmaTokenizer { try tokenizer(named: gemma3GGUFName) }

    /// The tiny random Gemma 3 checkpoint with its own 320-token tokenizer (`tinyEncoderDirectory`): text in,
    /// vectors out in milliseconds; its outputs mean nothing.
    public static func tiny() throws -> TextEncoder { try tinyPair().gemma3 }

    /// The tiny random Gemma 2 checkpoint with the same tokenizer: a second model whose outputs differ.
    public static func tinyGemma2() throws -> TextEncoder { try tinyPair().gemma2 }

    private static func tinyPair() throws -> TinyModels {
        try tinyModels.value("tiny") { try TinyModels(in: try temporaryDirectory("test-models")) }
    }
}

/// Both tiny checkpoints as Hugging Face directories under one temporary directory, kept for the process.
private struct TinyModels: Sendable {
    let gemma3: TextEncoder
    let gemma2: TextEncoder

    init(in parent: URL) throws {
        let gemma3Directory = try tinyEncoderDirectory(in: parent)
        let gemma2Directory = parent.appendingPathComponent("tiny-gemma2")
        try FileManager.default.createDirectory(at: gemma2Directory, withIntermediateDirectories: true)
        for name in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("tiny/gemma2/\(name)"),
                                             to: gemma2Directory.appendingPathComponent(name))
        }
        try FileManager.default.copyItem(at: gemma3Directory.appendingPathComponent("tokenizer.json"),
                                         to: gemma2Directory.appendingPathComponent("tokenizer.json"))
        gemma3 = try TextEncoder(directory: gemma3Directory)
        gemma2 = try TextEncoder(directory: gemma2Directory)
    }
}
