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

/// Trains classification and regression heads on a frozen encoder: token states once (cached on disk), then
/// only the cached states: an exact L2-regularized fit for a linear head on fixed pooling (`LinearHeadFit`),
/// AdamW epochs otherwise.
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
        var config = prepared.config
        let solver = plan.options.solver.resolved(for: config.architecture, targets: prepared.trainTargets)
        if solver == .lbfgs {
            // The exact fit uses no dropout; head.json says what was trained.
            config.architecture.dropout = 0
            config.architecture.hiddenDropout = 0
        }
        try config.architecture.validate()

        func states(_ data: LabeledData) throws -> TokenStateSet {
            try cache.states(TokenStateCache.Request(texts: data.texts, prompt: plan.prompt, attention: plan.attention, modelDigest: digest),
                             encoder: encoder, progress: progress.map { p in { p("encoding \(data.path)", $0, $1) } })
        }

        // A held-out split is cut from the states of all training rows, so re-runs (other seeds, fractions,
        // poolings) find those states in the cache instead of encoding each split anew.
        let trainStates: TokenStateSet, validStates: TokenStateSet, allStates: TokenStateSet?
        if let split = prepared.split {
            let states = try states(prepared.all)
            (trainStates, validStates, allStates) = (states.subset(split.train), states.subset(split.valid), states)
        } else {
            (trainStates, validStates, allStates) = (try states(prepared.train), try states(prepared.valid), nil)
        }
        var options = plan.options
        options.solver = solver
        var result = try HeadTrainer.train(
            architecture: config.architecture, train: trainStates, trainTargets: prepared.trainTargets,
            valid: validStates, validTargets: prepared.validTargets, options: options,
            onStep: progress.map { p in { p("training", $0, $1) } }, onEpoch: onEpoch)
        var refitRows: Int?
        if let allStates, solver == .lbfgs, let l2 = result.l2 {
            // λ is chosen; the held-out rows are data the final fit should not waste (as a refit after a grid
            // search does). The validation figures above stay those of the split.
            let allTargets = try targets(of: prepared.all, config: config, plan: plan)
            result.network = try LinearHeadFit.refit(result.network, states: allStates, targets: allTargets, l2: l2)
            refitRows = prepared.all.texts.count
        }
        config.training = TrainingSummary(options: options, trainRows: prepared.train.texts.count,
                                          validRows: prepared.valid.texts.count, bestEpoch: result.bestEpoch,
                                          epochs: result.epochs)
        config.training?.l2 = result.l2
        config.training?.refitRows = refitRows
        prepared.config = config
        return HeadDirectory(config: prepared.config, network: result.network)
    }

    /// A run's data made ready, the same for a frozen and a fine-tuned encoder: the validation split (held
    /// out from `all` when not given), the head's config (labels or target statistics) and both splits' targets.
    struct Prepared {
        var all: LabeledData
        var split: HoldOutSplit?
        var train: LabeledData
        var valid: LabeledData
        var config: HeadConfig
        var trainTargets: Targets
        var validTargets: Targets
    }

    static func prepare(train all: LabeledData, valid: LabeledData?, plan: HeadTrainingPlan, dimension: Int,
                        baseModel: HeadConfig.BaseModel) throws -> Prepared {
        guard plan.task != .rerank else { throw HeadError.invalidData("rerank heads are trained from pair data (RerankerBuilder)") }
        // Without validation rows, a seeded share of the training rows is held out (and, for an exact linear
        // fit, folded back in once the L2 strength is chosen).
        let split = try valid == nil ? holdOutSplit(all, fraction: plan.validFraction, seed: plan.options.seed) : nil
        let train = split.map { all.subset($0.train) } ?? all
        let valid = valid ?? all.subset(split!.valid)
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
        return Prepared(all: all, split: split, train: train, valid: valid, config: config, trainTargets: trainTargets,
                        validTargets: validTargets)
    }

    /// `data`'s targets in the form (classes, standardization) already fixed by the training split.
    private static func targets(of data: LabeledData, config: HeadConfig, plan: HeadTrainingPlan) throws -> Targets {
        switch config.task {
        case .classification:
            return try data.targets(classes: config.labels ?? [], balanced: plan.balanced)
        case .regression:
            return try data.standardizedTargets(mean: config.targetMean ?? [], std: config.targetStd ?? [])
        case .rerank:
            preconditionFailure("rerank heads are refused at the start of train")
        }
    }

    static func architecture(_ plan: HeadTrainingPlan, _ dimension: Int, _ outputs: Int) -> HeadArchitecture {
        HeadArchitecture(inputDimension: dimension, outputs: outputs, pooling: plan.pooling,
                         attentionHeads: plan.attentionHeads, hiddenSize: plan.hiddenSize,
                         dropout: plan.dropout, hiddenDropout: plan.hiddenDropout)
    }

    /// Moves a seeded random `fraction` of `data`'s rows (at least one, and leaving at least one) into the
    /// returned validation split.
    public static func holdOut(from data: inout LabeledData, fraction: Double, seed: UInt64) throws(HoldOutError) -> LabeledData {
        let split = try holdOutSplit(data, fraction: fraction, seed: seed)
        let valid = data.subset(split.valid)
        data = data.subset(split.train)
        return valid
    }

    /// The rows `holdOut` moves, without moving them.
    static func holdOutSplit(_ data: LabeledData, fraction: Double, seed: UInt64) throws(HoldOutError) -> HoldOutSplit {
        var rng = SeededGenerator(seed: seed &+ 0xA11D)
        return try HoldOutSplit(count: data.texts.count, fraction: fraction, using: &rng, source: data.path)
    }
}

extension LabeledData {
    public var isMultiLabel: Bool { if case .multi = labels { true } else { false } }
}
