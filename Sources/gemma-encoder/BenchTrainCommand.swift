import ArgumentParser
import EncoderKernels
import Foundation
import GemmaEncoder
import GemmaTraining
import TaskHeads

/// Times fine-tuning steps (forward, backward, AdamW) as `scripts/bench-train` runs the same step in PyTorch:
/// mean pooling, a linear head over 8 classes with seeded random labels, texts in file order, `--batch-size`
/// per step, frozen layers (top:K, LoRA's base) run every step as the peer runs them.
struct BenchTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-train",
        abstract: "Measure fine-tuning throughput (tokens/s of forward + backward + optimizer) and peak memory.",
        discussion: "scripts/bench-train runs the same step in PyTorch in the same run and prints the ratios. Build in release mode.")

    @OptionGroup var model: ModelOptions

    @Option(help: "JSON Lines {\"text\"} workload (e.g. ../shared/bench/bench-512.jsonl).")
    var input: String

    @Option(help: "Prompt name applied to every text (e.g. document).")
    var prompt: String?

    @Option(help: "What trains: all, top:K or lora:R.")
    var finetune = "all"

    @Option(name: .customLong("batch-size"), help: "Texts per step.")
    var batchSize = 8

    @Option(name: .customLong("max-length"), help: "Tokens per text (longer texts are cut).")
    var maxLength = 512

    @Option(help: "Timed steps (after one warm-up step).")
    var steps = 8

    @Option(help: "Attention: bidirectional or causal.")
    var attention: AttentionMode = .bidirectional

    @Flag(name: .customLong("activation-checkpointing"), help: "Recompute each layer in the backward pass.")
    var activationCheckpointing = false

    @Option(name: .customLong("train-precision"), help: "The Linear products: f32, bf16 (f32 master weights and sums) or auto.")
    var trainPrecision: TrainPrecisionChoice = .f32

    @Option(help: "With a T5Gemma checkpoint, first-token:TOKEN times RankT5 ranker training instead (train --task rerank --scoring): the texts in groups of 4, listwise loss, the decoder step and its backward after the encoder's.")
    var scoring: String?

    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    func run() throws {
        do { try bench() } catch { fail(error) }
    }

    private func bench() throws {
        let texts = try readRows(path: input, allowIds: false).compactMap { row -> String? in
            if case .text(let t) = row { return t } else { return nil }
        }
        let needed = steps * batchSize
        guard texts.count >= batchSize else { fail("\(input): \(texts.count) texts, --batch-size asks for \(batchSize)") }
        let encoder = try model.load()
        let sequences = encoder.tokenize(Array(texts.prefix(needed)), prompt: try prompt.map { try encoder.prompt(named: $0) },
                                         maxLength: maxLength).map(\.ids)
        var generator = SeededGenerator(seed: 1)
        var scorer: TrainableT5GemmaDecoder?
        if let scoring {
            guard let token = firstTokenScoring(scoring), case .huggingFace(let directory) = encoder.source else {
                fail("--scoring first-token:TOKEN times a T5Gemma checkpoint's ranker training")
            }
            guard batchSize % 4 == 0 else { fail("--scoring trains groups of 4 pair texts: --batch-size must be a multiple of 4") }
            scorer = try TrainableT5GemmaDecoder(directory: directory, token: Int(try FirstTokenScorer.tokenID(token, tokenizer: encoder.tokenizer)))
        }
        let data = FineTuneData(sequences: sequences, targets: scorer != nil ? .groups(size: 4)
            : .classes(sequences.map { _ in Int(generator.next() % 8) }, weights: [Float](repeating: 1, count: 8)))
        var options = FineTuneOptions()
        do { options.scope = try FineTuneScope(parsing: finetune) } catch { throw ValidationError(error.description) }
        options.batchSize = batchSize
        options.attention = attention
        options.activationCheckpointing = activationCheckpointing
        options.products = trainPrecision.resolved
        let architecture = HeadArchitecture(inputDimension: encoder.hiddenSize, outputs: 8, pooling: .mean, dropout: 0)
        let tuner = try EncoderFineTuner(model: try encoder.source.loadTrainable(), architecture: architecture, options: options,
                                         scorer: scorer)
        let batches = stride(from: 0, to: sequences.count, by: batchSize).map { Array($0..<min($0 + batchSize, sequences.count)) }
        // One warm-up step on the first batch (first touch of every buffer), then the timed steps from the first
        // batch again, as the PyTorch peer does, so both count the same tokens.
        _ = try tuner.step([batches[0]], train: data, step: 0, encoderRate: 2e-5, headRate: 1e-3)
        var tokens = 0
        let timed = min(batches.count, steps)
        let start = DispatchTime.now().uptimeNanoseconds
        for s in 0..<timed {
            tokens += try tuner.step([batches[s]], train: data, step: s + 1, encoderRate: 2e-5, headRate: 1e-3).tokens
        }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let report = BenchReport(json: json)
        report.add("engine", "gemma-encoder")
        report.add("finetune", finetune)
        report.add("scoring", scoring ?? "head")
        report.add("train_precision", options.products?.rawValue ?? "f32")
        report.add("cpu", CPUFeatures.used.joined(separator: " "))
        report.add("steps", "\(timed)")
        report.add("tokens", "\(tokens)")
        report.add("tokens_per_s", String(format: "%.1f", Double(tokens) / seconds))
        report.add("peak_rss_mib", String(format: "%.0f", peakResidentMiB()))
        report.add("threads", "\(CPUBudget.threads)")
        report.finish()
    }
}
