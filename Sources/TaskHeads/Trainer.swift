import EncoderKernels
import Foundation

/// How a head's parameters are fitted.
public enum HeadSolver: String, Codable, Sendable, CaseIterable {
    /// L-BFGS where the problem is convex (`lbfgs`), AdamW otherwise.
    case auto
    /// Full-batch L-BFGS to the optimum of the L2-regularized loss, the L2 strength chosen on the validation
    /// split: for a linear head on parameter-free pooling, whose loss is convex in its parameters.
    case lbfgs
    /// Minibatch AdamW with warm-up, linear decay, dropout and early stopping: hidden layers, attention
    /// pooling, rerankers.
    case adamw

    /// What `auto` means for this head: a linear layer over fixed pooled vectors with a convex loss (classes,
    /// labels, values) is solved exactly; anything else is trained by gradient steps.
    public func resolved(for architecture: HeadArchitecture, targets: Targets) -> HeadSolver {
        guard self == .auto else { return self }
        return LinearHeadFit.accepts(architecture, targets) ? .lbfgs : .adamw
    }
}

public struct TrainingOptions: Codable, Sendable, Equatable {
    public var solver: HeadSolver = .auto
    /// L-BFGS: the L2 strength λ of mean loss + λ/2·‖W‖², on features scaled to unit mean variance (so one
    /// grid suits every model); nil chooses it on the validation split from `LinearHeadFit.l2Grid`.
    public var l2: Double?
    // AdamW only, from here on (patience also ends the L2 path of L-BFGS).
    public var epochs = 20
    public var learningRate: Float = 1e-3
    public var batchSize = 32
    public var weightDecay: Float = 0.01
    /// Fraction of all steps spent warming the learning rate up.
    public var warmupFraction: Float = 0.1
    /// Epochs (L-BFGS: L2 values) without a better validation score before stopping.
    public var patience = 3
    public var seed: UInt64 = 0

    public init() {}

    enum CodingKeys: String, CodingKey {
        case solver, l2, epochs, learningRate = "learning_rate", batchSize = "batch_size", weightDecay = "weight_decay"
        case warmupFraction = "warmup_fraction", patience, seed
    }

    /// Heads written before the solver existed were all trained by AdamW: a missing solver reads as that.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        solver = try c.decodeIfPresent(HeadSolver.self, forKey: .solver) ?? .adamw
        l2 = try c.decodeIfPresent(Double.self, forKey: .l2)
        epochs = try c.decode(Int.self, forKey: .epochs)
        learningRate = try c.decode(Float.self, forKey: .learningRate)
        batchSize = try c.decode(Int.self, forKey: .batchSize)
        weightDecay = try c.decode(Float.self, forKey: .weightDecay)
        warmupFraction = try c.decode(Float.self, forKey: .warmupFraction)
        patience = try c.decode(Int.self, forKey: .patience)
        seed = try c.decode(UInt64.self, forKey: .seed)
    }
}

public struct EpochReport: Codable, Sendable, Equatable {
    public var epoch: Int
    public var trainLoss: Double
    public var validLoss: Double
    /// Classification: validation accuracy; rerank: how often the positive ranks first.
    public var validAccuracy: Double?
    public var seconds: Double
    /// L-BFGS: the step of the L2 path this report is (`epoch` counts the steps), and its iterations.
    public var l2: Double?
    public var iterations: Int?

    public init(epoch: Int, trainLoss: Double, validLoss: Double, validAccuracy: Double?, seconds: Double,
                l2: Double? = nil, iterations: Int? = nil) {
        self.epoch = epoch
        self.trainLoss = trainLoss
        self.validLoss = validLoss
        self.validAccuracy = validAccuracy
        self.seconds = seconds
        self.l2 = l2
        self.iterations = iterations
    }

    enum CodingKeys: String, CodingKey {
        case epoch, trainLoss = "train_loss", validLoss = "valid_loss", validAccuracy = "valid_accuracy", seconds
        case l2, iterations
    }
}

public struct TrainingResult: Sendable {
    public var network: HeadNetwork
    public var epochs: [EpochReport]
    /// The epoch (L-BFGS: step of the L2 path) whose parameters were kept (best validation score).
    public var bestEpoch: Int
    /// The solver that ran (never `auto`), and the L2 strength kept when it was L-BFGS.
    public var solver: HeadSolver = .adamw
    public var l2: Double?
}

/// Trains a head on cached token states. A linear head on fixed pooling is a convex problem and is solved
/// exactly (`LinearHeadFit`, L-BFGS); otherwise minibatch AdamW with warm-up and linear decay, dropout, early
/// stopping on the validation split keeping the best epoch's parameters. Everything random comes from the
/// seed, so a run is repeatable.
public enum HeadTrainer {
    /// `trainOffsets` / `validOffsets` (one per example) are added to the first logit before the loss: a
    /// fixed score the head is trained on top of, so it learns what that score gets wrong.
    public static func train(architecture: HeadArchitecture, train: TokenStateSet, trainTargets: Targets,
                             valid: TokenStateSet, validTargets: Targets, options: TrainingOptions,
                             trainOffsets: [Float]? = nil, validOffsets: [Float]? = nil,
                             onStep: ((_ done: Int, _ total: Int) -> Void)? = nil,
                             onEpoch: ((EpochReport) -> Void)? = nil) throws -> TrainingResult {
        guard train.count > 0, valid.count > 0 else { throw HeadError.invalidData("training and validation sets must not be empty") }
        guard options.epochs > 0, options.batchSize > 0, options.learningRate > 0 else {
            throw HeadError.invalidData("epochs, batch size and learning rate must be positive")
        }
        precondition(trainOffsets.map { $0.count == train.count } ?? true && validOffsets.map { $0.count == valid.count } ?? true)
        switch options.solver.resolved(for: architecture, targets: trainTargets) {
        case .lbfgs:
            guard LinearHeadFit.accepts(architecture, trainTargets), trainOffsets == nil, validOffsets == nil else {
                throw HeadError.invalidData("the lbfgs solver fits a linear head (no hidden layer) on mean, first, last or max pooling, for classes or values")
            }
            return try LinearHeadFit.train(architecture: architecture, train: train, trainTargets: trainTargets, valid: valid,
                                           validTargets: validTargets, options: options, onStep: onStep, onEpoch: onEpoch)
        case .adamw, .auto:
            break
        }
        var network = try HeadNetwork(architecture: architecture, seed: options.seed)
        var optimizer = AdamW(layout: network.layout, weightDecay: options.weightDecay)
        var rng: SeededGenerator? = SeededGenerator(seed: options.seed &+ 0x5EED)
        // Rerank rows come in groups (a positive and its negatives) that must stay together in a batch.
        let group = trainTargets.groupSize
        let units = train.count / group
        let unitsPerBatch = max(1, options.batchSize / group)
        let stepsPerEpoch = (units + unitsPerBatch - 1) / unitsPerBatch
        let schedule = LearningRateSchedule(peak: options.learningRate,
                                            warmup: Int((Float(stepsPerEpoch * options.epochs) * options.warmupFraction).rounded()),
                                            total: stepsPerEpoch * options.epochs)
        var reports: [EpochReport] = []
        var best: (score: Double, epoch: Int, parameters: [Float])?
        var step = 0
        for epoch in 1...options.epochs {
            let start = Date()
            var order = Array(0..<units)
            order.shuffle(using: &rng!)
            var lossSum = 0.0
            for (b, first) in stride(from: 0, to: units, by: unitsPerBatch).enumerated() {
                let items = order[first..<min(first + unitsPerBatch, units)].flatMap { u in (u * group)..<((u + 1) * group) }
                let act = network.forward(train, items: items, rng: &rng)
                let logits = offsetLogits(act.logits, outputs: architecture.outputs, offsets: trainOffsets, items: items)
                let (loss, grad) = Loss.evaluate(logits, outputs: architecture.outputs, targets: trainTargets, items: items)
                let grads = network.backward(train, items: items, activations: act, gradLogits: grad)
                optimizer.update(&network.parameters, gradients: grads, learningRate: schedule.rate(at: step))
                step += 1
                lossSum += loss
                onStep?(b + 1, stepsPerEpoch)
            }
            let (validLoss, validAccuracy) = evaluate(network, valid, validTargets, offsets: validOffsets)
            let report = EpochReport(epoch: epoch, trainLoss: lossSum / Double(stepsPerEpoch), validLoss: validLoss,
                                     validAccuracy: validAccuracy, seconds: Date().timeIntervalSince(start))
            reports.append(report)
            onEpoch?(report)
            // Higher is better: accuracy first (loss breaks ties), else the negated loss.
            let score = (validAccuracy ?? 0) * 1e6 - validLoss
            if best == nil || score > best!.score { best = (score, epoch, network.parameters) }
            if epoch - best!.epoch >= options.patience { break }
        }
        network.parameters = best!.parameters
        return TrainingResult(network: network, epochs: reports, bestEpoch: best!.epoch)
    }

    /// Logits with `offsets[item]` added to each row's first output (the logits unchanged without offsets).
    static func offsetLogits(_ logits: [Float], outputs: Int, offsets: [Float]?, items: [Int]) -> [Float] {
        guard let offsets else { return logits }
        var shifted = logits
        for (row, i) in items.enumerated() { shifted[row * outputs] += offsets[i] }
        return shifted
    }

    /// Mean loss (dropout off) and, for classes and rerank groups, accuracy.
    public static func evaluate(_ network: HeadNetwork, _ states: TokenStateSet, _ targets: Targets,
                                offsets: [Float]? = nil) -> (loss: Double, accuracy: Double?) {
        let items = Array(0..<states.count)
        let logits = offsetLogits(network.predict(states), outputs: network.architecture.outputs, offsets: offsets, items: items)
        return evaluate(logits: logits, outputs: network.architecture.outputs, targets: targets)
    }

    /// The loss of `logits` (texts × `c`) and, for classes and ranked groups, how often the right one wins.
    public static func evaluate(logits: [Float], outputs c: Int, targets: Targets) -> (loss: Double, accuracy: Double?) {
        let items = Array(0..<(logits.count / c))
        let loss = Loss.evaluate(logits, outputs: c, targets: targets, items: items).loss
        switch targets {
        case let .classes(labels, _):
            let correct = items.filter { i in argmax(logits[(i * c)..<((i + 1) * c)]) == labels[i] }.count
            return (loss, Double(correct) / Double(items.count))
        case let .groups(size), let .pairs(size), let .binary(size), let .lambda(size), let .margins(size, _), let .listnet(size):
            let groups = items.count / size
            let correct = (0..<groups).filter { g in argmax((0..<size).map { logits[(g * size + $0) * c] }) == 0 }.count
            return (loss, Double(correct) / Double(max(groups, 1)))
        case .multiLabel, .values:
            return (loss, nil)
        }
    }
}

extension HeadNetwork {
    /// Logits (texts × outputs) with dropout off, in batches.
    public func predict(_ states: TokenStateSet, batch: Int = 256) -> [Float] {
        var logits: [Float] = []
        logits.reserveCapacity(states.count * architecture.outputs)
        var noDropout: SeededGenerator? = nil
        for start in stride(from: 0, to: states.count, by: batch) {
            logits += forward(states, items: Array(start..<min(start + batch, states.count)), rng: &noDropout).logits
        }
        return logits
    }
}

/// Index of the largest value (the first on ties).
func argmax(_ values: some Collection<Float>) -> Int {
    var best = 0, bestValue = -Float.infinity
    for (i, v) in values.enumerated() where v > bestValue { best = i; bestValue = v }
    return best
}
