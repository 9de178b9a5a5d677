import EncoderKernels
import Foundation
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
        if case .lora = options.scope { pipeline.setTrained(false) } else { pipeline.setTrained(true) }
        optimizer = EncoderOptimizer(parameters: model.trainedParameters + pipeline.parameters.filter(\.isTrained),
                                     weightDecay: options.weightDecay, threads: self.threads)
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

    /// The epochs: each epoch's `batches`, one optimizer step per batch (`gradients` accumulates and returns
    /// the loss and tokens), `validate` before training and after each epoch; with validation, early stopping on
    /// its loss and the best epoch's weights restored at the end (the starting weights when none beat them).
    func train(batches: (Int) -> [[Int]], gradients: ([Int], Int) throws -> (loss: Double, tokens: Int),
               validate: (() throws -> Double)?, onStep: ((FineTuneStep) -> Void)?,
               onEpoch: ((EmbeddingEpochReport) -> Void)?) throws -> EmbeddingTrainingResult {
        // Every epoch's batches up front: without repeated texts their number varies from epoch to epoch, and
        // the schedule must end where training does.
        let plan = (1...options.epochs).map(batches)
        let total = plan.reduce(0) { $0 + $1.count }
        let schedule = LearningRateSchedule(peak: options.encoderLearningRate, warmup: Int((Float(total) * options.warmupFraction).rounded()),
                                            total: total, decay: options.decay)
        var step = 0, reports: [EmbeddingEpochReport] = [], best: (epoch: Int, loss: Double, values: [[Float]])?
        // The untrained model is "epoch 0": training is kept only where it beats it on validation.
        if let validate { best = (0, try validate(), optimizer.parameters.map(\.value.array)) }
        for epoch in 1...options.epochs {
            let started = Date()
            var lossSum = 0.0
            let groups = plan[epoch - 1]
            for batch in groups {
                let stepStart = Date()
                let (loss, tokens) = try gradients(batch, step)
                clip()
                optimizer.update(learningRate: schedule.rate(at: step))
                step += 1
                lossSum += loss
                onStep?(FineTuneStep(step: step, totalSteps: total, epoch: epoch, loss: loss,
                                     tokensPerSecond: Double(tokens) / max(Date().timeIntervalSince(stepStart), 1e-9)))
            }
            let validLoss = try validate?()
            let report = EmbeddingEpochReport(epoch: epoch, trainLoss: lossSum / Double(max(groups.count, 1)), validLoss: validLoss,
                                              seconds: Date().timeIntervalSince(started))
            reports.append(report)
            onEpoch?(report)
            guard let validLoss else { continue }
            if best == nil || validLoss < best!.loss {
                best = (epoch, validLoss, optimizer.parameters.map(\.value.array))
            } else if epoch - best!.epoch >= options.patience {
                break
            }
        }
        if let best, best.epoch != reports.count || best.epoch == 0 {
            for (p, values) in zip(optimizer.parameters, best.values) {
                values.withUnsafeBufferPointer { p.value.pointer.update(from: $0.baseAddress!, count: p.count) }
            }
        }
        return EmbeddingTrainingResult(epochs: reports, bestEpoch: best?.epoch ?? reports.count)  // 0: the model as it came
    }
}
