import EncoderKernels
import Foundation
import GemmaEncoder

/// What to train besides the data: the head's shape, the optimizer's settings and how texts meet the encoder.
public struct HeadTrainingPlan: Sendable {
    public var task: HeadTask
    public var pooling: Pooling
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

    public init(task: HeadTask, pooling: Pooling) {
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
        let digest = try ModelFingerprint.digest(of: encoder.source)
        var prepared = try prepare(train: train, valid: valid, plan: plan, dimension: encoder.hiddenSize,
                                   baseModel: .init(name: modelName, digest: digest))

        func states(_ data: LabeledData) throws -> TokenStateSet {
            try cache.states(TokenStateCache.Request(texts: data.texts, prompt: plan.prompt, attention: plan.attention, modelDigest: digest),
                             encoder: encoder, progress: progress.map { p in { p("encoding \(data.path)", $0, $1) } })
        }

        let trainStates = try states(prepared.train), validStates = try states(prepared.valid)
        let result = try HeadTrainer.train(
            architecture: prepared.config.architecture, train: trainStates, trainTargets: prepared.trainTargets,
            valid: validStates, validTargets: prepared.validTargets, options: plan.options,
            onStep: progress.map { p in { p("training", $0, $1) } }, onEpoch: onEpoch)
        prepared.config.training = TrainingSummary(options: plan.options, trainRows: prepared.train.texts.count,
                                                   validRows: prepared.valid.texts.count, bestEpoch: result.bestEpoch,
                                                   epochs: result.epochs)
        return HeadDirectory(config: prepared.config, network: result.network)
    }

    /// A run's data made ready, the same for a frozen and a fine-tuned encoder: the validation split (held
    /// out when not given), the head's config (labels or target statistics) and both splits' targets.
    struct Prepared {
        var train: LabeledData
        var valid: LabeledData
        var config: HeadConfig
        var trainTargets: Targets
        var validTargets: Targets
    }

    static func prepare(train: LabeledData, valid: LabeledData?, plan: HeadTrainingPlan, dimension: Int,
                        baseModel: HeadConfig.BaseModel) throws -> Prepared {
        guard plan.task != .rerank else { throw HeadError.invalidData("rerank heads are trained from pair data (RerankerBuilder)") }
        var train = train
        let valid = try valid ?? holdOut(from: &train, fraction: plan.validFraction, seed: plan.options.seed)
        // Labels are checked before any encoding, so a bad validation row fails in seconds.
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
                                baseModel: baseModel, attention: plan.attention, prompt: plan.prompt)
            config.labels = classes
            config.multiLabel = train.isMultiLabel
        case .regression:
            guard let statistics = train.targetStatistics else { throw HeadError.invalidData("\(train.path): no regression targets") }
            trainTargets = try train.standardizedTargets(mean: statistics.mean, std: statistics.std)
            validTargets = try valid.standardizedTargets(mean: statistics.mean, std: statistics.std)
            outputs = statistics.mean.count
            config = HeadConfig(task: .regression, architecture: architecture(plan, dimension, outputs),
                                baseModel: baseModel, attention: plan.attention, prompt: plan.prompt)
            config.targetMean = statistics.mean
            config.targetStd = statistics.std
        case .rerank:
            preconditionFailure("handled above")
        }
        try config.architecture.validate()
        return Prepared(train: train, valid: valid, config: config, trainTargets: trainTargets, validTargets: validTargets)
    }

    static func architecture(_ plan: HeadTrainingPlan, _ dimension: Int, _ outputs: Int) -> HeadArchitecture {
        HeadArchitecture(inputDimension: dimension, outputs: outputs, pooling: plan.pooling,
                         attentionHeads: plan.attentionHeads, hiddenSize: plan.hiddenSize,
                         dropout: plan.dropout, hiddenDropout: plan.hiddenDropout)
    }

    /// Moves a seeded random `fraction` of `data`'s rows (at least one, and leaving at least one) into the
    /// returned validation split.
    public static func holdOut(from data: inout LabeledData, fraction: Double, seed: UInt64) throws(HoldOutError) -> LabeledData {
        var rng = SeededGenerator(seed: seed &+ 0xA11D)
        let split = try HoldOutSplit(count: data.texts.count, fraction: fraction, using: &rng, source: data.path)
        let valid = data.subset(split.valid)
        data = data.subset(split.train)
        return valid
    }
}

extension LabeledData {
    public var isMultiLabel: Bool { if case .multi = labels { true } else { false } }
}
