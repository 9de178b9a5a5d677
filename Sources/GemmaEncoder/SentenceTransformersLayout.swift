import Foundation

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
public struct SentenceTransformersLayout: Sendable {
    public var transformerDirectory: URL
    public var maxSequenceLength: Int?
    public var pipeline: EmbeddingPipeline
    public var prompts: [String: String]
    public var defaultPromptName: String?

    /// nil when `directory` has no modules.json (a plain Hugging Face model directory).
    public static func load(directory: URL) throws -> SentenceTransformersLayout? {
        let modulesURL = directory.appendingPathComponent("modules.json")
        guard FileManager.default.fileExists(atPath: modulesURL.path) else { return nil }
        let data = try readFile(modulesURL)
        guard let modules = (try? JSONSerialization.jsonObject(with: data)) as? [[String: Any]] else {
            throw EncoderError.invalidConfig(file: modulesURL.path, field: "(file)", "expected a JSON array of modules")
        }
        var transformerDirectory: URL?
        var pooling: PoolingConfig?
        var dense: [DenseLayer] = []
        var normalize = false
        for (i, module) in modules.enumerated() {
            guard let type = module["type"] as? String else {
                throw EncoderError.invalidConfig(file: modulesURL.path, field: "[\(i)].type", "missing field")
            }
            let path = (module["path"] as? String) ?? ""
            let moduleDirectory = path.isEmpty ? directory : directory.appendingPathComponent(path)
            switch type.split(separator: ".").last.map(String.init) ?? type {
            case "Transformer":
                transformerDirectory = moduleDirectory
            case "Pooling":
                pooling = try PoolingConfig.load(moduleDirectory.appendingPathComponent("config.json"))
            case "Dense":
                dense.append(try DenseLayer(directory: moduleDirectory))
            case "Normalize":
                normalize = true
            default:
                throw EncoderError.invalidConfig(file: modulesURL.path, field: "[\(i)].type",
                                                 "unsupported module '\(type)' (Transformer, Pooling, Dense, Normalize)")
            }
        }
        guard let transformerDirectory else {
            throw EncoderError.invalidConfig(file: modulesURL.path, field: "type", "no Transformer module")
        }
        guard let pooling else {
            throw EncoderError.invalidConfig(file: modulesURL.path, field: "type", "no Pooling module")
        }
        var inputDimension = pooling.outputDimension
        for layer in dense {
            guard layer.inputDimension == inputDimension else {
                throw EncoderError.invalidConfig(file: modulesURL.path, field: "Dense",
                                                 "a Dense layer takes \(layer.inputDimension) inputs but receives \(inputDimension)")
            }
            inputDimension = layer.outputDimension
        }

        var maxSequenceLength: Int?
        let bertConfig = transformerDirectory.appendingPathComponent("sentence_bert_config.json")
        if FileManager.default.fileExists(atPath: bertConfig.path) {
            maxSequenceLength = try readJSONObject(bertConfig)["max_seq_length"] as? Int
        }
        var prompts: [String: String] = [:]
        var defaultPromptName: String?
        let stConfig = directory.appendingPathComponent("config_sentence_transformers.json")
        if FileManager.default.fileExists(atPath: stConfig.path) {
            let object = try readJSONObject(stConfig)
            prompts = (object["prompts"] as? [String: String]) ?? [:]
            defaultPromptName = object["default_prompt_name"] as? String
        }
        return SentenceTransformersLayout(
            transformerDirectory: transformerDirectory, maxSequenceLength: maxSequenceLength,
            pipeline: EmbeddingPipeline(pooling: pooling, dense: dense, normalize: normalize),
            prompts: prompts, defaultPromptName: defaultPromptName)
    }
}
