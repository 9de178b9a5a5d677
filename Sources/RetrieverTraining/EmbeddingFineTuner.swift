import EncoderKernels
import Foundation
import GemmaEncoder
import GemmaModel
import GemmaTokenizer
import GemmaTraining
import TaskHeads

/// How a bi-encoder trains: the encoder's optimizer settings (scope, rate, batch, schedule, dropout — the
/// fine-tuning options; the head rate is unused, the Dense layers train at the encoder's rate as in
/// sentence-transformers), the contrastive loss, and the gradient cache.
public struct EmbeddingTrainingOptions: Codable, Sendable, Equatable {
    public var encoder = FineTuneOptions()
    public var loss = ContrastiveLoss()
    /// Texts per forward pass. When a batch holds more, the loss is gradient-cached (GradCache, as
    /// sentence-transformers' Cached* losses): every text is embedded without a tape, the loss and its gradient
    /// taken over the whole batch, then each mini-batch is run again with its tape and back-propagated with its
    /// rows of that gradient. Memory is bounded by the mini-batch; the gradients are the uncached ones.
    public var miniBatchSize: Int?

    public init() {}

    enum CodingKeys: String, CodingKey {
        case encoder, loss, miniBatchSize = "mini_batch_size"
    }

    public func validate(dimension: Int) throws {
        try encoder.validate()
        try loss.validate(dimension: dimension)
        guard encoder.scope != .none else {
            throw RetrieverTrainingError.invalidOption("embedding training fine-tunes the encoder: --finetune all, top:K or lora:R")
        }
        if let m = miniBatchSize, m <= 0 { throw RetrieverTrainingError.invalidOption("the mini-batch size must be positive") }
        if encoder.accumulation != 1 {
            throw RetrieverTrainingError.invalidOption("a contrastive batch's negatives are the batch: use a larger --batch-size with --mini-batch-size instead of --accumulation")
        }
    }
}

/// Texts tokenized once, each with its prompt (query or document), and the batches' view of the rows.
public struct ContrastiveExamples: Sendable {
    public enum Rows: Sendable {
        /// Per row: the anchor's, the positive's and the negatives' indices into `texts`.
        case triplets([(anchor: Int, positive: Int, negatives: [Int])])
        case scored([(first: Int, second: Int, score: Double)])
    }

    public var texts: [EncoderInput]
    /// The raw text of each entry of `texts` (a batch holds no text twice, whatever its prompt).
    public var raw: [String]
    public var rows: Rows

    public var count: Int {
        switch rows {
        case let .triplets(r): r.count
        case let .scored(r): r.count
        }
    }

    public init(texts: [EncoderInput], raw: [String], rows: Rows) {
        self.texts = texts
        self.raw = raw
        self.rows = rows
    }

    /// Tokenizes `data`: anchors with `queryPrompt`, positives, negatives and both sides of scored pairs with
    /// `documentPrompt` (a scored pair's texts are alike; sentence-transformers gives them one prompt).
    public init(_ data: ContrastiveData, tokenizer: GemmaTokenizer, queryPrompt: String?, documentPrompt: String?,
                maxLength: Int) {
        var table: [String: Int] = [:]
        var requests: [(text: String, prompt: String?)] = []
        func index(_ text: String, _ prompt: String?) -> Int {
            let key = (prompt ?? "") + "\u{0}" + text
            if let i = table[key] { return i }
            table[key] = requests.count
            requests.append((text, prompt))
            return requests.count - 1
        }
        switch data {
        case let .triplets(rows):
            // A negative that is the positive's own text could never rank below it: left out.
            self.rows = .triplets(rows.map { row in
                (index(row.anchor, queryPrompt), index(row.positive, documentPrompt),
                 row.negatives.filter { $0 != row.positive }.map { index($0, documentPrompt) })
            })
        case let .scored(rows):
            self.rows = .scored(rows.map { (index($0.first, documentPrompt), index($0.second, documentPrompt), $0.score) })
        }
        var texts = [EncoderInput?](repeating: nil, count: requests.count)
        // One tokenizer call per prompt (tokenize counts the prompt's tokens once).
        for prompt in Set(requests.map { $0.prompt ?? "\u{0}" }) {
            let members = requests.indices.filter { (requests[$0].prompt ?? "\u{0}") == prompt }
            let inputs = TextEncoder.tokenize(members.map { requests[$0].text }, with: tokenizer,
                                              prompt: prompt == "\u{0}" ? nil : prompt, maxLength: maxLength)
            for (i, input) in zip(members, inputs) { texts[i] = input }
        }
        self.texts = texts.map { $0! }
        raw = requests.map(\.text)
    }
}

/// One epoch of a bi-encoder run (the validation loss when there are validation rows).
public struct EmbeddingEpochReport: Codable, Sendable, Equatable {
    public var epoch: Int
    public var trainLoss: Double
    public var validLoss: Double?
    public var seconds: Double

    enum CodingKeys: String, CodingKey {
        case epoch, trainLoss = "train_loss", validLoss = "valid_loss", seconds
    }
}

public struct EmbeddingTrainingResult: Sendable {
    public var epochs: [EmbeddingEpochReport]
    public var bestEpoch: Int
}

/// Fine-tunes an encoder and the pipeline after it (pooling, Dense, Normalize) as a bi-encoder with a
/// contrastive loss: AdamW at one rate (or decayed by layer: `layerDecay`) with warm-up and decay, global-norm
/// clipping, encoder dropout, batches without repeated texts, the gradient cache for batches larger than memory
/// allows, and, with validation rows, early stopping that keeps the best epoch.
/// Every draw is a function of the seed and the step.
public final class EmbeddingFineTuner {
    public let model: TrainableGemma
    public let pipeline: TrainablePipeline
    public let options: EmbeddingTrainingOptions
    private let biEncoder: BiEncoder

    public init(model: TrainableGemma, pipeline: TrainablePipeline, options: EmbeddingTrainingOptions,
                threads: Int = CPUBudget.threads) throws {
        try options.validate(dimension: pipeline.outputDimension)
        self.model = model
        self.pipeline = pipeline
        self.options = options
        biEncoder = try BiEncoder(model: model, pipeline: pipeline, options: options.encoder, threads: threads)
    }

    // MARK: Batches

    /// The rows of each batch of `epoch`: a seeded shuffle, filled in order while skipping a row any of whose
    /// texts the batch already holds (the skipped rows start the next batches), as sentence-transformers'
    /// no-duplicates sampler does: a repeated text would be its own in-batch negative.
    public func batches(_ examples: ContrastiveExamples, epoch: Int) -> [[Int]] {
        var rng = SeededGenerator(seed: options.encoder.seed ^ (0xE3B0_0000 &+ UInt64(epoch)))
        var pending = Array(0..<examples.count)
        pending.shuffle(using: &rng)
        var result: [[Int]] = []
        while !pending.isEmpty {
            var batch: [Int] = [], seen = Set<String>(), rest: [Int] = []
            for (position, row) in pending.enumerated() {
                if batch.count == options.encoder.batchSize {
                    // Full: the rest waits for the next batches in order, as sentence-transformers' sampler does.
                    rest += pending[position...]
                    break
                }
                let texts = rowTexts(examples, row).map { examples.raw[$0] }
                if batch.isEmpty || seen.isDisjoint(with: texts) {
                    batch.append(row)
                    seen.formUnion(texts)
                } else {
                    rest.append(row)
                }
            }
            result.append(batch)
            pending = rest
        }
        return result
    }

    private func rowTexts(_ examples: ContrastiveExamples, _ row: Int) -> [Int] {
        switch examples.rows {
        case let .triplets(rows): [rows[row].anchor, rows[row].positive] + rows[row].negatives
        case let .scored(rows): [rows[row].first, rows[row].second]
        }
    }

    /// A batch's texts in the loss's row order and the loss's layout.
    func layout(_ examples: ContrastiveExamples, _ batch: [Int]) -> (texts: [Int], layout: ContrastiveLoss.Layout) {
        switch examples.rows {
        case let .triplets(rows):
            let negatives = batch.flatMap { rows[$0].negatives }
            return (batch.map { rows[$0].anchor } + batch.map { rows[$0].positive } + negatives,
                    .ranking(anchors: batch.count, negatives: negatives.count))
        case let .scored(rows):
            return (batch.map { rows[$0].first } + batch.map { rows[$0].second }, .scored(scores: batch.map { rows[$0].score }))
        }
    }

    // MARK: Embedding and gradients

    /// Embeddings of `inputs` (dropout off, no tape), in order, `chunk` texts per forward.
    public func embed(_ inputs: [EncoderInput], chunk: Int = 32) throws -> [Float] { try biEncoder.embed(inputs, chunk: chunk) }

    /// The loss of one batch (rows of `examples`) and its gradients, accumulated into the trained parameters
    /// (unclipped: the training loop clips). Mini-batches of `options.miniBatchSize` texts (all of them when nil) share the step's seed
    /// so the cached pass and its replay draw the same dropout. Returns the loss and the tokens processed.
    public func gradients(_ batch: [Int], examples: ContrastiveExamples, step: Int) throws -> (loss: Double, tokens: Int) {
        let (order, layout) = layout(examples, batch)
        let inputs = order.map { examples.texts[$0] }
        let size = options.miniBatchSize ?? inputs.count
        let chunks = stride(from: 0, to: inputs.count, by: size).map { Array(inputs[$0..<min($0 + size, inputs.count)]) }
        let seeds = chunks.indices.map { mixSeed(options.encoder.seed, UInt64(step) &* 4096 &+ UInt64($0)) }
        let d = pipeline.outputDimension
        var tokens = inputs.reduce(0) { $0 + $1.ids.count }
        let loss: Double
        if chunks.count == 1 {
            let (pass, tape) = try biEncoder.forward(chunks[0], seed: seeds[0], training: true)
            let result = options.loss.evaluate(tape.output, dimension: d, layout: layout)
            loss = result.loss
            biEncoder.backward(pass, tape, gradOutput: result.gradient)
        } else {
            // GradCache: embeddings first without tapes (dropout on, the same draws as the replay), then each
            // chunk again with its tape.
            var embeddings: [Float] = []
            for (chunk, seed) in zip(chunks, seeds) {
                embeddings += try biEncoder.forward(chunk, seed: seed, training: true, keepTape: false).tape.output
            }
            let result = options.loss.evaluate(embeddings, dimension: d, layout: layout)
            loss = result.loss
            var row = 0
            for (chunk, seed) in zip(chunks, seeds) {
                let (pass, tape) = try biEncoder.forward(chunk, seed: seed, training: true)
                biEncoder.backward(pass, tape, gradOutput: Array(result.gradient[(row * d)..<((row + chunk.count) * d)]))
                row += chunk.count
            }
            tokens *= 2
        }
        return (loss, tokens)
    }

    /// The mean loss over `examples` in batches as training forms them (dropout off).
    public func evaluate(_ examples: ContrastiveExamples) throws -> Double {
        var sum = 0.0
        let groups = batches(examples, epoch: 0)
        for batch in groups {
            let (order, layout) = layout(examples, batch)
            let embeddings = try embed(order.map { examples.texts[$0] }, chunk: options.miniBatchSize ?? 32)
            sum += options.loss.evaluate(embeddings, dimension: pipeline.outputDimension, layout: layout).loss
        }
        return sum / Double(max(groups.count, 1))
    }

    // MARK: The run

    /// Trains for the options' epochs; with `valid`, stops early on its loss and keeps the best epoch's weights.
    /// With `checkpoint`, state is written there every `checkpointEvery` steps and after each epoch, and with
    /// `resume` a run continues from what is there to the weights of a run never stopped.
    public func run(train: ContrastiveExamples, valid: ContrastiveExamples?, checkpoint: URL? = nil, resume: Bool = false,
                    onStep: ((FineTuneStep) -> Void)? = nil,
                    onEpoch: ((EmbeddingEpochReport) -> Void)? = nil) throws -> EmbeddingTrainingResult {
        guard train.count > 0 else { throw RetrieverTrainingError.invalidData("no training rows") }
        let settings = try canonicalJSON(options)
        return try biEncoder.train(batches: { self.batches(train, epoch: $0) },
                                   gradients: { try self.gradients($0, examples: train, step: $1) },
                                   validate: valid.map { v in { try self.evaluate(v) } },
                                   checkpoint: checkpoint.map { .init(url: $0, every: options.encoder.checkpointEvery, resume: resume, settings: settings) },
                                   onStep: onStep, onEpoch: onEpoch)
    }
}
