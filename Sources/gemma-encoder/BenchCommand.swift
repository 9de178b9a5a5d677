import ArgumentParser
import EncoderKernels
import Foundation
import GemmaEncoder

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure tokenizer and encoder throughput, query latency, scaling and memory on this machine.",
        discussion: "Figures are reported next to the BLAS GEMM ceiling measured in the same run. Build in release mode.")

    @OptionGroup var model: ModelOptions

    @Option(help: "JSON Lines {\"text\"} workload (e.g. ../shared/bench/bench-512.jsonl).")
    var input: String

    @Option(help: "Prompt name applied to every text (e.g. document).")
    var prompt: String?

    @Option(name: .customLong("batch-tokens"), help: "Tokens per forward batch.")
    var batchTokens: Int = 8192

    @Option(help: "Latency runs of the single short query.")
    var queries: Int = 50

    @Option(name: .customLong("query-tokens"), help: "Length of the latency query in tokens, <bos> and <eos> included.")
    var queryTokens: Int = 10

    @Option(name: .customLong("scaling-lengths"), help: "Sequence lengths for the scaling table (comma-separated).")
    var scalingLengths: String = "16,128,512,2048"

    @Flag(help: "Print one JSON object instead of the table.")
    var json = false

    @Flag(name: .customLong("tokenizer-only"), help: "Measure only the tokenizer (single-threaded, one text at a time).")
    var tokenizerOnly = false

    @Flag(help: "Also time each operation of the forward pass (products, attention, norms, …) in the throughput and query runs.")
    var profile = false

    @Option(name: .customLong("cross-encoder-model"), help: "T5Gemma --model: also time this model as a cross-encoder on the same pairs (its forward and pooling), next to the encoder-decoder's first-token scoring.")
    var crossEncoderModel: String?

    func run() throws {
        do { try bench() } catch { fail(error) }
    }

    func seconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    private func bench() throws {
        let report = BenchReport(json: json)
        let texts = try readRows(path: input, allowIds: false).compactMap { row -> String? in
            if case .text(let t) = row { return t } else { return nil }
        }
        if tokenizerOnly {
            try benchTokenizer(texts, report.add)
            return report.finish()
        }
        // The ceiling is measured before and after the workload and the higher figure kept: on a shared
        // machine a single measurement can land in a slow moment and flatter the ratio.
        let peakBefore = measureGemmPeak()
        report.add("cpu_features", CPUFeatures.detected.joined(separator: " "))
        if CPUFeatures.used != CPUFeatures.detected { report.add("cpu_features_used", CPUFeatures.used.joined(separator: " ")) }
        report.add("product_path", model.precision.linearFormats.map(CPUFeatures.productPath).joined(separator: "; "))

        var encoder: TextEncoder!
        let loadSeconds = try seconds { encoder = try model.load() }
        report.add("model_load_s", String(format: "%.3f", loadSeconds))
        let promptText = try prompt.map { try encoder.prompt(named: $0) }

        // Tokenizer alone, single-threaded, best of three.
        var inputs: [EncoderInput] = []
        var tokenizeBest = Double.infinity
        for _ in 0..<3 {
            tokenizeBest = min(tokenizeBest, seconds { inputs = encoder.tokenize(texts, prompt: promptText) })
        }
        let tokens = inputs.reduce(0) { $0 + $1.ids.count }
        report.add("texts", "\(texts.count)")
        report.add("tokens", "\(tokens)")
        report.add("tokenizer_tokens_per_s", String(format: "%.0f", Double(tokens) / tokenizeBest))

        var options = EmbeddingOptions(prompt: promptText)
        options.batchTokens = batchTokens
        try throughput(encoder, inputs, options, peakBefore: peakBefore, report)
        if case .huggingFace(let directory) = encoder.source,
           try T5GemmaConfig.isCheckpoint(directory) {
            try pairScoring(encoder, texts, report)
        }
        try latency(encoder, report)
        try scaling(encoder, inputs, options, report)
        report.add("peak_rss_mib", String(format: "%.0f", peakResidentMiB()))
        report.add("precision", model.precision.rawValue)
        if model.precision != .f32 {
            // After peak_rss_mib, which this second model would inflate.
            try precisionDrift(encoder, inputs, options, report)
        }
        report.finish()
    }

    /// The whole workload once warm (a short warm-up batch first), against the GEMM ceiling.
    private func throughput(_ encoder: TextEncoder, _ inputs: [EncoderInput], _ options: EmbeddingOptions,
                            peakBefore: Double, _ report: BenchReport) throws {
        _ = try encoder.embed(Array(inputs.prefix(8)), options: options)
        encoder.model.profile?.enable(profile)
        let embedSeconds = try seconds { _ = try encoder.embed(inputs, options: options) }
        reportProfile(encoder, prefix: "profile", report)
        let tokens = inputs.reduce(0) { $0 + $1.ids.count }
        let flops = inputs.reduce(0.0) { $0 + encoder.model.flops(length: $1.ids.count, mode: .bidirectional) }
        let gflops = flops / embedSeconds / 1e9
        report.add("tokens_per_s", String(format: "%.1f", Double(tokens) / embedSeconds))
        report.add("texts_per_s", String(format: "%.2f", Double(inputs.count) / embedSeconds))
        report.add("achieved_gflops", String(format: "%.1f", gflops))
        let peakAfter = measureGemmPeak()
        let peak = max(peakBefore, peakAfter)
        report.add("gemm_ceiling_gflops", String(format: "%.1f", peak))
        report.add("gemm_ceiling_before_after", String(format: "%.1f / %.1f", peakBefore, peakAfter))
        report.add("ratio_to_gemm_ceiling", String(format: "%.3f", gflops / peak))
        let format = model.precision.format
        if format != .f32 {
            // The same 2048³ product on weights in this precision: the ceiling of the path the model's products take.
            let own = measureGemmPeak(format: format)
            report.add("gemm_ceiling_\(model.precision.rawValue)_gflops", String(format: "%.1f", own))
            report.add("ratio_to_\(model.precision.rawValue)_ceiling", String(format: "%.3f", gflops / own))
        }
    }

    /// T5Gemma: the workload's texts as the candidates of one query (the first text), scored RankT5-style (each
    /// pair encoded once, one decoder step) and, on the same pair texts, by cross-encoders: this checkpoint's
    /// encoder with pooling (a cross-encoder of the same encoder, whose head costs a dot product) and, with
    /// --cross-encoder-model, another model. Pairs/s of each and their ratios, warm, one after the other.
    private func pairScoring(_ encoder: TextEncoder, _ texts: [String], _ report: BenchReport) throws {
        guard let query = texts.first else { return }
        let scorer: FirstTokenScorer
        do {
            scorer = try FirstTokenScorer(model: encoder, token: "#\(encoder.tokenizer.eosTokenId ?? 1)", precision: model.precision)
        } catch {
            // An encoder-only save has no decoder to score with.
            report.add("pair_scoring", "skipped: \(error)")
            return
        }
        let pairs = texts.map { scorer.pairText(query: query, document: $0) }
        func pairsPerSecond(_ body: () throws -> Void) throws -> Double {
            try body()  // warm
            return Double(pairs.count) / (try seconds(body))
        }
        // Every scorer gets its pairs tokenized beforehand: the timings are the models'.
        let inputs = encoder.tokenize(pairs)
        let encoderDecoder = try pairsPerSecond { _ = try scorer.scores(encoding: inputs) }
        let sameEncoder = try pairsPerSecond { _ = try encoder.embed(inputs, options: EmbeddingOptions()) }
        report.add("pair_scoring_pairs", "\(pairs.count)")
        report.add("pair_scoring_encoder_decoder_pairs_per_s", String(format: "%.2f", encoderDecoder))
        report.add("pair_scoring_same_encoder_cross_encoder_pairs_per_s", String(format: "%.2f", sameEncoder))
        report.add("pair_scoring_encoder_decoder_vs_same_encoder", String(format: "%.3f", encoderDecoder / sameEncoder))
        if let crossEncoderModel {
            let other = try TextEncoder(source: try ModelStore().source(crossEncoderModel), precision: model.precision)
            let otherInputs = other.tokenize(pairs)
            let cross = try pairsPerSecond { _ = try other.embed(otherInputs, options: EmbeddingOptions()) }
            report.add("pair_scoring_cross_encoder_model", crossEncoderModel)
            report.add("pair_scoring_cross_encoder_pairs_per_s", String(format: "%.2f", cross))
            report.add("pair_scoring_encoder_decoder_vs_cross_encoder", String(format: "%.3f", encoderDecoder / cross))
        }
    }

    /// Seconds and share of the measured time per operation since the profile was enabled; then starts afresh.
    private func reportProfile(_ encoder: TextEncoder, prefix: String, _ report: BenchReport) {
        guard profile, let model = encoder.model.profile else { return }
        let (seconds, _) = model.snapshot()
        let total = seconds.values.reduce(0, +)
        for op in OperationProfile.Operation.allCases {
            let s = seconds[op] ?? 0
            guard s > 0 else { continue }
            report.add("\(prefix)_\(op.rawValue)_ms", String(format: "%.1f", s * 1000))
            report.add("\(prefix)_\(op.rawValue)_share", String(format: "%.3f", s / max(total, 1e-12)))
        }
        model.enable(false)
    }

    /// One short query per call, warm, exactly --query-tokens long (<bos> … <eos>).
    private func latency(_ encoder: TextEncoder, _ report: BenchReport) throws {
        let query = latencyQuery(encoder)
        var latencies: [Double] = []
        _ = try encoder.embed([query])
        encoder.model.profile?.enable(profile)
        for _ in 0..<queries {
            latencies.append(try seconds { _ = try encoder.embed([query]) } * 1000)
        }
        reportProfile(encoder, prefix: "profile_query", report)
        latencies.sort()
        func percentile(_ p: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * p))] }
        report.add("query_tokens", "\(query.ids.count)")
        report.add("query_latency_ms_p50", String(format: "%.2f", percentile(0.5)))
        report.add("query_latency_ms_p90", String(format: "%.2f", percentile(0.9)))
        report.add("query_latency_ms_p99", String(format: "%.2f", percentile(0.99)))
    }

    /// Tokens/s at fixed sequence lengths built from the workload's own tokens.
    private func scaling(_ encoder: TextEncoder, _ inputs: [EncoderInput], _ options: EmbeddingOptions,
                         _ report: BenchReport) throws {
        let pool = inputs.flatMap { $0.ids.dropFirst().dropLast() }
        for length in scalingLengths.split(separator: ",").compactMap({ Int($0) }) where length > 2 && !pool.isEmpty {
            let count = max(1, min(64, 16_384 / length))
            let batch = (0..<count).map { s -> EncoderInput in
                let body = (0..<(length - 2)).map { pool[(s * 7919 + $0) % pool.count] }
                return EncoderInput(ids: [2] + body + [1])
            }
            var o = options
            o.batchTokens = max(batchTokens, length)
            let t = try seconds { _ = try encoder.embed(batch, options: o) }
            report.add("tokens_per_s_at_length_\(length)", String(format: "%.1f", Double(length * count) / t))
        }
    }

    /// The same texts through the f32 weights: how far this precision moves the embeddings.
    private func precisionDrift(_ encoder: TextEncoder, _ inputs: [EncoderInput], _ options: EmbeddingOptions,
                                _ report: BenchReport) throws {
        let reference = try TextEncoder(source: try model.source(), precision: .f32)
        let sample = Array(inputs.prefix(64))
        let ours = try encoder.embed(sample, options: options), theirs = try reference.embed(sample, options: options)
        let cosines = zip(ours, theirs).map { a, b in zip(a, b).reduce(Float(0)) { $0 + $1.0 * $1.1 } }
        report.add("cosine_to_f32_min", String(format: "%.6f", cosines.min() ?? 0))
        report.add("cosine_to_f32_mean", String(format: "%.6f", cosines.reduce(0, +) / Float(max(cosines.count, 1))))
    }

    /// "best text editor for programmers" with the query prompt, cut or repeated to `queryTokens` tokens.
    private func latencyQuery(_ encoder: TextEncoder) -> EncoderInput {
        let ids = encoder.tokenize(["best text editor for programmers"], prompt: encoder.prompts["query"])[0].ids
        let body = Array(ids.dropFirst().dropLast())
        let length = max(queryTokens, 2) - 2
        let middle = (0..<length).map { body[$0 % body.count] }
        return EncoderInput(ids: [ids.first!] + middle + [ids.last!])
    }
}

/// Figures in the order measured: a table as they come, or one JSON object at the end.
final class BenchReport {
    private var rows: [(String, String)] = []
    private let json: Bool

    init(json: Bool) { self.json = json }

    func add(_ key: String, _ value: String) {
        rows.append((key, value))
        if !json { print(key.padding(toLength: 34, withPad: " ", startingAt: 0) + value) }
    }

    func finish() {
        guard json else { return }
        let body = rows.map { "\"\($0.0)\": \(Double($0.1) != nil ? $0.1 : "\"\($0.1)\"")" }.joined(separator: ", ")
        print("{\(body)}")
    }
}

/// Peak resident set size of this process so far: VmHWM, the high-water mark of this program's own memory.
/// Not getrusage's ru_maxrss: Linux carries that across exec, so a process spawned by a large parent (a test
/// runner) would report the parent's size.
func peakResidentMiB() -> Double {
    if let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
       let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
       let kib = Double(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") {
        return kib / 1024
    }
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    return Double(usage.ru_maxrss) / 1024  // Linux reports KiB
}
