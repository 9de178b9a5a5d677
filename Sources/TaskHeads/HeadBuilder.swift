import EncoderKernels
import Foundation
import GemmaEncoder

/// What to train besides the data: the head's shape, the optimizer's settings and how texts meet the encoder.
public struct HeadTrainingPlan: Sendable {
    public var task: HeadTask
    public var pooling: HeadPooling
    public var attentionHeads = 4
    /// Width of a GELU hidden layer; nil for a linear head.
    public var hiddenSize: Int?
    public var dropout: Float = 0.1
    public var hiddenDropout: Float = 0.1
    public var options = TrainingOptions()
    /// Class weights n / (classes × count), as scikit-learn's "balanced".
    public var balanced = false
    /// Share of the training rows held out for validation when no validation file is given.
    public var validFraction = 0.1
    /// Literal prompt text prepended to every text (the model's named prompts are resolved by the caller).
    public var prompt: String?
    public var attention: AttentionMode = .bidirectional

    public init(task: HeadTask, pooling: HeadPooling) {
        self.task = task
        self.pooling = pooling
    }
}

/// Trains classification and regression heads on a frozen encoder: token states once (cached on disk),
/// then epochs over the cached states only.
public enum HeadBuilder {
    /// Progress of the stage named by the first argument: ("encoding", done, total) or ("training", …).
    public typealias ProgressHandler = (String, Int, Int) -> Void

    public static func train(encoder: TextEncoder, modelName: String, train: LabeledData, valid: LabeledData?,
                             plan: HeadTrainingPlan, cache: TokenStateCache?,
                             progress: ProgressHandler? = nil,
                             onEpoch: ((EpochReport) -> Void)? = nil) throws -> HeadDirectory {
        guard plan.task != .rerank else { throw HeadError.invalidData("rerank heads are trained from pair data (RerankerBuilder)") }
        var train = train
        let valid = try valid ?? holdOut(from: &train, fraction: plan.validFraction, seed: plan.options.seed)
        let digest = try ModelFingerprint.digest(of: encoder.location)

        // Labels are checked before any encoding, so a bad validation row fails in seconds.
        let dimension = encoder.transformer.config.hiddenSize
        var config: HeadConfig
        let trainTargets: Targets, validTargets: Targets, outputs: Int
        switch plan.task {
        case .classification:
            let classes = train.classNames
            guard classes.count >= 2 || (train.isMultiLabel && !classes.isEmpty) else {
                throw HeadError.invalidData("\(train.path): classification needs at least two classes, found \(classes.count)")
            }
            trainTargets = try train.targets(classes: classes, balanced: plan.balanced)
            validTargets = try valid.targets(classes: classes, balanced: plan.balanced)
            outputs = classes.count
            config = HeadConfig(task: .classification, architecture: architecture(plan, dimension, outputs),
                                baseModel: .init(name: modelName, digest: digest), attention: plan.attention, prompt: plan.prompt)
            config.labels = classes
            config.multiLabel = train.isMultiLabel
        case .regression:
            guard let statistics = train.targetStatistics else { throw HeadError.invalidData("\(train.path): no regression targets") }
            trainTargets = try train.standardizedTargets(mean: statistics.mean, std: statistics.std)
            validTargets = try valid.standardizedTargets(mean: statistics.mean, std: statistics.std)
            outputs = statistics.mean.count
            config = HeadConfig(task: .regression, architecture: architecture(plan, dimension, outputs),
                                baseModel: .init(name: modelName, digest: digest), attention: plan.attention, prompt: plan.prompt)
            config.targetMean = statistics.mean
            config.targetStd = statistics.std
        case .rerank:
            preconditionFailure("handled above")
        }
        try config.architecture.validate()

        func states(_ data: LabeledData) throws -> TokenStateSet {
            let report: ((Int, Int) -> Void)? = progress.map { p in { p("encoding \(data.path)", $0, $1) } }
            let request = TokenStateCache.Request(texts: data.texts, prompt: plan.prompt, attention: plan.attention,
                                                  modelDigest: digest)
            if let cache { return try cache.states(request, encoder: encoder, progress: report).states }
            return try TokenStateCache.compute(request, encoder: encoder, progress: report)
        }

        let trainStates = try states(train), validStates = try states(valid)
        let result = try HeadTrainer.train(
            architecture: config.architecture, train: trainStates, trainTargets: trainTargets,
            valid: validStates, validTargets: validTargets, options: plan.options,
            onStep: progress.map { p in { p("training", $0, $1) } }, onEpoch: onEpoch)
        config.training = TrainingSummary(options: plan.options, trainRows: train.texts.count, validRows: valid.texts.count,
                                          bestEpoch: result.bestEpoch, epochs: result.epochs)
        return HeadDirectory(config: config, network: result.network)
    }

    static func architecture(_ plan: HeadTrainingPlan, _ dimension: Int, _ outputs: Int) -> HeadArchitecture {
        HeadArchitecture(inputDimension: dimension, outputs: outputs, pooling: plan.pooling,
                         attentionHeads: plan.attentionHeads, hiddenSize: plan.hiddenSize,
                         dropout: plan.dropout, hiddenDropout: plan.hiddenDropout)
    }

    /// Moves a seeded random `fraction` of `data`'s rows (at least one, and leaving at least one) into the
    /// returned validation split.
    public static func holdOut(from data: inout LabeledData, fraction: Double, seed: UInt64) throws -> LabeledData {
        let n = data.texts.count
        guard n >= 2 else { throw HeadError.invalidData("\(data.path): \(n) row(s): too few to hold out a validation split (give --valid)") }
        guard fraction > 0, fraction < 1 else { throw HeadError.invalidData("the validation fraction must be between 0 and 1") }
        var rng = SeededGenerator(seed: seed &+ 0xA11D)
        let order = Array(0..<n).shuffled(using: &rng)
        let held = min(n - 1, max(1, Int((Double(n) * fraction).rounded())))
        let valid = data.subset(Array(order.prefix(held)).sorted())
        data = data.subset(Array(order.dropFirst(held)).sorted())
        return valid
    }
}

extension TokenStateCache {
    /// The states without a cache (still in chunks, with progress).
    public static func compute(_ request: Request, encoder: TextEncoder, chunk: Int = 512,
                               progress: ((Int, Int) -> Void)? = nil) throws -> TokenStateSet {
        let inputs = request.inputs(encoder)
        var set = TokenStateSet(dimension: encoder.transformer.config.hiddenSize)
        progress?(0, inputs.count)
        for start in stride(from: 0, to: inputs.count, by: chunk) {
            let part = Array(inputs[start..<min(start + chunk, inputs.count)])
            for states in try encoder.tokenStates(part, attention: request.attention) { set.append(states) }
            progress?(set.count, inputs.count)
        }
        return set
    }
}

extension LabeledData {
    public var isMultiLabel: Bool { if case .multi = labels { true } else { false } }
}
