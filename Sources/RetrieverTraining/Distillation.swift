import EncoderKernels
import Foundation
import GemmaEncoder
import GemmaTraining
import TaskHeads

/// How a student learns a teacher's embeddings: the encoder's training settings and the objective.
public struct DistillationOptions: Codable, Sendable, Equatable {
    public enum Objective: String, Codable, Sendable, CaseIterable {
        /// Mean squared error over every component (sentence-transformers' MSELoss).
        case mse
        /// 1 − cosine, averaged over texts (direction only).
        case cosine
    }

    public var encoder = FineTuneOptions()
    public var objective = Objective.mse

    public init() {}

    /// The loss of student embeddings `s` against teacher embeddings `t` (rows × d) and dL/ds.
    public func loss(_ s: [Float], _ t: [Float], dimension d: Int) -> (loss: Double, gradient: [Float]) {
        precondition(s.count == t.count)
        let rows = s.count / d
        var gradient = [Float](repeating: 0, count: s.count)
        var loss = 0.0
        switch objective {
        case .mse:
            let n = Double(s.count)
            for i in s.indices {
                let e = Double(s[i]) - Double(t[i])
                loss += e * e / n
                gradient[i] = Float(2 * e / n)
            }
        case .cosine:
            for r in 0..<rows {
                var ss = 0.0, tt = 0.0, st = 0.0
                for k in 0..<d {
                    let a = Double(s[r * d + k]), b = Double(t[r * d + k])
                    ss += a * a; tt += b * b; st += a * b
                }
                let ns = max(ss.squareRoot(), 1e-12), nt = max(tt.squareRoot(), 1e-12), cos = st / (ns * nt)
                loss += (1 - cos) / Double(rows)
                // d(−cos)/ds = −(t/‖t‖ − cos · s/‖s‖) / ‖s‖.
                for k in 0..<d {
                    let a = Double(s[r * d + k]) / ns, b = Double(t[r * d + k]) / nt
                    gradient[r * d + k] = Float(-(b - cos * a) / ns / Double(rows))
                }
            }
        }
        return (loss, gradient)
    }
}

/// Trains a student encoder (and its pipeline) to reproduce a teacher's embeddings of unlabeled texts,
/// computed once beforehand.
public final class EmbeddingDistiller {
    public let options: DistillationOptions
    private let biEncoder: BiEncoder

    public var model: TrainableGemma { biEncoder.model }
    public var pipeline: TrainablePipeline { biEncoder.pipeline }

    public init(model: TrainableGemma, pipeline: TrainablePipeline, options: DistillationOptions,
                threads: Int = CPUBudget.threads) throws {
        try options.encoder.validate()
        if options.encoder.accumulation != 1 { throw RetrieverTrainingError.invalidOption("distillation takes no --accumulation: raise --batch-size") }
        self.options = options
        biEncoder = try BiEncoder(model: model, pipeline: pipeline, options: options.encoder, threads: threads)
    }

    /// Seeded shuffled batches of texts.
    public func batches(count: Int, epoch: Int) -> [[Int]] {
        var rng = SeededGenerator(seed: options.encoder.seed ^ (0xD157_0000 &+ UInt64(epoch)))
        var order = Array(0..<count)
        order.shuffle(using: &rng)
        return stride(from: 0, to: count, by: options.encoder.batchSize).map { Array(order[$0..<min($0 + options.encoder.batchSize, count)]) }
    }

    public func embed(_ inputs: [EncoderInput]) throws -> [Float] { try biEncoder.embed(inputs) }

    /// The mean loss against `targets` (dropout off).
    public func evaluate(_ inputs: [EncoderInput], targets: [Float]) throws -> Double {
        let d = pipeline.outputDimension
        return options.loss(try embed(inputs), targets, dimension: d).loss
    }

    /// Trains on `inputs` against `targets` (inputs.count × the student's output dimension, the teacher's
    /// embeddings); with validation texts, early stopping keeps the best epoch.
    public func run(inputs: [EncoderInput], targets: [Float], valid: (inputs: [EncoderInput], targets: [Float])?,
                    checkpoint: URL? = nil, resume: Bool = false, onStep: ((FineTuneStep) -> Void)? = nil,
                    onEpoch: ((EmbeddingEpochReport) -> Void)? = nil) throws -> EmbeddingTrainingResult {
        let d = pipeline.outputDimension
        guard !inputs.isEmpty, targets.count == inputs.count * d else {
            throw RetrieverTrainingError.invalidData("\(inputs.count) texts need \(inputs.count) teacher vectors of \(d) values")
        }
        return try biEncoder.train(
            batches: { self.batches(count: inputs.count, epoch: $0) },
            gradients: { batch, step in
                let chunk = batch.map { inputs[$0] }
                let (pass, tape) = try self.biEncoder.forward(chunk, seed: mixSeed(self.options.encoder.seed, UInt64(step)), training: true)
                let goal = batch.flatMap { targets[($0 * d)..<(($0 + 1) * d)] }
                let (loss, gradient) = self.options.loss(tape.output, goal, dimension: d)
                self.biEncoder.backward(pass, tape, gradOutput: gradient)
                return (loss, chunk.reduce(0) { $0 + $1.ids.count })
            },
            validate: valid.map { v in { try self.evaluate(v.inputs, targets: v.targets) } },
            checkpoint: try checkpoint.map { .init(url: $0, every: options.encoder.checkpointEvery, resume: resume,
                                                   settings: try canonicalJSON(options)) },
            onStep: onStep, onEpoch: onEpoch)
    }
}
