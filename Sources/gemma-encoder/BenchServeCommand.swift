import ArgumentParser
import EncoderService
import Foundation
import GemmaEncoder
import Logging
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

struct BenchServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-serve",
        abstract: "Load-test the HTTP service: throughput and latency percentiles at several client counts.",
        discussion: """
        Without --url, serves --model in this process on a free loopback port and also measures the same texts \
        embedded directly (no HTTP, one big batch), so served throughput is reported as a ratio to it. Each \
        client sends one request at a time, in a loop, for --duration seconds per level. Build in release mode.
        Example: gemma-encoder bench-serve --clients 1,8,64 --duration 10
        """)

    @OptionGroup var model: ModelOptions

    @Option(help: "A running server to load instead of an in-process one, e.g. http://127.0.0.1:8080.")
    var url: String?

    @Option(help: "JSON Lines rows with a \"text\" field: the request texts, taken in turn.")
    var input = "corpora/debian-retrieval-test.jsonl"

    @Option(help: "Concurrent clients per level (comma-separated).")
    var clients = "1,8,64"

    @Option(help: "Seconds per level.")
    var duration: Double = 10

    @Option(help: "Texts per request.")
    var textsPerRequest = 1

    @Option(help: "Tokens per forward pass of the in-process server.")
    var maxBatchTokens = 16_384

    @Flag(help: "Print one JSON object per level instead of the table.")
    var json = false

    func run() async throws {
        let levels = clients.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !levels.isEmpty, levels.allSatisfy({ $0 > 0 }) else { throw ValidationError("--clients wants positive counts, e.g. 1,8,64") }
        guard textsPerRequest > 0, duration > 0 else { throw ValidationError("--texts-per-request and --duration must be positive") }
        let texts = try readRows(path: input, allowIds: false).compactMap { row -> String? in
            if case let .text(t) = row { t } else { nil }
        }
        guard !texts.isEmpty else { fail("\(input): no texts") }

        let (server, base, offline) = try await target(texts)
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = levels.max()!
        configuration.timeoutIntervalForRequest = 120
        let session = URLSession(configuration: configuration)
        let endpoint = base.appendingPathComponent("embed")

        if !json {
            print("clients  requests  req/s    texts/s  p50_ms   p90_ms   p99_ms   errors  mean_batch" + (offline == nil ? "" : "  ratio_to_offline"))
        }
        for level in levels {
            let metricsBefore = try? await batchTotals(session, base)
            let result = await runLevel(clients: level, session: session, endpoint: endpoint, texts: texts)
            let metricsAfter = try? await batchTotals(session, base)
            var meanBatch = Double.nan
            if let a = metricsBefore, let b = metricsAfter, b.count > a.count { meanBatch = (b.sum - a.sum) / (b.count - a.count) }
            report(level: level, result, meanBatch: meanBatch, offline: offline)
        }
        if !json {
            if let offline { print(String(format: "offline (direct, one batch): %.2f texts/s", offline)) }
            print(String(format: "peak RSS: %.0f MiB", peakResidentMiB()))
        }
        try await server?.shutdown()
    }

    /// The server to load: the one at --url, or one started in this process on the model (whose direct,
    /// offline throughput is then the reference).
    private func target(_ texts: [String]) async throws -> (server: RunningServer?, base: URL, offline: Double?) {
        if let url {
            guard let base = URL(string: url) else { fail("--url \(url): not a URL") }
            return (nil, base, nil)
        }
        let encoder = try model.load()
        let offline = try offlineThroughput(encoder, texts: Array(texts.prefix(512)))
        var limits = ServiceLimits()
        limits.maxBatchTokens = maxBatchTokens
        limits.maxClientBatchSize = max(32, textsPerRequest)
        var logger = Logger(label: "gemma-encoder")
        logger.logLevel = .warning
        let service = EncoderService(models: [(name: "model", encoder: encoder)], limits: limits)
        service.start()
        let server = try await RunningServer.start(service, logger: logger)
        guard let base = URL(string: "http://127.0.0.1:\(server.port)") else { fail("no loopback URL for port \(server.port)") }
        return (server, base, offline)
    }

    /// One level's line of the table, or its JSON object.
    private func report(level: Int, _ result: LevelResult, meanBatch: Double, offline: Double?) {
        let textsPerSecond = Double(result.latencies.count * textsPerRequest) / result.seconds
        let sorted = result.latencies.sorted()
        func p(_ q: Double) -> Double { sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))] * 1000 }
        let ratio = offline.map { textsPerSecond / $0 }
        if json {
            var fields = ["\"clients\": \(level)", "\"requests\": \(sorted.count)",
                          "\"requests_per_s\": \(String(format: "%.2f", Double(sorted.count) / result.seconds))",
                          "\"texts_per_s\": \(String(format: "%.2f", textsPerSecond))",
                          "\"p50_ms\": \(String(format: "%.2f", p(0.5)))", "\"p90_ms\": \(String(format: "%.2f", p(0.9)))",
                          "\"p99_ms\": \(String(format: "%.2f", p(0.99)))", "\"errors\": \(result.errors)",
                          "\"mean_batch_inputs\": \(meanBatch.isNaN ? "null" : String(format: "%.2f", meanBatch))",
                          "\"peak_rss_mib\": \(String(format: "%.0f", peakResidentMiB()))"]
            if let offline, let ratio {
                fields += ["\"offline_texts_per_s\": \(String(format: "%.2f", offline))",
                           "\"ratio_to_offline\": \(String(format: "%.3f", ratio))"]
            }
            print("{" + fields.joined(separator: ", ") + "}")
        } else {
            print(String(format: "%-8d %-9d %-8.2f %-8.2f %-8.1f %-8.1f %-8.1f %-7d %-11.2f", level, sorted.count,
                         Double(sorted.count) / result.seconds, textsPerSecond, p(0.5), p(0.9), p(0.99), result.errors, meanBatch)
                  + (ratio.map { String(format: " %.3f", $0) } ?? ""))
        }
    }

    /// Texts per second embedding `texts` directly in one call (the encoder's own batching, both cores).
    private func offlineThroughput(_ encoder: TextEncoder, texts: [String]) throws -> Double {
        let options = EmbeddingOptions(prompt: encoder.defaultPromptName.flatMap { encoder.prompts[$0] })
        _ = try encoder.embed(Array(texts.prefix(16)), options: options)  // warm up
        let start = DispatchTime.now().uptimeNanoseconds
        _ = try encoder.embed(texts, options: options)
        return Double(texts.count) / (Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }

    private struct LevelResult {
        var latencies: [Double]
        var errors: Int
        var seconds: Double
    }

    private func runLevel(clients: Int, session: URLSession, endpoint: URL, texts: [String]) async -> LevelResult {
        let start = DispatchTime.now().uptimeNanoseconds
        let deadline = start + UInt64(duration * 1e9)
        let perRequest = textsPerRequest
        let results = await withTaskGroup(of: ([Double], Int).self) { group in
            for client in 0..<clients {
                group.addTask {
                    var latencies: [Double] = [], errors = 0, next = client * 7919
                    while DispatchTime.now().uptimeNanoseconds < deadline {
                        let batch = (0..<perRequest).map { texts[(next + $0) % texts.count] }
                        next += perRequest
                        var request = URLRequest(url: endpoint)
                        request.httpMethod = "POST"
                        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
                        request.httpBody = try? JSONSerialization.data(withJSONObject: ["inputs": batch, "truncate": true])
                        let t0 = DispatchTime.now().uptimeNanoseconds
                        do {
                            let (_, response) = try await session.data(for: request)
                            if (response as? HTTPURLResponse)?.statusCode == 200 {
                                latencies.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9)
                            } else {
                                errors += 1
                            }
                        } catch {
                            errors += 1
                        }
                    }
                    return (latencies, errors)
                }
            }
            var all: [Double] = [], errors = 0
            for await (l, e) in group {
                all += l
                errors += e
            }
            return (all, errors)
        }
        return LevelResult(latencies: results.0, errors: results.1,
                           seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }

    /// The server's forward-pass input histogram totals (sum, count), from /metrics.
    private func batchTotals(_ session: URLSession, _ base: URL) async throws -> (sum: Double, count: Double) {
        let (data, _) = try await session.data(from: base.appendingPathComponent("metrics"))
        let text = String(decoding: data, as: UTF8.self)
        func value(_ name: String) -> Double {
            text.split(separator: "\n").first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last!) } ?? 0
        }
        return (value("gemma_encoder_batch_inputs_sum"), value("gemma_encoder_batch_inputs_count"))
    }
}
