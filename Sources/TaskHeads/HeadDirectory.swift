import AtomicFiles
import Foundation
import GemmaEncoder
import ModelFormats

/// `head.json`: what the head predicts, how it was built and trained, and the base model it needs.
public struct HeadConfig: Codable, Sendable, Equatable {
    public struct BaseModel: Codable, Sendable, Equatable {
        /// As the user named it (a cache name or a path).
        public var name: String
        /// `ModelFingerprint.digest` of the model's files.
        public var digest: String

        public init(name: String, digest: String) {
            self.name = name
            self.digest = digest
        }
    }

    public var formatVersion = 1
    public var task: HeadTask
    public var multiLabel = false
    /// Class names in output order (classification).
    public var labels: [String]?
    /// Regression targets are trained standardized; outputs are mapped back with these.
    public var targetMean: [Double]?
    public var targetStd: [Double]?
    public var architecture: HeadArchitecture
    public var baseModel: BaseModel
    public var attention: AttentionMode
    public var prompt: String?
    /// Rerank: the pair template with {query} and {document}, the pair's maximum length in tokens and the loss.
    public var pairTemplate: String?
    public var maxLength: Int?
    public var rankingLoss: RankingLoss?
    /// Rerank: the cross score fused with the bi-encoder cosine (absent: the cross score alone).
    public var fusion: ScoreFusion?
    public var training: TrainingSummary?
    /// A fine-tuned encoder inside the head directory (its subdirectory name), used in place of the base model;
    /// `baseModel.digest` is then that encoder's.
    public var encoder: String?
    /// How the encoder was fine-tuned (absent: the encoder stayed frozen).
    public var fineTuning: FineTuneSummary?

    public init(task: HeadTask, architecture: HeadArchitecture, baseModel: BaseModel, attention: AttentionMode,
                prompt: String?) {
        self.task = task
        self.architecture = architecture
        self.baseModel = baseModel
        self.attention = attention
        self.prompt = prompt
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", task, multiLabel = "multi_label", labels, targetMean = "target_mean"
        case targetStd = "target_std", architecture, baseModel = "base_model", attention, prompt
        case pairTemplate = "pair_template", maxLength = "max_length", rankingLoss = "ranking_loss", fusion = "score_fusion"
        case training, encoder, fineTuning = "fine_tuning"
    }
}

/// How a head (`TrainingSummary`) or an encoder with its head (`FineTuneSummary`) was trained: the settings,
/// the rows, and every epoch's report, the best one kept.
public struct RunSummary<Options: Codable & Sendable & Equatable>: Codable, Sendable, Equatable {
    public var options: Options
    public var trainRows: Int
    public var validRows: Int
    public var bestEpoch: Int
    public var epochs: [EpochReport]
    /// L-BFGS: the L2 strength chosen (or given), and the rows of the final fit when the held-out validation
    /// rows were folded back in after choosing it.
    public var l2: Double?
    public var refitRows: Int?

    public init(options: Options, trainRows: Int, validRows: Int, bestEpoch: Int, epochs: [EpochReport]) {
        self.options = options
        self.trainRows = trainRows
        self.validRows = validRows
        self.bestEpoch = bestEpoch
        self.epochs = epochs
    }

    enum CodingKeys: String, CodingKey {
        case options, trainRows = "train_rows", validRows = "valid_rows", bestEpoch = "best_epoch", epochs
        case l2, refitRows = "refit_rows"
    }
}

public typealias TrainingSummary = RunSummary<TrainingOptions>
public typealias FineTuneSummary = RunSummary<FineTuneOptions>

/// A head directory: `head.json` and `head.safetensors`.
public struct HeadDirectory: Sendable {
    public var config: HeadConfig
    public var network: HeadNetwork
    /// Where it was read from (nil for a head not yet written).
    public private(set) var location: URL?

    /// The fine-tuned encoder's directory, when the head carries one.
    public var encoderLocation: URL? { config.encoder.flatMap { name in location?.appendingPathComponent(name) } }

    public init(config: HeadConfig, network: HeadNetwork) {
        self.config = config
        self.network = network
    }

    /// Writes both files into a temporary sibling directory and swaps it in for `url` (`AtomicDirectory`),
    /// so a reader sees the old head or the new one, never a mix or none. `encoder` writes a fine-tuned
    /// encoder into the directory it is given (`config.encoder` inside the new head); the head then records
    /// that encoder's digest as its base model.
    public func write(to url: URL, encoder: ((URL) throws -> Void)? = nil) throws {
        try createDestinationDirectory(url.deletingLastPathComponent())
        let json = JSONEncoder()
        json.outputFormatting = [.prettyPrinted, .sortedKeys]
        let tensors = network.layout.entries.map { e in (e.name, e.shape, Array(network.parameters[e.range])) }
        let weights = try SafetensorsWriter.encode(tensors, metadata: ["format": "gemma-encoder-head"])
        var config = self.config
        try AtomicDirectory.replace(url) { temporary in
            if let encoder {
                let name = config.encoder ?? "encoder"
                let directory = temporary.appendingPathComponent(name)
                try encoder(directory)
                config.encoder = name
                config.baseModel.digest = try ModelFingerprint.digest(of: try ModelSource(at: directory))
            }
            let configData: Data
            do { configData = try json.encode(config) } catch {
                throw HeadError.invalidHead("\(url.path): the head's configuration cannot be written as JSON: \(error)")
            }
            for (name, data) in [("head.json", configData), ("head.safetensors", weights)] {
                let file = temporary.appendingPathComponent(name)
                do { try data.write(to: file) } catch { throw AtomicWriteError(error, path: file.path, step: .write) }
            }
        }
    }

    public static func read(_ url: URL) throws -> HeadDirectory {
        // Where the file system cannot swap directories, a writer killed mid-replace leaves the old head
        // moved aside: put it back rather than report no head.
        if !FileManager.default.fileExists(atPath: url.path) { try? AtomicDirectory.recover(url) }
        let configURL = url.appendingPathComponent("head.json")
        guard let data = try? Data(contentsOf: configURL) else {
            throw HeadError.invalidHead("\(url.path): not a head directory (no readable head.json)")
        }
        let config: HeadConfig
        do throws(FormatError) { config = try JSONFile.decode(HeadConfig.self, from: data, file: configURL.path) } catch {
            throw HeadError.invalidHead("\(error)")
        }
        // Lists indexed by output must have one entry per output (a predictor indexes them so), labels distinct.
        let outputs = config.architecture.outputs
        for (field, count) in [("labels", config.labels?.count), ("target_mean", config.targetMean?.count),
                               ("target_std", config.targetStd?.count)] {
            if let count, count != outputs {
                throw HeadError.invalidHead("\(configURL.path): \(field) has \(count) entries for \(outputs) outputs")
            }
        }
        if let length = config.maxLength, length < 1 {
            throw HeadError.invalidHead("\(configURL.path): max_length \(length) is not a length (at least 1)")
        }
        if let labels = config.labels, Set(labels).count != labels.count {
            throw HeadError.invalidHead("\(configURL.path): labels repeat a name")
        }
        let weights: SafetensorsFile
        do { weights = try SafetensorsFile(url: url.appendingPathComponent("head.safetensors")) } catch {
            throw HeadError.invalidHead("\(url.path)/head.safetensors: \(error)")
        }
        var tensors: [String: (shape: [Int], values: [Float])] = [:]
        for (name, t) in weights.tensors { tensors[name] = (t.shape, t.floats().array) }
        do {
            var head = HeadDirectory(config: config, network: try HeadNetwork(architecture: config.architecture, tensors: tensors))
            head.location = url
            return head
        } catch {
            throw HeadError.invalidHead("\(url.path)/head.safetensors: \(error)")
        }
    }

    /// Refuses an encoder other than the one the head was trained on.
    public func checkBaseModel(_ encoder: TextEncoder) throws {
        let digest = try ModelFingerprint.digest(of: encoder.source)
        guard digest == config.baseModel.digest else {
            throw HeadError.baseModelMismatch("this head was trained on '\(config.baseModel.name)' (digest \(config.baseModel.digest.prefix(12))…), not \(encoder.location.path) (digest \(digest.prefix(12))…)")
        }
        // The digest is the file's word: a head.json altered by hand can keep it and still claim another width.
        guard config.architecture.inputDimension == encoder.hiddenSize else {
            throw HeadError.invalidHead("\(location?.path ?? "head"): the head takes \(config.architecture.inputDimension) inputs, the encoder gives \(encoder.hiddenSize)")
        }
    }
}
