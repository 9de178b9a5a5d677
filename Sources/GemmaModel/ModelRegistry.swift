import Foundation
import ModelFormats

/// One architecture the library can run: the names it answers to in config.json (`model_type`) and in GGUF
/// metadata (`general.architecture`), and how to load it from either.
public struct ModelArchitecture: Sendable {
    public let name: String
    public let modelTypes: [String]
    public let ggufArchitectures: [String]
    let loadDirectory: @Sendable (URL, WeightPrecision) throws(FormatError) -> any EncoderModel
    let loadGGUF: @Sendable (GGUFFile, WeightPrecision) throws(FormatError) -> any EncoderModel

    public init(name: String, modelTypes: [String], ggufArchitectures: [String],
                loadDirectory: @escaping @Sendable (URL, WeightPrecision) throws(FormatError) -> any EncoderModel,
                loadGGUF: @escaping @Sendable (GGUFFile, WeightPrecision) throws(FormatError) -> any EncoderModel) {
        self.name = name
        self.modelTypes = modelTypes
        self.ggufArchitectures = ggufArchitectures
        self.loadDirectory = loadDirectory
        self.loadGGUF = loadGGUF
    }

    /// Gemma, Gemma 2, Gemma 3 (text, multimodal wrapper, EmbeddingGemma) and llama.cpp's names for them.
    public static let gemma = ModelArchitecture(
        name: "gemma", modelTypes: GemmaConfig.modelTypes,
        ggufArchitectures: GGUFGemmaArchitecture.allCases.map(\.rawValue),
        loadDirectory: { directory, precision throws(FormatError) in
            let config = try GemmaConfig.load(directory.appendingPathComponent("config.json"))
            return try GemmaTransformer(config: config, weights: SafetensorsWeights(url: directory), precision: precision)
        },
        loadGGUF: { gguf, precision throws(FormatError) in
            let config = try GemmaConfig(gguf: gguf)
            return try GemmaTransformer(config: config, weights: GGUFWeights(gguf, family: config.family), precision: precision)
        })
}

extension ModelArchitecture {
    /// T5Gemma and T5Gemma 2 encoder-decoders, run as encoders: the encoder stack, under its own attention rule
    /// (the decoder is `T5GemmaDecoder`'s). No GGUF form exists.
    public static let t5gemma = ModelArchitecture(
        name: "t5gemma", modelTypes: T5GemmaConfig.modelTypes, ggufArchitectures: [],
        loadDirectory: { directory, precision throws(FormatError) in
            let config = try T5GemmaConfig.load(directory.appendingPathComponent("config.json"))
            let weights = try T5GemmaStackWeights(SafetensorsCheckpoint(url: directory), stack: .encoder)
            return try GemmaTransformer(config: config.encoder, weights: weights, precision: precision)
        },
        loadGGUF: { gguf, _ throws(FormatError) in
            throw FormatError(file: gguf.url.path, item: "general.architecture", message: "T5Gemma has no GGUF form")
        })
}

/// The architectures a loader may pick from, keyed by the checkpoint's own type name; adding an architecture
/// means adding one `ModelArchitecture` here. An unknown type is an error naming the file and the key.
public struct ModelRegistry: Sendable {
    public let architectures: [ModelArchitecture]

    public init(_ architectures: [ModelArchitecture]) { self.architectures = architectures }

    public static let standard = ModelRegistry([.gemma, .t5gemma])

    /// The `model_type` of a Hugging Face model directory's config.json.
    public static func modelType(of directory: URL) throws(FormatError) -> String {
        try ModelTypeProbe.read(directory.appendingPathComponent("config.json"))
    }

    /// A Hugging Face model directory: `config.json` decides the architecture.
    public func load(directory: URL, precision: WeightPrecision = .f32) throws(FormatError) -> any EncoderModel {
        let configURL = directory.appendingPathComponent("config.json")
        let type = try ModelTypeProbe.read(configURL)
        guard let architecture = architectures.first(where: { $0.modelTypes.contains(type) }) else {
            let known = architectures.flatMap(\.modelTypes).joined(separator: ", ")
            throw FormatError(file: configURL.path, item: "model_type", message: "unsupported model type '\(type)' (supported: \(known))")
        }
        return try architecture.loadDirectory(directory, precision)
    }

    /// A GGUF file: `general.architecture` decides.
    public func load(gguf: GGUFFile, precision: WeightPrecision = .f32) throws(FormatError) -> any EncoderModel {
        guard let name = gguf["general.architecture"]?.stringValue else {
            throw FormatError(file: gguf.url.path, item: "general.architecture", message: "missing metadata key")
        }
        guard let architecture = architectures.first(where: { $0.ggufArchitectures.contains(name) }) else {
            let known = architectures.flatMap(\.ggufArchitectures).joined(separator: ", ")
            throw FormatError(file: gguf.url.path, item: "general.architecture", message: "unsupported architecture '\(name)' (supported: \(known))")
        }
        return try architecture.loadGGUF(gguf, precision)
    }
}

/// Reads only `model_type` of a config.json, so the registry can pick the architecture that decodes the rest.
private struct ModelTypeProbe: Decodable {
    var model_type: String?

    static func read(_ url: URL) throws(FormatError) -> String {
        guard let type = try JSONFile.decode(ModelTypeProbe.self, from: url).model_type else {
            throw FormatError(file: url.path, item: "model_type", message: "missing field")
        }
        return type
    }
}
