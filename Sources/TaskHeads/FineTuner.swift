import AtomicFiles
import EncoderKernels
import Foundation
import GemmaEncoder
import GemmaModel
import GemmaTraining
import ModelFormats

/// Tokenized texts and what to predict for each.
public struct FineTuneData: Sendable {
    public var sequences: [[Int32]]
    public var targets: Targets

    public init(sequences: [[Int32]], targets: Targets) {
        self.sequences = sequences
        self.targets = targets
    }

    public var count: Int { sequences.count }
}

/// One optimizer step, for a progress line.
public struct FineTuneStep: Sendable {
    public var step: Int
    public var totalSteps: Int
    public var epoch: Int
    public var loss: Double
    public var tokensPerSecond: Double

    public init(step: Int, totalSteps: Int, epoch: Int, loss: Double, tokensPerSecond: Double) {
        self.step = step
        self.totalSteps = totalSteps
        self.epoch = epoch
        self.loss = loss
        self.tokensPerSecond = tokensPerSecond
    }
}

public struct FineTuneResult: Sendable {
    public var network: HeadNetwork
    public var epochs: [EpochReport]
    /// 0 when no epoch beat the linear probe on the untouched encoder (which is then what the run returns).
    public var bestEpoch: Int
    /// Steps this call ran (fewer than the run's when it resumed from a checkpoint).
    public var stepsRun: Int
}

/// Fine-tunes the encoder and its head together (the Gemma Encoder paper's recipe): AdamW with separate rates
/// for encoder and head, warm-up then linear or cosine decay, global-norm clipping, gradient accumulation,
/// length-grouped batches, early stopping on validation keeping the best epoch, encoder dropout, and
/// checkpoints from which a killed run resumes to the same weights. Everything random is a function of the
/// seed and the step, so the same seed gives the same result, interrupted or not.
public final class EncoderFineTuner {
    public let model: TrainableGemma
    public let options: FineTuneOptions
    public private(set) var network: HeadNetwork
    /// RankT5-style scoring: a pair's score is a T5Gemma decoder's first-step logit of one token, not the head's
    /// (whose parameters then go unused). The decoder trains whole, with the encoder's optimizer and rate.
    public let scorer: TrainableT5GemmaDecoder?
    let threads: Int
    private var headOptimizer: AdamW
    private let encoderOptimizer: EncoderOptimizer

    public init(model: TrainableGemma, architecture: HeadArchitecture, options: FineTuneOptions, scorer: TrainableT5GemmaDecoder? = nil,
                threads: Int = CPUBudget.threads) throws {
        try options.validate()
        self.model = model
        self.options = options
        self.threads = max(1, threads)
        try model.prepare(options.scope, trainEmbeddings: options.trainEmbeddings, seed: options.seed)
        model.products = options.products ?? .f32
        if let scorer {
            switch options.scope {
            case .all, .top: break
            case .none, .lora:
                throw HeadError.invalidData("first-token scoring trains the decoder with the encoder: use --finetune all or top:K, not \(options.scope)")
            }
            // The decoder reads its start and head rows once; a training table (tied to them in T5Gemma 2) would
            // export a model other than the one trained and validated.
            guard !options.trainEmbeddings else {
                throw HeadError.invalidData("--train-embeddings does not apply to first-token scoring (the decoder reads the embedding table as loaded)")
            }
            scorer.setTrained(true)
            scorer.products = model.products
        }
        self.scorer = scorer
        network = try HeadNetwork(architecture: architecture, seed: options.seed)
        headOptimizer = AdamW(layout: network.layout, weightDecay: options.weightDecay)
        let trained = model.trainedParameters + (scorer?.trainedParameters ?? [])
        encoderOptimizer = EncoderOptimizer(model: model, parameters: trained, options: options, threads: self.threads)
    }

    // MARK: Batches

    /// The batches of `epoch` (indices into the data): a seeded shuffle; with length grouping, pools of 50
    /// batches sorted by length, cut into batches, and the batches shuffled again (so no epoch runs
    /// shortest-first). Rerank groups (the positive and its negatives) stay whole and in order: the batch
    /// size counts pairs, rounded down to whole groups (at least one).
    func batches(count: Int, lengths: [Int], epoch: Int, unit: Int = 1) -> [[Int]] {
        var rng = SeededGenerator(seed: options.seed ^ (0xBA7C_4000 &+ UInt64(epoch)))
        let units = count / unit
        let unitLengths = (0..<units).map { u in (0..<unit).reduce(0) { $0 + lengths[u * unit + $1] } }
        var order = Array(0..<units)
        order.shuffle(using: &rng)
        let size = max(1, options.batchSize / unit)
        var result: [[Int]]
        if options.lengthGrouped {
            result = []
            let pool = size * 50
            for start in stride(from: 0, to: units, by: pool) {
                let sorted = order[start..<min(start + pool, units)].sorted { unitLengths[$0] > unitLengths[$1] }
                for b in stride(from: 0, to: sorted.count, by: size) { result.append(Array(sorted[b..<min(b + size, sorted.count)])) }
            }
            result.shuffle(using: &rng)
        } else {
            result = stride(from: 0, to: units, by: size).map { Array(order[$0..<min($0 + size, units)]) }
        }
        return unit == 1 ? result : result.map { batch in batch.flatMap { u in (u * unit)..<((u + 1) * unit) } }
    }

    // MARK: Encoding

    /// The stream entering the first trained layer for every text (top:K's cache; nil when every layer trains).
    func frozenPrefixes(_ data: FineTuneData) throws -> [Tensor]? {
        guard model.firstTrainedLayer > 0 else { return nil }
        var prefixes: [Tensor] = []
        for start in stride(from: 0, to: data.count, by: 32) {
            let batch = Array(data.sequences[start..<min(start + 32, data.count)])
            let states = try model.frozenPrefix(batch, mode: options.attention, threads: threads)
            var row = 0
            let h = model.config.hiddenSize
            for ids in batch {
                prefixes.append(Tensor(copying: states.pointer + row * h, count: ids.count * h))
                row += ids.count
            }
        }
        return prefixes
    }

    private func prefix(_ prefixes: [Tensor]?, _ items: [Int]) -> Tensor? {
        guard let prefixes else { return nil }
        let h = model.config.hiddenSize
        let total = items.reduce(0) { $0 + prefixes[$1].count }
        let joined = Tensor(count: total)
        var offset = 0
        for i in items {
            (joined.pointer + offset).update(from: prefixes[i].pointer, count: prefixes[i].count)
            offset += prefixes[i].count
        }
        precondition(offset % h == 0)
        return joined
    }

    /// Final token states of `data` (dropout off), as the head reads them; with `pooling` (one without
    /// parameters), each text's pooled vector alone, as a one-row "sequence": what a linear fit on that pooling
    /// needs, at a fraction of the memory (the same head: pooling one row returns it).
    public func states(_ data: FineTuneData, prefixes: [Tensor]? = nil, pooling: Pooling? = nil) throws -> TokenStateSet {
        var set = TokenStateSet(dimension: model.config.hiddenSize)
        for start in stride(from: 0, to: data.count, by: 32) {
            let items = Array(start..<min(start + 32, data.count))
            let pass = try model.forward(items.map { data.sequences[$0] }, prefix: prefix(prefixes, items),
                                         mode: options.attention, threads: threads, keepTape: false)
            let h = model.config.hiddenSize
            // Unpooled, the states go straight into the set; pooled, through this batch's own set.
            var batch = TokenStateSet(dimension: h)
            for (row, _) in items.enumerated() {
                let range = (pass.batch.offsets[row] * h)..<(pass.batch.offsets[row + 1] * h)
                let states = UnsafeBufferPointer(start: pass.hidden.pointer + range.lowerBound, count: range.count)
                if pooling == nil { set.append(states) } else { batch.append(states) }
            }
            guard let pooling else { continue }
            let pooled = try HeadFeatures.pooled(batch, pooling: pooling)
            for i in 0..<batch.count { set.append(pooled[(i * h)..<((i + 1) * h)]) }
        }
        return set
    }

    // MARK: The run

    /// Trains for `options.epochs` (or until early stopping). With `checkpoint`, state is written there every
    /// `checkpointEvery` steps and after every epoch; with `resume`, a run continues from what is there.
    /// `stopAfter` ends the call after that many steps (a test's stand-in for a killed process).
    public func run(train: FineTuneData, valid: FineTuneData, checkpoint: URL? = nil, resume: Bool = false,
                    stopAfter: Int? = nil, onStep: ((FineTuneStep) -> Void)? = nil,
                    onEpoch: ((EpochReport) -> Void)? = nil) throws -> FineTuneResult {
        guard train.count > 0, valid.count > 0 else { throw HeadError.invalidData("training and validation sets must not be empty") }
        if options.labelSmoothing != nil {
            guard case .classes = train.targets else {
                throw TrainingError.invalidOption("label smoothing applies to single-label classification only")
            }
        }
        let lengths = train.sequences.map(\.count), unit = train.targets.groupSize
        for (name, data) in [("training", train), ("validation", valid)] where data.count % data.targets.groupSize != 0 {
            throw HeadError.invalidData("\(name) rerank rows must come in whole groups of \(data.targets.groupSize), got \(data.count) rows")
        }
        let stepsPerEpoch = (batches(count: train.count, lengths: lengths, epoch: 1, unit: unit).count + options.accumulation - 1)
            / options.accumulation
        let totalSteps = stepsPerEpoch * options.epochs
        let warmup = Int((Float(totalSteps) * options.warmupFraction).rounded())
        let encoderSchedule = LearningRateSchedule(peak: options.encoderLearningRate, warmup: warmup, total: totalSteps,
                                                   decay: options.decay)
        let headSchedule = LearningRateSchedule(peak: options.headLearningRate, warmup: warmup, total: totalSteps,
                                                decay: options.decay)
        var state = RunState()
        if resume, let checkpoint, FileManager.default.fileExists(atPath: checkpoint.appendingPathComponent("state.json").path) {
            state = try restore(from: checkpoint)
        }
        let trainPrefixes = try frozenPrefixes(train), validPrefixes = try frozenPrefixes(valid)
        if state.step == 0, options.headInit == .probe, scorer == nil, Self.probes(train.targets) {
            try probeHead(train: train, valid: valid, trainPrefixes: trainPrefixes, validPrefixes: validPrefixes)
            // The probe on the untouched encoder is "epoch 0": fine-tuning is kept only where it beats it on
            // validation, so a run can never end below the same head trained on the frozen encoder.
            let (loss, accuracy) = try evaluate(valid, prefixes: validPrefixes)
            state.bestScore = (accuracy ?? 0) * 1e6 - loss
            state.bestEpoch = 0
            state.best = snapshot()
        }
        var stepsRun = 0
        epochs: for epoch in state.epoch...options.epochs {
            let epochStart = Date()
            let groups = batches(count: train.count, lengths: lengths, epoch: epoch, unit: unit)
            let steps = stride(from: 0, to: groups.count, by: options.accumulation).map {
                Array(groups[$0..<min($0 + options.accumulation, groups.count)])
            }
            while state.stepInEpoch < steps.count {
                if let stopAfter, stepsRun >= stopAfter { break epochs }
                let started = Date()
                let (loss, tokens) = try step(steps[state.stepInEpoch], train: train, prefixes: trainPrefixes,
                                              step: state.step, encoderRate: encoderSchedule.rate(at: state.step),
                                              headRate: headSchedule.rate(at: state.step))
                state.step += 1
                state.stepInEpoch += 1
                state.lossSum += loss
                stepsRun += 1
                onStep?(FineTuneStep(step: state.step, totalSteps: totalSteps, epoch: epoch, loss: loss,
                                     tokensPerSecond: Double(tokens) / max(Date().timeIntervalSince(started), 1e-9)))
                if let checkpoint, options.checkpointEvery > 0, state.step % options.checkpointEvery == 0,
                   state.stepInEpoch < steps.count {
                    try save(state, to: checkpoint)
                }
            }
            // Validation, early stopping, and the epoch's checkpoint.
            let (validLoss, validAccuracy) = try evaluate(valid, prefixes: validPrefixes)
            let report = EpochReport(epoch: epoch, trainLoss: state.lossSum / Double(max(steps.count, 1)), validLoss: validLoss,
                                     validAccuracy: validAccuracy, seconds: Date().timeIntervalSince(epochStart))
            state.reports.append(report)
            onEpoch?(report)
            let score = Self.score(report)
            if state.best == nil || score > state.bestScore {
                state.bestScore = score
                state.bestEpoch = epoch
                state.best = snapshot()
            }
            state.epoch = epoch + 1
            state.stepInEpoch = 0
            state.lossSum = 0
            if let checkpoint { try save(state, to: checkpoint) }
            // Patience counts from the best fine-tuned epoch, not from the probe (epoch 0): the probe stays the
            // answer when no epoch beats it, but the first epochs at the peak learning rate usually score below
            // it, and stopping on that would end runs before the decaying rate lets them pass it.
            let bestTuned = state.reports.max { Self.score($0) < Self.score($1) }?.epoch ?? epoch
            if epoch - bestTuned >= options.patience { break }
        }
        if let best = state.best, stopAfter == nil || stepsRun < stopAfter! { restoreSnapshot(best) }
        return FineTuneResult(network: network, epochs: state.reports, bestEpoch: state.bestEpoch, stepsRun: stepsRun)
    }

    /// The loss and accuracy of `data` (dropout off): through the head, or the scorer's decoder step.
    func evaluate(_ data: FineTuneData, prefixes: [Tensor]?) throws -> (loss: Double, accuracy: Double?) {
        guard let scorer else { return HeadTrainer.evaluate(network, try states(data, prefixes: prefixes), data.targets) }
        var scores: [Float] = []
        for start in stride(from: 0, to: data.count, by: 32) {
            let items = Array(start..<min(start + 32, data.count))
            let pass = try model.forward(items.map { data.sequences[$0] }, prefix: prefix(prefixes, items), mode: options.attention,
                                         threads: threads, keepTape: false)
            scores += scorer.forward(states: pass.hidden, batch: pass.batch, threads: threads).scores
        }
        return HeadTrainer.evaluate(logits: scores, outputs: 1, targets: data.targets)
    }

    /// What validation ranks epochs by: accuracy where there is one, then loss.
    static func score(_ report: EpochReport) -> Double { (report.validAccuracy ?? 0) * 1e6 - report.validLoss }

    /// Whether `probeHead` can start this head: per-row targets (classes, sets of classes, values), the ones a
    /// head on frozen states is trained for; rerank groups start random.
    static func probes(_ targets: Targets) -> Bool {
        switch targets {
        case .classes, .multiLabel, .values: return true
        case .groups, .pairs, .binary, .lambda, .margins, .listnet: return false
        }
    }

    /// Replaces the random head by the head trained on the encoder's current (frozen) states, the starting point
    /// of probing then fine-tuning: a linear head on fixed pooling is the exact L2 fit (λ chosen on the
    /// validation rows); an MLP head or attention pooling is what `train --finetune none` would train, AdamW
    /// with its defaults and early stopping on the validation rows, from this run's seed. (On the section task
    /// the frozen MLP head is 3.6 points above the linear one: starting there, fine-tuning begins from the
    /// better head instead of a random one whose first gradients disturb the encoder.)
    func probeHead(train: FineTuneData, valid: FineTuneData, trainPrefixes: [Tensor]?, validPrefixes: [Tensor]?) throws {
        let architecture = network.architecture
        var fit = TrainingOptions()
        fit.seed = options.seed
        fit.solver = LinearHeadFit.accepts(architecture, train.targets) ? .lbfgs : .adamw
        // Fixed pooling is applied once here; learned pooling needs every token's state.
        let pooling = architecture.pooling.isLearned ? nil : architecture.pooling
        let result = try HeadTrainer.train(architecture: architecture,
                                           train: try states(train, prefixes: trainPrefixes, pooling: pooling), trainTargets: train.targets,
                                           valid: try states(valid, prefixes: validPrefixes, pooling: pooling),
                                           validTargets: valid.targets, options: fit)
        network.parameters = result.network.parameters
    }

    /// One optimizer step over its micro-batches (indices into `train`; `prefixes` is top:K's cache, or nil
    /// to run the frozen layers too); returns the mean loss and the tokens processed. `bench-train` times this.
    public func step(_ microBatches: [[Int]], train: FineTuneData, prefixes: [Tensor]? = nil, step: Int,
                     encoderRate: Float, headRate: Float) throws -> (loss: Double, tokens: Int) {
        let (loss, tokens, headGradients) = try gradients(microBatches, train: train, prefixes: prefixes, step: step)
        headOptimizer.update(&network.parameters, gradients: headGradients, learningRate: headRate)
        encoderOptimizer.update(learningRate: encoderRate)
        return (loss, tokens)
    }

    /// The step's gradients, clipped: the encoder's accumulated in its parameters, the head's returned (a test
    /// compares them across batchings; AdamW's update would hide a scale error).
    public func gradients(_ microBatches: [[Int]], train: FineTuneData, prefixes: [Tensor]?, step: Int) throws
        -> (loss: Double, tokens: Int, head: [Float]) {
        var headGradients = [Float](repeating: 0, count: network.layout.count)
        var lossSum = 0.0, tokens = 0
        let share = Float(1) / Float(microBatches.count)
        for (micro, items) in microBatches.enumerated() {
            let sequences = items.map { train.sequences[$0] }
            tokens += sequences.reduce(0) { $0 + $1.count }
            let seed = mixSeed(options.seed, UInt64(step) &* 64 &+ UInt64(micro))
            let pass = try model.forward(sequences, prefix: prefix(prefixes, items), mode: options.attention,
                                         dropout: options.dropout, seed: seed, threads: threads,
                                         checkpointing: options.activationCheckpointing)
            let local = Array(0..<items.count)
            if let scorer {
                // The decoder step's score is the logit; its gradient flows back through the decoder into the encoder.
                let scored = scorer.forward(states: pass.hidden, batch: pass.batch, threads: threads)
                let (loss, gradScores) = Loss.evaluate(scored.scores, outputs: 1, targets: train.targets.subset(items, outputs: 1),
                                                       items: local)
                lossSum += loss
                let gradStates = scorer.backward(scored, gradScores: gradScores.map { $0 * share })
                model.backward(pass, gradHidden: gradStates.pointer)
                continue
            }
            let states = try TokenStateSet(dimension: model.config.hiddenSize, values: pass.hidden.array, offsets: pass.batch.offsets)
            var rng: SeededGenerator? = SeededGenerator(seed: seed ^ 0x4EAD)
            let activations = network.forward(states, items: local, rng: &rng)
            let (loss, gradLogits) = Loss.evaluate(activations.logits, outputs: network.architecture.outputs,
                                                   targets: train.targets.subset(items, outputs: network.architecture.outputs),
                                                   items: local, labelSmoothing: options.labelSmoothing ?? 0)
            lossSum += loss
            let scaled = gradLogits.map { $0 * share }
            let gradStates = Tensor(count: pass.hidden.count)
            let grads = network.backward(states, items: local, activations: activations, gradLogits: scaled,
                                         gradStates: encoderOptimizer.parameters.isEmpty ? nil : gradStates.pointer)
            for i in grads.indices { headGradients[i] += grads[i] }
            if !encoderOptimizer.parameters.isEmpty { model.backward(pass, gradHidden: gradStates.pointer) }
        }
        if options.clipNorm > 0 {
            let norm = (encoderOptimizer.squaredGradientNorm() + headGradients.reduce(0) { $0 + Double($1) * Double($1) }).squareRoot()
            if norm > Double(options.clipNorm) {
                let factor = Float(Double(options.clipNorm) / (norm + 1e-6))
                encoderOptimizer.scaleGradients(by: factor)
                for i in headGradients.indices { headGradients[i] *= factor }
            }
        }
        return (lossSum / Double(microBatches.count), tokens, headGradients)
    }

    // MARK: Snapshots and checkpoints

    struct Snapshot {
        var encoder: [[Float]]
        var head: [Float]
    }

    struct RunState {
        var step = 0
        var epoch = 1
        var stepInEpoch = 0
        var lossSum = 0.0
        var bestScore = -Double.infinity
        var bestEpoch = 0
        var reports: [EpochReport] = []
        var best: Snapshot?
    }

    private func snapshot() -> Snapshot {
        Snapshot(encoder: encoderOptimizer.parameters.map(\.value.array), head: network.parameters)
    }

    private func restoreSnapshot(_ s: Snapshot) {
        for (p, values) in zip(encoderOptimizer.parameters, s.encoder) {
            values.withUnsafeBufferPointer { p.value.pointer.update(from: $0.baseAddress!, count: p.count) }
        }
        network.parameters = s.head
    }

    struct CheckpointState: Codable {
        var step: Int
        var epoch: Int
        var stepInEpoch: Int
        var lossSum: Double
        var bestScore: Double?
        var bestEpoch: Int
        var reports: [EpochReport]
        var options: FineTuneOptions
        var headOptimizerStep: Int
        var encoderOptimizerStep: Int

        enum CodingKeys: String, CodingKey {
            case step, epoch, stepInEpoch = "step_in_epoch", lossSum = "loss_sum", bestScore = "best_score"
            case bestEpoch = "best_epoch", reports, options, headOptimizerStep = "head_optimizer_step"
            case encoderOptimizerStep = "encoder_optimizer_step"
        }
    }

    /// Writes the run's whole state into `url` at once (a reader or a resume sees the old checkpoint or the new).
    private func save(_ state: RunState, to url: URL) throws {
        let encoderState = encoderOptimizer.state()
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for (i, p) in encoderOptimizer.parameters.enumerated() {
            tensors.append(("value.\(p.name)", [p.count], p.value.array))
            tensors.append(("m.\(p.name)", [p.count], encoderState.m[i]))
            tensors.append(("v.\(p.name)", [p.count], encoderState.v[i]))
            if let best = state.best { tensors.append(("best.\(p.name)", [p.count], best.encoder[i])) }
        }
        tensors.append(("head.value", [network.parameters.count], network.parameters))
        tensors.append(("head.m", [network.parameters.count], headOptimizer.m))
        tensors.append(("head.v", [network.parameters.count], headOptimizer.v))
        if let best = state.best { tensors.append(("head.best", [best.head.count], best.head)) }
        let weights = try SafetensorsWriter.encode(tensors, metadata: ["format": "gemma-encoder-checkpoint"])
        let json = JSONEncoder()
        json.outputFormatting = [.prettyPrinted, .sortedKeys]
        let stateData = try json.encode(CheckpointState(
            step: state.step, epoch: state.epoch, stepInEpoch: state.stepInEpoch, lossSum: state.lossSum,
            bestScore: state.best != nil ? state.bestScore : nil, bestEpoch: state.bestEpoch, reports: state.reports,
            options: options, headOptimizerStep: headOptimizer.step, encoderOptimizerStep: encoderState.step))
        try createDestinationDirectory(url.deletingLastPathComponent())
        try AtomicDirectory.replace(url) { temporary in
            for (name, data) in [("state.json", stateData), ("state.safetensors", weights)] {
                let file = temporary.appendingPathComponent(name)
                do { try data.write(to: file) } catch { throw AtomicWriteError(error, path: file.path, step: .write) }
            }
        }
    }

    private func restore(from url: URL) throws -> RunState {
        let saved: CheckpointState
        do throws(FormatError) {
            saved = try JSONFile.decode(CheckpointState.self, from: url.appendingPathComponent("state.json"))
        } catch { throw HeadError.invalidHead("\(error)") }
        // How the head started matters only before the first step, and every checkpoint comes after one (runs
        // checkpointed before the choice existed record none).
        var savedOptions = saved.options, ourOptions = options
        savedOptions.headInit = nil
        ourOptions.headInit = nil
        guard savedOptions == ourOptions else {
            throw HeadError.invalidData("\(url.path): the checkpoint was made with other training settings; resume with the same flags")
        }
        let file = try SafetensorsFile(url: url.appendingPathComponent("state.safetensors"))
        func values(_ name: String) throws -> [Float] {
            guard let t = file.tensors[name] else { throw HeadError.invalidHead("\(url.path)/state.safetensors: missing \(name)") }
            return t.floats().array
        }
        var m: [[Float]] = [], v: [[Float]] = [], best: [[Float]] = []
        for p in encoderOptimizer.parameters {
            let value = try values("value.\(p.name)")
            guard value.count == p.count else { throw HeadError.invalidHead("\(url.path): \(p.name) has \(value.count) values, the model \(p.count)") }
            value.withUnsafeBufferPointer { p.value.pointer.update(from: $0.baseAddress!, count: p.count) }
            m.append(try values("m.\(p.name)"))
            v.append(try values("v.\(p.name)"))
            if saved.bestScore != nil { best.append(try values("best.\(p.name)")) }
        }
        try encoderOptimizer.restore(step: saved.encoderOptimizerStep, m: m, v: v)
        network.parameters = try values("head.value")
        headOptimizer.m = try values("head.m")
        headOptimizer.v = try values("head.v")
        headOptimizer.step = saved.headOptimizerStep
        var state = RunState(step: saved.step, epoch: saved.epoch, stepInEpoch: saved.stepInEpoch, lossSum: saved.lossSum,
                             bestScore: saved.bestScore ?? -.infinity, bestEpoch: saved.bestEpoch, reports: saved.reports)
        if saved.bestScore != nil { state.best = Snapshot(encoder: best, head: try values("head.best")) }
        return state
    }
}

/// A per-step seed: SplitMix of the run's seed and the step.
public func mixSeed(_ seed: UInt64, _ step: UInt64) -> UInt64 {
    var g = SeededGenerator(seed: seed ^ (step &* 0x9E37_79B9_7F4A_7C15))
    return g.next()
}

extension Targets {
    /// The targets of `items`, in that order (a batch's own targets, indexed from 0); `outputs` per example.
    func subset(_ items: [Int], outputs: Int) -> Targets {
        switch self {
        case let .classes(labels, weights): .classes(items.map { labels[$0] }, weights: weights)
        case let .multiLabel(y): .multiLabel(items.flatMap { y[($0 * outputs)..<(($0 + 1) * outputs)] })
        case let .values(y): .values(items.flatMap { y[($0 * outputs)..<(($0 + 1) * outputs)] })
        case .groups, .pairs, .binary, .lambda, .listnet: self
        case let .margins(size, teacher): .margins(size: size, teacher: items.map { teacher[$0] })
        }
    }
}
