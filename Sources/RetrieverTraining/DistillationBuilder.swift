import EncoderKernels
import Foundation
import GemmaEncoder
import GemmaModel
import GemmaTraining
import ModelFormats
import TaskHeads

/// `train --task distill`: a student learns a teacher's embeddings of unlabeled texts (the teacher's vectors
/// computed once, cached), optionally built from a subset of the teacher's own layers, with a learned
/// projection when the dimensions differ; written as a sentence-transformers directory with the teacher's
/// prompts.
public enum DistillationBuilder {
    public struct Run: Sendable {
        public var options: DistillationOptions
        /// Build the student from this many of its model's layers, evenly spaced (first and last kept).
        public var studentLayers: Int?
        /// Each text is distilled once under each of these prompts (nil: no prompt) — by default the teacher's
        /// query and document prompts, so the student learns both sides of retrieval.
        public var prompts: [String?] = [nil]
        public var validFraction = 0.05
        public var tokenizerDirectory: URL?
        /// Where checkpoints go (removed once the student is written), and whether to continue from one.
        public var checkpoint: URL?
        public var resume = false

        public init(options: DistillationOptions) { self.options = options }
    }

    public struct Summary: Codable, Sendable {
        public var teacher: String
        public var student: String
        public var studentLayers: [Int]?
        public var projection: Bool
        public var options: DistillationOptions
        public var trainTexts: Int
        public var validTexts: Int
        public var bestEpoch: Int
        public var epochs: [EmbeddingEpochReport]

        enum CodingKeys: String, CodingKey {
            case teacher, student, studentLayers = "student_layers", projection, options, trainTexts = "train_texts"
            case validTexts = "valid_texts", bestEpoch = "best_epoch", epochs
        }
    }

    public static func train(teacher: TextEncoder, teacherName: String, student: TextEncoder, studentName: String, texts: [String],
                             run: Run, cache: TokenStateCache?, out: URL, onStep: ((FineTuneStep) -> Void)? = nil,
                             onEpoch: ((EmbeddingEpochReport) -> Void)? = nil,
                             progress: ((String) -> Void)? = nil) throws -> Summary {
        guard texts.count >= 2 else { throw RetrieverTrainingError.invalidData("distillation needs at least 2 texts, got \(texts.count)") }
        let o = run.options.encoder
        // One pass per distinct prompt (a model whose query and document prompts are the same, e.g. both "").
        var prompts: [String?] = []
        for p in run.prompts.map({ $0?.isEmpty == true ? nil : $0 }) where !prompts.contains(p) { prompts.append(p) }
        let (tokenizer, tokenizerDirectory) = try FineTuneBuilder.exportTokenizer(encoder: student, given: run.tokenizerDirectory)
        var studentInputs: [EncoderInput] = [], teacherInputs: [EncoderInput] = []
        for prompt in prompts {
            studentInputs += TextEncoder.tokenize(texts, with: tokenizer, prompt: prompt, maxLength: o.maxLength)
            teacherInputs += teacher.tokenize(texts, prompt: prompt, maxLength: o.maxLength)
        }
        progress?("embedding \(teacherInputs.count) texts with the teacher")
        let embeddingOptions = EmbeddingOptions(attention: o.attention)
        let digest = try ModelFingerprint.digest(of: teacher.source)
        let vectors = try cache.map { try $0.embeddings(teacherInputs, encoder: teacher, modelDigest: digest, options: embeddingOptions) }
            ?? teacher.embed(teacherInputs, options: embeddingOptions)
        let teacherDimension = vectors[0].count

        // Held-out texts by text, so a text's query- and document-prompt versions stay on one side.
        var rng = SeededGenerator(seed: o.seed &+ 0xD157)
        let split = try HoldOutSplit(count: texts.count, fraction: run.validFraction, using: &rng)
        func rows(_ textIndices: [Int]) -> [Int] { prompts.indices.flatMap { p in textIndices.map { p * texts.count + $0 } } }
        let trainRows = rows(split.train), validRows = rows(split.valid)

        var layers: [Int]?
        if let n = run.studentLayers {
            // The student's own depth decides the spacing.
            guard let config = (student.model as? GemmaTransformer)?.config else {
                throw RetrieverTrainingError.invalidOption("--student-layers builds a student from a Gemma model's own layers; \(studentName) is not one")
            }
            guard n > 0, n < config.numLayers else {
                throw RetrieverTrainingError.invalidOption("--student-layers \(n) must be between 1 and \(config.numLayers - 1) (the model has \(config.numLayers) layers)")
            }
            layers = config.evenlySpacedLayers(n)
        }
        let model = try student.source.loadTrainable(layers: layers)
        var source = student.pipeline
        let projection = source.outputDimension != teacherDimension
        if projection {
            // A learned map from the student's dimension to the teacher's, as sentence-transformers' distillation
            // adds a Dense module; small random start.
            var g = SeededGenerator(seed: o.seed &+ 0x9A0)
            let scale = 1 / Float(source.outputDimension).squareRoot()
            source.dense.append(DenseLayer(weight: FloatBuffer((0..<(teacherDimension * source.outputDimension)).map { _ in g.normal() * scale }),
                                           bias: FloatBuffer([Float](repeating: 0, count: teacherDimension)),
                                           inputDimension: source.outputDimension, outputDimension: teacherDimension, activation: .identity))
            source.normalize = teacher.pipeline.normalize
        }
        let pipeline = try TrainablePipeline(source)
        let distiller = try EmbeddingDistiller(model: model, pipeline: pipeline, options: run.options)
        func gather(_ rows: [Int]) -> (inputs: [EncoderInput], targets: [Float]) {
            (rows.map { studentInputs[$0] }, rows.flatMap { vectors[$0] })
        }
        let train = gather(trainRows), valid = gather(validRows)
        let result = try distiller.run(inputs: train.inputs, targets: train.targets, valid: valid, checkpoint: run.checkpoint,
                                       resume: run.resume, onStep: onStep, onEpoch: onEpoch)
        let summary = Summary(teacher: teacherName, student: studentName, studentLayers: layers, projection: projection,
                              options: run.options, trainTexts: split.train.count, validTexts: split.valid.count,
                              bestEpoch: result.bestEpoch, epochs: result.epochs)
        let json = JSONEncoder()
        json.outputFormatting = [.prettyPrinted, .sortedKeys]
        // The teacher's prompts, except that the names retrieval looks up say what the student learned under:
        // its query and document prompts when it learned both, else the one prompt (or none, "") it saw.
        var exported = teacher.prompts
        let distilledBoth = prompts.count == 2 && prompts[0] == teacher.prompts["query"] && prompts[1] == teacher.prompts["document"]
        if !distilledBoth {
            exported["query"] = (prompts.first ?? nil) ?? ""
            exported["document"] = (prompts.first ?? nil) ?? ""
        }
        try SentenceTransformersExport.write(
            model: model, pipeline: pipeline,
            settings: .init(attention: o.attention, tokenizerDirectory: tokenizerDirectory, baseModelName: studentName,
                            prompts: exported, maxSequenceLength: min(student.maxSequenceLength, teacher.maxSequenceLength),
                            training: try json.encode(summary)),
            to: out)
        if let checkpoint = run.checkpoint { try? FileManager.default.removeItem(at: checkpoint) }
        return summary
    }
}
