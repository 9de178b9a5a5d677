import EncoderKernels
import Foundation
import GemmaEncoder
import GemmaModel
import GemmaTraining
import TaskHeads
import TestSupport
import XCTest

/// The fine-tuning loop on the tiny checkpoints: it learns, it is repeatable, and a run stopped midway
/// resumes from its checkpoint to the same weights as a run never stopped.
final class FineTunerTests: XCTestCase {
    /// Texts of random tokens; the class is which of three marker tokens the text contains.
    func task(count: Int, seed: UInt64) -> FineTuneData {
        var g = SeededGenerator(seed: seed)
        var sequences: [[Int32]] = [], labels: [Int] = []
        for _ in 0..<count {
            let label = Int(g.next() % 3)
            var ids = (0..<(4 + Int(g.next() % 9))).map { _ in Int32(10 + g.next() % 300) }
            ids.insert(Int32(1 + label), at: Int(g.next() % UInt64(ids.count)))
            sequences.append([2] + ids)
            labels.append(label)
        }
        return FineTuneData(sequences: sequences, targets: .classes(labels, weights: [1, 1, 1]))
    }

    func tuner(_ options: FineTuneOptions, family: String = "gemma3") throws -> EncoderFineTuner {
        let model = try trainableTiny(family, scope: .none, embeddings: false)
        let architecture = HeadArchitecture(inputDimension: 64, outputs: 3, pooling: .mean, hiddenSize: nil, dropout: 0.1)
        return try EncoderFineTuner(model: model, architecture: architecture, options: options, threads: 2)
    }

    var options: FineTuneOptions {
        var o = FineTuneOptions()
        o.epochs = 4
        o.batchSize = 8
        o.encoderLearningRate = 3e-3
        o.headLearningRate = 1e-2
        o.dropout = EncoderDropout(attention: 0.1, residual: 0.1)
        o.patience = 4
        o.seed = 5
        return o
    }

    func weights(_ t: EncoderFineTuner) -> [Float] {
        t.model.trainedParameters.flatMap(\.value.array) + t.network.parameters
    }

    func testFineTuningLearnsWhatTheFrozenEncoderCannot() throws {
        let train = task(count: 96, seed: 1), valid = task(count: 48, seed: 2)
        var frozen = options
        frozen.scope = .none
        let head = try tuner(frozen).run(train: train, valid: valid)
        let full = try tuner(options).run(train: train, valid: valid)
        let frozenAccuracy = head.epochs.map { $0.validAccuracy! }.max()!
        let tunedAccuracy = full.epochs.map { $0.validAccuracy! }.max()!
        XCTAssertLessThan(full.epochs.last!.trainLoss, full.epochs.first!.trainLoss)
        XCTAssertGreaterThan(tunedAccuracy, frozenAccuracy, "fine-tuned \(full.epochs) vs frozen \(head.epochs)")
    }

    /// `--train-precision bf16`: the same run with bf16 products reaches the f32 run's validation accuracy (within
    /// one of the 48 validation texts) and ends with a lower training loss than it started with.
    func testBF16ProductsReachTheSameValidationScore() throws {
        let train = task(count: 96, seed: 1), valid = task(count: 48, seed: 2)
        let f32 = try tuner(options).run(train: train, valid: valid)
        var bf16Options = options
        bf16Options.products = .bf16
        let bf16 = try tuner(bf16Options).run(train: train, valid: valid)
        let f32Best = f32.epochs.map { $0.validAccuracy! }.max()!, bf16Best = bf16.epochs.map { $0.validAccuracy! }.max()!
        XCTAssertLessThan(bf16.epochs.last!.trainLoss, bf16.epochs.first!.trainLoss)
        XCTAssertGreaterThanOrEqual(bf16Best, f32Best - 1.0 / 48 - 1e-6, "bf16 \(bf16.epochs) vs f32 \(f32.epochs)")
        print("validation accuracy, best epoch: f32 \(f32Best), bf16 \(bf16Best)")
    }

    /// Probing then fine-tuning: before the first step, the head is the one trained on the frozen encoder's
    /// states — the exact L2 fit for a linear head, AdamW for an MLP head and for attention pooling — far better
    /// than the random start it replaces.
    func testHeadStartsFromTheProbe() throws {
        let train = task(count: 96, seed: 1), valid = task(count: 48, seed: 2)
        let heads = [HeadArchitecture(inputDimension: 64, outputs: 3, pooling: .mean, hiddenSize: nil, dropout: 0.1),
                     HeadArchitecture(inputDimension: 64, outputs: 3, pooling: .mean, hiddenSize: 32, dropout: 0.1),
                     HeadArchitecture(inputDimension: 64, outputs: 3, pooling: .attention, attentionHeads: 2, dropout: 0.1)]
        for (architecture, solver) in zip(heads, [HeadSolver.lbfgs, .adamw, .adamw]) {
            func start(_ headInit: FineTuneOptions.HeadInit) throws -> (EncoderFineTuner, Double) {
                var o = options
                o.headInit = headInit
                let tuner = try EncoderFineTuner(model: try trainableTiny("gemma3", scope: .none, embeddings: false),
                                                 architecture: architecture, options: o, threads: 2)
                let result = try tuner.run(train: train, valid: valid, stopAfter: 0)
                return (tuner, HeadTrainer.evaluate(result.network, try tuner.states(valid), valid.targets).loss)
            }
            let (probed, probeLoss) = try start(.probe)
            let (_, randomLoss) = try start(.random)
            XCTAssertLessThan(probeLoss, randomLoss - 0.05, "\(architecture): probe \(probeLoss), random \(randomLoss)")
            var fit = TrainingOptions()
            fit.solver = solver
            fit.seed = options.seed
            let frozen = try HeadTrainer.train(architecture: architecture, train: try probed.states(train), trainTargets: train.targets,
                                               valid: try probed.states(valid), validTargets: valid.targets, options: fit)
            XCTAssertEqual(probed.network.parameters, frozen.network.parameters, "\(architecture)")
        }
    }

    /// The linear head of the probe tests: mean pooling over the tiny model's 64 dimensions, three classes.
    private let linear = HeadArchitecture(inputDimension: 64, outputs: 3, pooling: .mean, hiddenSize: nil, dropout: 0.1)

    /// Rates of 5 for the encoder and the head: every fine-tuned epoch does worse on validation than the probe.
    private func wreckingOptions(epochs: Int, patience: Int) -> FineTuneOptions {
        var o = options
        o.epochs = epochs
        o.encoderLearningRate = 5
        o.headLearningRate = 5
        o.patience = patience
        return o
    }

    /// The probe on the untouched encoder is epoch 0: a run whose epochs all do worse on validation (here, a
    /// learning rate that wrecks the encoder) returns the probe and the encoder it started from.
    func testARunNeverEndsBelowTheLinearProbe() throws {
        let train = task(count: 64, seed: 1), valid = task(count: 32, seed: 2)
        let o = wreckingOptions(epochs: 2, patience: 2)
        let start = try trainableTiny("gemma3", scope: .none, embeddings: false)
        let initial = start.checkpointTensors().flatMap(\.values)
        let tuner = try EncoderFineTuner(model: start, architecture: linear, options: o, threads: 2)
        let probeOnly = try EncoderFineTuner(model: try trainableTiny("gemma3", scope: .none, embeddings: false), architecture: linear,
                                             options: o, threads: 2)
        let probe = try probeOnly.run(train: train, valid: valid, stopAfter: 0).network
        let result = try tuner.run(train: train, valid: valid)
        XCTAssertEqual(result.bestEpoch, 0, "\(result.epochs)")
        XCTAssertEqual(result.network.parameters, probe.parameters)
        XCTAssertEqual(tuner.model.checkpointTensors().flatMap(\.values), initial)
    }

    /// Patience counts from the best fine-tuned epoch, not from the probe: with patience 1, a first epoch below
    /// the probe does not end the run (the probe is still what it returns when nothing beats it).
    func testEpochsBelowTheProbeDoNotEndTheRunEarly() throws {
        let train = task(count: 64, seed: 1), valid = task(count: 32, seed: 2)
        let tuner = try EncoderFineTuner(model: try trainableTiny("gemma3", scope: .none, embeddings: false), architecture: linear,
                                         options: wreckingOptions(epochs: 3, patience: 1), threads: 2)
        let result = try tuner.run(train: train, valid: valid)
        XCTAssertEqual(result.bestEpoch, 0, "\(result.epochs)")
        XCTAssertGreaterThanOrEqual(result.epochs.count, 2, "the run went past its first epoch below the probe")
    }

    func testSameSeedSameResult() throws {
        let train = task(count: 40, seed: 1), valid = task(count: 16, seed: 2)
        var o = options
        o.epochs = 2
        o.scope = .lora(rank: 2, alpha: 4, targets: [.q, .v, .down])
        let a = try tuner(o), b = try tuner(o)
        _ = try a.run(train: train, valid: valid)
        _ = try b.run(train: train, valid: valid)
        XCTAssertEqual(weights(a), weights(b))
    }

    /// Stopped after 7 steps (mid-epoch 2 of 5 steps each, checkpoints every 2) and resumed in a fresh trainer
    /// from the checkpoint of step 6: the same weights and the same epoch reports.
    func testResumedRunEndsWithTheSameWeights() throws {
        let train = task(count: 40, seed: 1), valid = task(count: 16, seed: 2)
        var o = options
        o.epochs = 3
        o.checkpointEvery = 2
        o.accumulation = 2
        o.batchSize = 4
        o.scope = .top(2)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("resume-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let whole = try tuner(o)
        let reference = try whole.run(train: train, valid: valid)

        let first = try tuner(o)
        let stopped = try first.run(train: train, valid: valid, checkpoint: directory, stopAfter: 7)
        XCTAssertEqual(stopped.stepsRun, 7)
        let second = try tuner(o)
        let resumed = try second.run(train: train, valid: valid, checkpoint: directory, resume: true)
        XCTAssertEqual(resumed.stepsRun, reference.stepsRun - 6, "resumes from the checkpoint of step 6")
        XCTAssertEqual(weights(second), weights(whole))
        func withoutTimes(_ reports: [EpochReport]) -> [EpochReport] { reports.map { var r = $0; r.seconds = 0; return r } }
        XCTAssertEqual(withoutTimes(resumed.epochs), withoutTimes(reference.epochs))

        // A checkpoint written before the head's start was a setting (no "head_init") still resumes.
        let third = try tuner(o)
        _ = try third.run(train: train, valid: valid, checkpoint: directory, stopAfter: 7)
        let stateURL = directory.appendingPathComponent("state.json")
        var state = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: stateURL)) as? [String: Any])
        var recorded = try XCTUnwrap(state["options"] as? [String: Any])
        XCTAssertNotNil(recorded.removeValue(forKey: "head_init"))
        state["options"] = recorded
        try JSONSerialization.data(withJSONObject: state).write(to: stateURL)
        let fourth = try tuner(o)
        _ = try fourth.run(train: train, valid: valid, checkpoint: directory, resume: true)
        XCTAssertEqual(weights(fourth), weights(whole))
    }

    func testCheckpointWithOtherSettingsIsRefused() throws {
        let train = task(count: 16, seed: 1), valid = task(count: 8, seed: 2)
        var o = options
        o.epochs = 1
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("resume-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        _ = try tuner(o).run(train: train, valid: valid, checkpoint: directory)
        o.encoderLearningRate *= 2
        XCTAssertThrowsError(try tuner(o).run(train: train, valid: valid, checkpoint: directory, resume: true)) { error in
            XCTAssertTrue("\(error)".contains("other training settings"), "\(error)")
        }
    }

    /// Two micro-batches of 4 per step are one batch of 8: the same mean loss and the same gradients.
    func testAccumulationEqualsTheLargerBatch() throws {
        let train = task(count: 8, seed: 1)
        var o = options
        o.dropout = .none
        o.clipNorm = 0
        func gradients(_ microBatches: [[Int]]) throws -> (Double, [Float]) {
            let model = try trainableTiny("gemma2", scope: .none, embeddings: false)
            let architecture = HeadArchitecture(inputDimension: 64, outputs: 3, pooling: .attention, hiddenSize: nil, dropout: 0)
            let t = try EncoderFineTuner(model: model, architecture: architecture, options: o, threads: 1)
            let (loss, _, head) = try t.gradients(microBatches, train: train, prefixes: nil, step: 0)
            return (loss, t.model.trainedParameters.flatMap { $0.gradient!.array } + head)
        }
        let (bigLoss, big) = try gradients([Array(0..<8)])
        let (accumulatedLoss, accumulated) = try gradients([Array(0..<4), Array(4..<8)])
        XCTAssertEqual(bigLoss, accumulatedLoss, accuracy: 1e-6)
        let scale = big.map(abs).max()!
        XCTAssertGreaterThan(scale, 0)
        XCTAssertLessThanOrEqual(zip(big, accumulated).map { abs($0 - $1) }.max()!, 1e-5 * scale)
        let (_, half) = try gradients([Array(0..<4)])
        XCTAssertGreaterThan(zip(big, half).map { abs($0 - $1) }.max()!, 1e-3 * scale, "other texts, other gradients")
    }

    /// Layer-wise rate decay: from the same start and batch, AdamW's first step (lr · g/(|g| + ε) plus the decay
    /// term, both linear in the rate) moves each parameter by its layer's scale times the undecayed step — decay^(L − i)
    /// for layer i's weights and LoRA adapters, decay^(L + 1) for the embeddings, 1 for the final norm
    /// (`layerDecayMismatches`) — and a decay of 1 is the plain run bit for bit.
    func testLayerDecayScalesEachLayersStep() throws {
        let train = task(count: 8, seed: 1)
        for scope in [FineTuneScope.all, .lora(rank: 2, alpha: 4, targets: [.q, .down])] {
            func stepped(_ decay: Float?) throws -> [ParameterStep] {
                var o = options
                o.scope = scope
                o.trainEmbeddings = scope == .all
                o.dropout = .none
                o.layerDecay = decay
                let t = try tuner(o, family: "gemma2")
                let before = t.model.trainedParameters.map(\.value.array)
                _ = try t.step([Array(0..<8)], train: train, step: 0, encoderRate: 1e-2, headRate: 1e-2)
                return zip(t.model.trainedParameters, before).map { p, b in
                    ParameterStep(name: p.name, moved: zip(p.value.array, b).map { $0 - $1 }, largest: b.map(abs).max()!)
                }
            }
            let plain = try stepped(nil), one = try stepped(1), half = try stepped(0.5)
            XCTAssertEqual(plain.map(\.moved), one.map(\.moved), "decay 1 is the plain run")
            var recorded = options
            recorded.layerDecay = 1
            XCTAssertNil(recorded.layerDecay, "decay 1 is recorded as none, so either resumes the other")
            let layers = try trainableTiny("gemma2", scope: .none, embeddings: false).config.numLayers
            let check = layerDecayMismatches(plain: plain, decayed: half, decay: 0.5, layers: layers)
            XCTAssertEqual(check.mismatches, [], "\(scope)")
            XCTAssertGreaterThanOrEqual(check.depths, scope == .all ? layers + 2 : layers, "\(scope): every depth checked")
        }
    }

    func testSchedules() {
        let linear = LearningRateSchedule(peak: 1, warmup: 10, total: 110)
        let cosine = LearningRateSchedule(peak: 1, warmup: 10, total: 110, decay: .cosine)
        XCTAssertEqual(linear.rate(at: 0), 0.1, accuracy: 1e-6)
        XCTAssertEqual(cosine.rate(at: 9), 1, accuracy: 1e-6)
        XCTAssertEqual(linear.rate(at: 60), 0.5, accuracy: 1e-6)
        XCTAssertEqual(cosine.rate(at: 60), 0.5, accuracy: 1e-6)     // halfway: 0.5 · (1 + cos π/2)
        XCTAssertEqual(cosine.rate(at: 35), 0.5 * (1 + cos(Float.pi / 4)), accuracy: 1e-6)
        XCTAssertEqual(cosine.rate(at: 110), 0, accuracy: 1e-6)
    }
}
