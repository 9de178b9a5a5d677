import EncoderKernels
import Foundation
import GemmaEncoder

/// How the reranker is trained: the listwise loss (softmax cross-entropy over the positive and its negatives,
/// the positive the target — not sentence-transformers' ListNetLoss, whose target is softmax(labels)), the
/// pairwise one (RankNet), binary cross-entropy per pair, LambdaLoss (NDCG-Loss2++), all three as
/// sentence-transformers 6.2 computes them, or margin-MSE from a teacher.
public enum RankingLoss: String, Codable, Sendable, CaseIterable {
    case listwise, pairwise, bce, lambda, listnet
    /// Distillation: the score margins of a teacher reranker (`RerankerTrainingPlan.teacher`).
    case marginMSE = "margin-mse"

    /// The targets of groups of `size` (the positive first) under this loss; margin-MSE needs the teacher's
    /// score of every row.
    public func targets(groupSize size: Int, teacher: [Float]? = nil) throws(HeadError) -> Targets {
        switch self {
        case .listwise: return .groups(size: size)
        case .pairwise: return .pairs(size: size)
        case .bce: return .binary(size: size)
        case .lambda: return .lambda(size: size)
        case .listnet: return .listnet(size: size)
        case .marginMSE:
            guard let teacher else { throw .invalidData("the margin-mse loss learns a teacher reranker's scores: give --teacher") }
            return .margins(size: size, teacher: teacher)
        }
    }
}

public struct RerankerTrainingPlan: Sendable {
    public var pooling: Pooling = .attention
    public var attentionHeads = 4
    public var hiddenSize: Int? = 256
    public var dropout: Float = 0.1
    public var hiddenDropout: Float = 0.1
    public var loss: RankingLoss = .listwise
    /// Negatives per group (rows with more are sampled, seeded; rows with fewer are an error).
    public var negatives = 3
    public var template = PairTemplate.embeddingGemma
    public var maxLength = 512
    public var validFraction = 0.1
    public var options = TrainingOptions()
    public var attention: AttentionMode = .bidirectional
    /// Fuse the cross score with the bi-encoder cosine, weights fitted on the validation groups (ScoreFusion).
    /// Off by default: it doubles the encoder work per reranked document (unless an index built the same way
    /// supplies the cosine from its stored vectors, SearchPipeline), and a head trained alone tends to repeat
    /// what the cosine already knows; `residual` is the variant that adds to it.
    public var fuseSimilarity = false
    /// With `fuseSimilarity`: train the head on top of the cosine (its weight first fitted on the training
    /// groups alone), so the head learns what the cosine gets wrong instead of repeating what it gets right.
    public var residual = false
    /// Without `fuseSimilarity`: when the trained head ranks the positive first no more often than the
    /// bi-encoder cosine (the first stage) on the validation groups, fuse the two anyway (weights fitted
    /// there, the head's weight 0 if fusing does not help), so a default reranker never replaces a first
    /// stage with something worse.
    public var guardFirstStage = true
    /// A teacher reranker whose scores of every training and validation pair the margin-MSE loss learns.
    public var teacher: (any PairScorer)?

    public init() {}

    /// The teacher's scores of every pair of `groups`, in row order (nil without a teacher or another loss).
    func teacherScores(_ groups: [(query: String, documents: [String])]) throws -> [Float]? {
        guard loss == .marginMSE, let teacher else { return nil }
        return try groups.flatMap { try teacher.rerankScores(query: $0.query, documents: $0.documents, similarity: nil).final }
    }
}

/// Trains cross-encoder rerankers: encoder + pooling + a one-score head over (query, document) pair texts.
public enum RerankerBuilder {
    public static func train(encoder: TextEncoder, modelName: String, examples: [RerankExample], valid: [RerankExample]?,
                             plan: RerankerTrainingPlan, cache: TokenStateCache?,
                             progress: HeadBuilder.ProgressHandler? = nil,
                             onEpoch: ((EpochReport) -> Void)? = nil) throws -> HeadDirectory {
        guard plan.negatives > 0 else { throw HeadError.invalidData("negatives per group must be positive, got \(plan.negatives)") }
        // One generator for the hold-out split and then the negatives' sampling, in that order: a seed fixes both.
        var rng = SeededGenerator(seed: plan.options.seed &+ 0x5EED_0F)
        let (trainRows, validRows) = try split(examples, valid: valid, fraction: plan.validFraction, rng: &rng)
        for row in trainRows + validRows where row.negatives.count < plan.negatives {
            throw HeadError.invalidData("line \(row.line): \(row.negatives.count) negatives, fewer than the \(plan.negatives) per group asked for")
        }
        let digest = try ModelFingerprint.digest(of: encoder.source)
        let pairs = PairGroupEncoder(encoder: encoder, plan: plan, digest: digest, cache: cache, progress: progress)
        let train = try pairs.groups(trainRows, label: "training", rng: &rng)
        let validation = try pairs.groups(validRows, label: "validation", rng: &rng)
        let validSimilarity = plan.fuseSimilarity ? try pairs.similarities(validation, label: "validation") : []
        let offsets = plan.fuseSimilarity && plan.residual
            ? try pairs.residualOffsets(train: train, validSimilarity: validSimilarity) : nil

        let architecture = HeadArchitecture(inputDimension: encoder.hiddenSize, outputs: 1, pooling: plan.pooling,
                                            attentionHeads: plan.attentionHeads, hiddenSize: plan.hiddenSize,
                                            dropout: plan.dropout, hiddenDropout: plan.hiddenDropout)
        let targets = try plan.loss.targets(groupSize: plan.groupSize,
                                            teacher: try plan.teacherScores(zip(train.rows, train.documents).map { ($0.query, $1) }))
        let validTargets = try plan.loss.targets(groupSize: plan.groupSize,
                                                 teacher: try plan.teacherScores(zip(validation.rows, validation.documents).map { ($0.query, $1) }))
        let result = try HeadTrainer.train(architecture: architecture, train: train.states, trainTargets: targets,
                                           valid: validation.states, validTargets: validTargets, options: plan.options,
                                           trainOffsets: offsets?.train, validOffsets: offsets?.valid,
                                           onStep: progress.map { p in { p("training", $0, $1) } }, onEpoch: onEpoch)
        var config = HeadConfig(task: .rerank, architecture: architecture, baseModel: .init(name: modelName, digest: digest),
                                attention: plan.attention, prompt: nil)
        config.pairTemplate = plan.template.text
        config.maxLength = plan.maxLength
        config.rankingLoss = plan.loss
        if plan.fuseSimilarity || plan.guardFirstStage {
            config.fusion = fusion(cross: result.network.predict(validation.states),
                                   similarity: plan.fuseSimilarity ? validSimilarity : try pairs.similarities(validation, label: "validation"),
                                   plan: plan, queryPrompt: pairs.queryPrompt, documentPrompt: pairs.documentPrompt)
        }
        var options = plan.options
        options.solver = result.solver  // what ran (AdamW: ranking groups are not a per-row convex loss)
        config.training = TrainingSummary(options: options, trainRows: trainRows.count, validRows: validRows.count,
                                          bestEpoch: result.bestEpoch, epochs: result.epochs)
        return HeadDirectory(config: config, network: result.network)
    }

    /// The fusion a reranker keeps, from its head's and the cosine's scores of the validation groups: the fitted
    /// one when `plan.fuseSimilarity` asks for it; otherwise, with `plan.guardFirstStage`, the first-stage guard's
    /// (the head alone ranks the positive first no more often than the cosine: fused, never below the cosine),
    /// or none when the head alone does better.
    static func fusion(cross: [Float], similarity: [Float], plan: RerankerTrainingPlan, queryPrompt: String?,
                       documentPrompt: String?) -> ScoreFusion? {
        var fitted = ScoreFusion.fit(cross: cross, similarity: similarity, groupSize: plan.groupSize, queryPrompt: queryPrompt,
                                     documentPrompt: documentPrompt)
        if plan.fuseSimilarity {
            fitted.residual = plan.residual
            return fitted
        }
        guard plan.guardFirstStage, fitted.validTop1.cross <= fitted.validTop1.similarity else { return nil }
        var guarded = fitted.neverBelowSimilarity
        guarded.fallback = true
        return guarded
    }

    /// The training and validation rows: `valid` when given, else a held-out share of `examples`.
    static func split(_ examples: [RerankExample], valid: [RerankExample]?, fraction: Double,
                      rng: inout SeededGenerator) throws(HoldOutError) -> (train: [RerankExample], valid: [RerankExample]) {
        if let valid { return (examples, valid) }
        let split = try HoldOutSplit(count: examples.count, fraction: fraction, using: &rng)
        return (split.train.map { examples[$0] }, split.valid.map { examples[$0] })
    }
}

extension RerankerTrainingPlan {
    /// Documents per group: the positive and its negatives.
    var groupSize: Int { negatives + 1 }
}

/// Training or validation groups: per row, the positive then sampled negatives, and every pair's token states.
struct PairGroups {
    var rows: [RerankExample]
    var documents: [[String]]
    var states: TokenStateSet
}

/// Turns rows into encoded pair groups (and the cosines a fused reranker needs), with what both splits share.
struct PairGroupEncoder {
    let encoder: TextEncoder
    let plan: RerankerTrainingPlan
    let digest: String
    let cache: TokenStateCache?
    let progress: HeadBuilder.ProgressHandler?

    var queryPrompt: String? { encoder.prompts["query"] }
    var documentPrompt: String? { encoder.prompts["document"] }

    /// One group per row, its negatives sampled from `rng`; states through the cache, keyed by the exact pair ids.
    func groups(_ rows: [RerankExample], label: String, rng: inout SeededGenerator) throws -> PairGroups {
        var inputs: [EncoderInput] = []
        var documents: [[String]] = []
        for row in rows {
            let group = [row.positive] + Array(row.negatives.shuffled(using: &rng).prefix(plan.negatives))
            documents.append(group)
            inputs += group.map {
                encoder.tokenizePair(query: row.query, document: $0, template: plan.template, maxLength: plan.maxLength)
            }
        }
        let request = TokenStateCache.Request(tokenized: inputs, attention: plan.attention, modelDigest: digest)
        let states = try cache.states(request, encoder: encoder,
                                      progress: progress.map { p in { p("encoding \(label) pairs", $0, $1) } })
        return PairGroups(rows: rows, documents: documents, states: states)
    }

    /// The bi-encoder cosine of every pair, query and document embedded apart with the model's prompts.
    func similarities(_ groups: PairGroups, label: String) throws -> [Float] {
        try encoder.similarities(groups: zip(groups.rows, groups.documents).map { ($0.query, $1) }, queryPrompt: queryPrompt,
                                 documentPrompt: documentPrompt, attention: plan.attention,
                                 progress: progress.map { p in { p("embedding \(label) groups apart", $0, $1) } })
    }

    /// For a residual head: the cosine times its weight fitted on the training groups alone, added to the head's
    /// scores in training, so the head learns what the cosine gets wrong.
    func residualOffsets(train: PairGroups, validSimilarity: [Float]) throws -> (train: [Float], valid: [Float]) {
        let trainSimilarity = try similarities(train, label: "training")
        let weight = Float(ScoreFusion.fit(cross: [Float](repeating: 0, count: trainSimilarity.count), similarity: trainSimilarity,
                                           groupSize: plan.groupSize, queryPrompt: nil, documentPrompt: nil).similarityWeight)
        return (trainSimilarity.map { weight * $0 }, validSimilarity.map { weight * $0 })
    }
}
