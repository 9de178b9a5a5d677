import Foundation
import ModelFormats

/// What happens after the transformer: pooling, optional Dense layers, optional L2 normalization.
public struct EmbeddingPipeline: Sendable {
    public var pooling: PoolingConfig
    public var dense: [DenseLayer]
    public var normalize: Bool

    public init(pooling: PoolingConfig, dense: [DenseLayer] = [], normalize: Bool) {
        self.pooling = pooling
        self.dense = dense
        self.normalize = normalize
    }

    public var outputDimension: Int { dense.last?.outputDimension ?? pooling.outputDimension }
}

/// A sentence-transformers model directory read from `modules.json`: where the transformer lives, its
/// max_seq_length, the pipeline after it, and the named prompts of `config_sentence_transformers.json`.
/// Every file is decoded with `Codable`; errors name the file and the coding path.
public struct SentenceTransformersLayout: Sendable {
    public var transformerDirectory: URL
    public var maxSequenceLength: Int?
    public var pipeline: EmbeddingPipeline
    public var prompts: [String: String]
    public var defaultPromptName: String?

    /// Reads the layout of `directory`, which must hold `modules.json`.
    public static func load(directory: URL) throws(EncoderError) -> SentenceTransformersLayout {
        let modulesURL = directory.appendingPathComponent("modules.json")
        let modules = try decode([ModuleEntry].self, modulesURL)
        var transformerDirectory: URL?
        var pooling: PoolingConfig?
        var dense: [DenseLayer] = []
        var normalize = false
        for (i, module) in modules.enumerated() {
            let path = module.path ?? ""
            let moduleDirectory = path.isEmpty ? directory : directory.appendingPathComponent(path)
            switch module.type.split(separator: ".").last.map(String.init) ?? module.type {
            case "Transformer": transformerDirectory = moduleDirectory
            case "Pooling": pooling = try PoolingConfig.load(moduleDirectory.appendingPathComponent("config.json"))
            case "Dense": dense.append(try DenseLayer(directory: moduleDirectory))
            case "Normalize": normalize = true
            default:
                throw .invalidConfig(file: modulesURL.path, field: "[\(i)].type",
                                     "unsupported module '\(module.type)' (Transformer, Pooling, Dense, Normalize)")
            }
        }
        guard let transformerDirectory else { throw .invalidConfig(file: modulesURL.path, field: "type", "no Transformer module") }
        guard let pooling else { throw .invalidConfig(file: modulesURL.path, field: "type", "no Pooling module") }
        var inputDimension = pooling.outputDimension
        for layer in dense {
            guard layer.inputDimension == inputDimension else {
                throw .invalidConfig(file: modulesURL.path, field: "Dense",
                                     "a Dense layer takes \(layer.inputDimension) inputs but receives \(inputDimension)")
            }
            inputDimension = layer.outputDimension
        }
        let bertURL = transformerDirectory.appendingPathComponent("sentence_bert_config.json")
        let bert = try decodeIfPresent(SentenceBertConfig.self, bertURL)
        if let length = bert?.max_seq_length, length < 1 {
            throw .invalidConfig(file: bertURL.path, field: "max_seq_length", "\(length) is not a length (at least 1)")
        }
        let st = try decodeIfPresent(SentenceTransformersConfig.self, directory.appendingPathComponent("config_sentence_transformers.json"))
        return SentenceTransformersLayout(
            transformerDirectory: transformerDirectory, maxSequenceLength: bert?.max_seq_length,
            pipeline: EmbeddingPipeline(pooling: pooling, dense: dense, normalize: normalize),
            prompts: st?.prompts ?? [:], defaultPromptName: st?.default_prompt_name)
    }

    private static func decode<T: Decodable>(_ type: T.Type, _ url: URL) throws(EncoderError) -> T {
        do throws(FormatError) { return try JSONFile.decode(type, from: url) } catch { throw EncoderError(error) }
    }

    private static func decodeIfPresent<T: Decodable>(_ type: T.Type, _ url: URL) throws(EncoderError) -> T? {
        FileManager.default.fileExists(atPath: url.path) ? try decode(type, url) : nil
    }
}

/// One entry of `modules.json`.
private struct ModuleEntry: Decodable {
    var path: String?
    var type: String
}

/// `sentence_bert_config.json` (the Transformer module's settings).
private struct SentenceBertConfig: Decodable {
    var max_seq_length: Int?
}

/// `config_sentence_transformers.json`.
private struct SentenceTransformersConfig: Decodable {
    var prompts: [String: String]?
    var default_prompt_name: String?
}
