import AtomicFiles
import EncoderKernels
import Foundation
import ModelFormats
import GemmaEncoder
import GemmaTraining
import TaskHeads

/// An encoder and the pipeline after it, trained together: what bi-encoder training and distillation share —
/// the forward with or without a tape, the backward into both, the optimizer over everything that trains,
/// clipping, and the epoch loop with its schedule and best-epoch selection.
final class BiEncoder {
    let model: TrainableGemma
    let pipeline: TrainablePipeline
    let options: FineTuneOptions
    let threads: Int
    let optimizer: EncoderOptimizer

    /// Prepares `options.scope` on the model; the pipeline's Dense layers train too except under LoRA (PEFT
    /// saves adapters only).
    init(model: TrainableGemma, pipeline: TrainablePipeline, options: FineTuneOptions, threads: Int) throws {
        self.model = model
        self.pipeline = pipeline
        self.options = options
        self.threads = max(1, threads)
        try model.prepare(options.scope, trainEmbeddings: options.trainEmbeddings, seed: options.seed)
        model.products = options.products ?? .f32
        if case .lora = options.scope { pipeline.setTrained(false) } else { pipeline.setTrained(true) }
        let trained = model.trainedParameters + pipeline.parameters.filter(\.isTrained)
        optimizer = EncoderOptimizer(model: model, parameters: trained, options: options, threads: self.threads)
    }

    /// The embeddings of `inputs` (rows × outputDimension) and, when `training`, what the backward needs
    /// (dropout drawn from `seed`); without `keepTape` the pass cannot be followed by a backward.
    func forward(_ inputs: [EncoderInput], seed: UInt64, training: Bool, keepTape: Bool? = nil) throws
        -> (pass: TrainableGemma.Pass, tape: TrainablePipeline.Tape) {
        let pass = try model.forward(inputs.map(\.ids), mode: options.attention, dropout: training ? options.dropout : .none, seed: seed,
                                     threads: threads, checkpointing: options.activationCheckpointing, keepTape: keepTape ?? training)
        let tape = pipeline.forward(hidden: pass.hidden.pointer, offsets: pass.batch.offsets,
                                    promptTokens: inputs.map(\.promptTokens), threads: threads)
        return (pass, tape)
    }

    /// Accumulates the gradients of everything that trains, given dL/d(embeddings) of a forward.
    func backward(_ pass: TrainableGemma.Pass, _ tape: TrainablePipeline.Tape, gradOutput: [Float]) {
        let gradHidden = Tensor(count: pass.hidden.count)
        pipeline.backward(tape, gradOutput: gradOutput, gradHidden: gradHidden.pointer, threads: threads)
        model.backward(pass, gradHidden: gradHidden.pointer)
    }

    /// Embeddings (dropout off), `chunk` texts per forward, in order.
    func embed(_ inputs: [EncoderInput], chunk: Int = 32) throws -> [Float] {
        var out: [Float] = []
        for start in stride(from: 0, to: inputs.count, by: chunk) {
            out += try forward(Array(inputs[start..<min(start + chunk, inputs.count)]), seed: 0, training: false).tape.output
        }
        return out
    }

    /// Global-norm clipping of the step's gradients.
    func clip() {
        guard options.clipNorm > 0 else { return }
        let norm = optimizer.squaredGradientNorm().squareRoot()
        if norm > Double(options.clipNorm) { optimizer.scaleGradients(by: Float(Double(options.clipNorm) / (norm + 1e-6))) }
    }

    /// Where a run's state goes, every `every` steps and after each epoch, and whether to continue from it.
    /// `settings` (the run's whole options, encoded) must match on resume.
    struct Checkpoint {
        var url: URL
        var every: Int
        var resume: Bool
        var settings: Data
    }

    /// What a run has done so far (and a checkpoint holds).
    struct RunState: Codable {
        var step = 0
        var epoch = 1
        var stepInEpoch = 0
        var lossSum = 0.0
        var reports: [EmbeddingEpochReport] = []
        var bestEpoch: Int?
        var bestLoss: Double?
        var settings: Data

        enum CodingKeys: String, CodingKey {
            case step, epoch, stepInEpoch = "step_in_epoch", lossSum = "loss_sum", reports, bestEpoch = "best_epoch"
            case bestLoss = "best_loss", settings
        }
    }

    /// The epochs: each epoch's `batches`, one optimizer step per batch (`gradients` accumulates and returns
    /// the loss and tokens), `validate` before training and after each epoch; with validation, early stopping on
    /// its loss and the best epoch's weights restored at the end (the starting weights when none beat them).
    /// With `checkpoint`, a run killed at any point and resumed ends with the weights of a run never killed.
    func train(batches: (Int) -> [[Int]], gradients: ([Int], Int) throws -> (loss: Double, tokens: Int),
               validate: (() throws -> Double)?, checkpoint: Checkpoint? = nil, onStep: ((FineTuneStep) -> Void)?,
               onEpoch: ((EmbeddingEpochReport) -> Void)?) throws -> EmbeddingTrainingResult {
        // Every epoch's batches up front: without repeated texts their number varies from epoch to epoch, and
        // the schedule must end where training does.
        let plan = (1...options.epochs).map(batches)
        let total = plan.reduce(0) { $0 + $1.count }
        let schedule = LearningRateSchedule(peak: options.encoderLearningRate, warmup: Int((Float(total) * options.warmupFraction).rounded()),
                                            total: total, decay: options.decay)
        var state = RunState(settings: checkpoint?.settings ?? Data())
        var best: [[Float]]?
        if let checkpoint, checkpoint.resume, FileManager.default.fileExists(atPath: checkpoint.url.appendingPathComponent("state.json").path) {
            (state, best) = try restore(from: checkpoint)
        } else if let validate {
            // The untrained model is "epoch 0": training is kept only where it beats it on validation.
            (state.bestEpoch, state.bestLoss, best) = (0, try validate(), optimizer.parameters.map(\.value.array))
        }
        epochs: for epoch in state.epoch...options.epochs {
            let started = Date()
            let groups = plan[epoch - 1]
            while state.stepInEpoch < groups.count {
                let stepStart = Date()
                let (loss, tokens) = try gradients(groups[state.stepInEpoch], state.step)
                clip()
                optimizer.update(learningRate: schedule.rate(at: state.step))
                state.step += 1
                state.stepInEpoch += 1
                state.lossSum += loss
                onStep?(FineTuneStep(step: state.step, totalSteps: total, epoch: epoch, loss: loss,
                                     tokensPerSecond: Double(tokens) / max(Date().timeIntervalSince(stepStart), 1e-9)))
                if let checkpoint, checkpoint.every > 0, state.step % checkpoint.every == 0, state.stepInEpoch < groups.count {
                    try save(state, best: best, to: checkpoint.url)
                }
            }
            let validLoss = try validate?()
            let report = EmbeddingEpochReport(epoch: epoch, trainLoss: state.lossSum / Double(max(groups.count, 1)), validLoss: validLoss,
                                              seconds: Date().timeIntervalSince(started))
            state.reports.append(report)
            onEpoch?(report)
            state.epoch = epoch + 1
            state.stepInEpoch = 0
            state.lossSum = 0
            var stop = false
            if let validLoss {
                if state.bestLoss == nil || validLoss < state.bestLoss! {
                    (state.bestEpoch, state.bestLoss, best) = (epoch, validLoss, optimizer.parameters.map(\.value.array))
                } else if epoch - (state.bestEpoch ?? 0) >= options.patience {
                    stop = true
                }
            }
            if let checkpoint { try save(state, best: best, to: checkpoint.url) }
            if stop { break epochs }
        }
        if let best, let bestEpoch = state.bestEpoch, bestEpoch != state.reports.count {
            for (p, values) in zip(optimizer.parameters, best) {
                values.withUnsafeBufferPointer { p.value.pointer.update(from: $0.baseAddress!, count: p.count) }
            }
        }
        // 0: the model as it came.
        return EmbeddingTrainingResult(epochs: state.reports, bestEpoch: state.bestEpoch ?? state.reports.count)
    }

    /// The run's state, every trained value, the optimizer's moments and the best snapshot, swapped in at once.
    private func save(_ state: RunState, best: [[Float]]?, to url: URL) throws {
        let moments = optimizer.state()
        var tensors: [(name: String, shape: [Int], values: [Float])] = []
        for (i, p) in optimizer.parameters.enumerated() {
            tensors += [("value.\(p.name)", [p.count], p.value.array), ("m.\(p.name)", [p.count], moments.m[i]),
                        ("v.\(p.name)", [p.count], moments.v[i])]
            if let best { tensors.append(("best.\(p.name)", [p.count], best[i])) }
        }
        let weights = try SafetensorsWriter.encode(tensors, metadata: ["format": "gemma-encoder-checkpoint", "optimizer_step": "\(moments.step)"])
        let json = JSONEncoder()
        json.outputFormatting = [.prettyPrinted, .sortedKeys]
        let stateData = try json.encode(state)
        try createDestinationDirectory(url.deletingLastPathComponent())
        try AtomicDirectory.replace(url) { temporary in
            for (name, data) in [("state.json", stateData), ("state.safetensors", weights)] {
                let file = temporary.appendingPathComponent(name)
                do { try data.write(to: file) } catch { throw AtomicWriteError(error, path: file.path, step: .write) }
            }
        }
    }

    private func restore(from checkpoint: Checkpoint) throws -> (RunState, [[Float]]?) {
        let url = checkpoint.url
        let state: RunState
        do throws(FormatError) { state = try JSONFile.decode(RunState.self, from: url.appendingPathComponent("state.json")) } catch {
            throw RetrieverTrainingError.invalidData("\(error)")
        }
        guard state.settings == checkpoint.settings else {
            throw RetrieverTrainingError.invalidData("\(url.path): the checkpoint was made with other training settings; resume with the same flags")
        }
        let file = try SafetensorsFile(url: url.appendingPathComponent("state.safetensors"))
        func values(_ name: String, _ count: Int) throws -> [Float] {
            guard let t = file.tensors[name], t.elementCount == count else {
                throw RetrieverTrainingError.invalidData("\(url.path)/state.safetensors: \(name) is missing or has the wrong size")
            }
            return t.floats().array
        }
        var m: [[Float]] = [], v: [[Float]] = [], best: [[Float]] = []
        for p in optimizer.parameters {
            let value = try values("value.\(p.name)", p.count)
            value.withUnsafeBufferPointer { p.value.pointer.update(from: $0.baseAddress!, count: p.count) }
            m.append(try values("m.\(p.name)", p.count))
            v.append(try values("v.\(p.name)", p.count))
            if state.bestLoss != nil { best.append(try values("best.\(p.name)", p.count)) }
        }
        guard let step = file.metadata["optimizer_step"].flatMap(Int.init) else {
            throw RetrieverTrainingError.invalidData("\(url.path)/state.safetensors: no optimizer step")
        }
        try optimizer.restore(step: step, m: m, v: v)
        return (state, state.bestLoss != nil ? best : nil)
    }
}

/// `value` as JSON with sorted keys: the same bytes in every process (a plain encoder's key order follows
/// hashing, which is seeded per process), so two runs' settings compare equal.
func canonicalJSON(_ value: some Encodable) throws -> Data {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return try encoder.encode(value)
}
