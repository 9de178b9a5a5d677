import ArgumentParser
import DocumentIndex
import EncoderService
import Foundation
import GemmaEncoder
import Logging
import TaskHeads

struct ServeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve embeddings, reranking, heads and search over HTTP (OpenAI and TEI routes).",
        discussion: """
        Routes: POST /v1/embeddings (OpenAI), /embed, /rerank, /predict, /tokenize (TEI), /search; GET /health, \
        /info, /metrics (Prometheus). Concurrent requests are batched into shared forward passes. SIGTERM or \
        Ctrl-C stops taking connections and lets in-flight requests finish.
        Example: gemma-encoder serve --model embeddinggemma-300m --index debian=indexes/debian --port 8080
        """)

    @Option(help: "A model to serve, as NAME=PATH or a cached name or path; repeat to serve several (a request picks one with \"model\"; the first is the default).")
    var model: [String] = []

    @Option(name: .customLong("precision"), help: "How Linear weights are stored and multiplied: f32, bf16, int8 or auto (see embed --help).")
    var precisionChoice: PrecisionChoice = .f32

    var precision: WeightPrecision { precisionChoice.resolved }

    @Option(help: "A search index, as NAME=DIR; repeatable. One NAME given several DIRs (shards) is searched as one index.")
    var index: [String] = []

    @Option(help: "A shard server's URL (serve --index NAME=SHARD on another machine or port); repeat for every shard. This server is then a stateless router: /search embeds the query once with --model, asks every shard, merges their results, and reports shards that failed.")
    var shard: [String] = []

    @Option(name: .customLong("shard-index"), help: "The index's name on the shard servers (default: the only one they serve).")
    var shardIndex: String?

    @Option(name: .customLong("shard-timeout"), help: "Seconds a shard has to answer before the router leaves it out of the answer (marked partial).")
    var shardTimeout: Double = 10

    @Option(help: "A classification or regression head, as NAME=DIR; repeatable.")
    var head: [String] = []

    @Option(help: "A reranker directory (from `train --task rerank`: a cross-encoder head, or a T5Gemma first-token ranker) for /rerank and search with rerank.")
    var reranker: String?

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on (0: any free port, printed at start).")
    var port = 8080

    @Option(help: "Tokens per forward pass, shared by concurrent requests.")
    var maxBatchTokens = 16_384

    @Option(help: "Inputs per request.")
    var maxClientBatchSize = 32

    @Option(help: "Tokens per input (default: the model's maximum); longer inputs get 413 unless the request sets truncate.")
    var maxInputLength: Int?

    @Option(help: "Tokens waiting per model before requests are refused with 429 (default: 8 × --max-batch-tokens).")
    var maxQueuedTokens: Int?

    @Option(help: "Largest request body, in bytes.")
    var maxBodyBytes = 2_000_000

    @Flag(help: "Truncate over-long inputs when a request does not say (TEI's --auto-truncate).")
    var autoTruncate = false

    @Option(name: .customLong("api-key"), help: "Require Authorization: Bearer KEY on every route but /health (default: $GEMMA_ENCODER_API_KEY, else none). Prefer the variable: a flag shows in the process list.")
    var apiKey: String?

    @Option(name: .customLong("tls-cert"), help: "PEM certificate chain: serve HTTPS (with --tls-key).")
    var tlsCert: String?

    @Option(name: .customLong("tls-key"), help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(name: .customLong("cors-origin"), help: "An origin whose browser pages may call the server (e.g. https://app.example.org, or * for any); repeatable. Default: none.")
    var corsOrigin: [String] = []

    @Option(name: .customLong("idle-timeout"), help: "Seconds a connection may stay silent (between requests, or stalled inside one) before it is closed.")
    var idleTimeout: Double = 60

    @Option(name: .customLong("max-connections"), help: "Connections served at once; more wait to be accepted.")
    var maxConnections = 1_024

    @Option(name: .customLong("watch-interval"), help: "Seconds between looks at each --index directory (each shard of a set too) for a new version written by another process (index build/add/delete/merge), served without a restart; 0: never.")
    var watchInterval: Double = 2

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        guard maxBatchTokens > 0, maxClientBatchSize > 0, maxBodyBytes > 0 else {
            throw ValidationError("--max-batch-tokens, --max-client-batch-size and --max-body-bytes must be positive")
        }
        if let q = maxQueuedTokens, q < maxBatchTokens { throw ValidationError("--max-queued-tokens must be at least --max-batch-tokens") }
        guard Logger.Level(rawValue: logLevel) != nil else { throw ValidationError("unknown --log-level \(logLevel)") }
        if !shard.isEmpty, !index.isEmpty { throw ValidationError("--shard makes a router over shard servers: serve the indexes on those (--index), not here") }
        for url in shard where URL(string: url)?.scheme.map({ $0 == "http" || $0 == "https" }) != true {
            throw ValidationError("--shard \(url): expected an http:// URL")
        }
        if shardTimeout <= 0 { throw ValidationError("--shard-timeout must be positive") }
        if (tlsCert == nil) != (tlsKey == nil) { throw ValidationError("--tls-cert and --tls-key go together") }
        guard watchInterval >= 0, watchInterval <= 86_400 else { throw ValidationError("--watch-interval must be 0 (off) to 86400 seconds") }
        guard idleTimeout > 0, idleTimeout <= 86_400, maxConnections > 0 else { throw ValidationError("--idle-timeout must be in (0, 86400] seconds and --max-connections positive") }
        if apiKey?.isEmpty == true { throw ValidationError("--api-key is empty") }
        for origin in corsOrigin where origin != "*" && Self.origin(origin) == nil {
            throw ValidationError("--cors-origin \(origin): expected an origin, scheme://host[:port] without a path (e.g. https://app.example.org), or *")
        }
    }

    /// The API key, TLS files, origins and connection limits, as given.
    var exposure: ServerExposure {
        var e = ServerExposure()
        let fromEnvironment = ProcessInfo.processInfo.environment["GEMMA_ENCODER_API_KEY"]
        e.apiKey = apiKey ?? (fromEnvironment?.isEmpty == false ? fromEnvironment : nil)
        e.corsOrigins = corsOrigin.map { $0 == "*" ? $0 : Self.origin($0)! }
        e.idleTimeout = idleTimeout
        e.maxConnections = maxConnections
        if let tlsCert, let tlsKey { e.tls = (tlsCert, tlsKey) }
        return e
    }

    func run() async throws {
        var logger = Logger(label: "gemma-encoder")
        logger.logLevel = Logger.Level(rawValue: logLevel)!
        let service: EncoderService
        do {
            service = try await makeService(logger: logger)
        } catch {
            fail(error)
        }
        service.start()
        let exposure = exposure
        let server: RunningServer
        do {
            server = try await RunningServer.start(service, host: host, port: port, logger: logger, exposure: exposure, stopOnSignals: true)
        } catch {
            service.stop()
            fail(error)
        }
        let address = "\(exposure.scheme)://\(host):\(server.port)"
        logger.notice("listening", metadata: ["address": "\(address)", "api_key": "\(exposure.apiKey == nil ? "none" : "required")",
                                              "models": "\(service.models.map(\.name).joined(separator: ","))"])
        // A line a script can wait for, whatever the log level.
        FileHandle.standardOutput.write(Data("listening on \(address)\n".utf8))
        try await server.wait()
        logger.notice("stopped")
    }

    func makeService(logger: Logger) async throws -> EncoderService {
        var limits = ServiceLimits()
        limits.maxBatchTokens = maxBatchTokens
        limits.maxClientBatchSize = maxClientBatchSize
        limits.maxInputLength = maxInputLength
        limits.maxQueuedTokens = maxQueuedTokens
        limits.maxBodyBytes = maxBodyBytes
        limits.autoTruncate = autoTruncate

        // One encoder per model file, shared by the models, heads, indexes and reranker that name it.
        let store = ModelStore()
        var encoders: [String: TextEncoder] = [:]
        func encoder(_ reference: String) throws -> TextEncoder {
            let path = try store.resolve(reference).resolvingSymlinksInPath().path
            if let e = encoders[path] { return e }
            logger.info("loading model", metadata: ["path": "\(path)", "precision": "\(precision.rawValue)"])
            let e = try TextEncoder(model: path, precision: precision)
            encoders[path] = e
            return e
        }

        var models: [(name: String, encoder: TextEncoder)] = []
        for spec in model.isEmpty ? [KnownModel.defaultName] : model {
            let (name, reference) = try Self.split(spec, option: "--model", nameOptional: true)
            guard !models.contains(where: { $0.name == name }) else { throw ValidationError("--model \(name) is given twice") }
            models.append((name, try encoder(reference)))
        }
        var heads: [String: HeadPredictor] = [:]
        for spec in head {
            let (name, path) = try Self.split(spec, option: "--head", nameOptional: false)
            let directory = try HeadDirectory.read(URL(fileURLWithPath: path))
            // A fine-tuned head brings its own encoder.
            heads[name] = try HeadPredictor(head: directory,
                                            encoder: encoder(directory.encoderLocation?.path ?? directory.config.baseModel.name))
        }
        // A name given several directories is one index in shards, searched as one (IndexShards).
        var shards: [(name: String, directories: [URL])] = []
        for spec in index {
            let (name, path) = try Self.split(spec, option: "--index", nameOptional: false)
            let url = URL(fileURLWithPath: path)
            if let i = shards.firstIndex(where: { $0.name == name }) { shards[i].directories.append(url) } else { shards.append((name, [url])) }
        }
        var indexes: [String: any SearchableIndex] = [:]
        for (name, directories) in shards {
            let opened = try directories.map { url in
                try SearchIndex(directory: url, encoder: encoder(try IndexManifest.load(url.appendingPathComponent("manifest.json")).model))
            }
            // Every directory is watched for new versions (each shard of a set on its own).
            if watchInterval > 0 {
                if opened.count == 1 {
                    let watched = WatchedIndex(opened[0])
                    watched.startWatching(every: watchInterval)
                    indexes[name] = watched
                } else {
                    let watched = try WatchedShards(opened)
                    watched.startWatching(every: watchInterval)
                    indexes[name] = watched
                }
            } else {
                indexes[name] = opened.count == 1 ? opened[0] : try IndexShards(opened)
            }
        }
        let loadedReranker = try reranker.map { try TrainedReranker.load(URL(fileURLWithPath: $0), encoder: encoder) }
        var router: ShardRouter?
        if !shard.isEmpty {
            router = try await ShardRouter.connect(shards: shard.map { URL(string: $0)! }, index: shardIndex, encoder: models[0].encoder,
                                                   timeout: shardTimeout)
            logger.info("routing to shards", metadata: ["index": "\(router!.index)", "shards": "\(shard.joined(separator: ","))"])
        }
        return EncoderService(models: models, heads: heads, reranker: loadedReranker,
                              rerankerName: reranker.map { URL(fileURLWithPath: $0).lastPathComponent },
                              indexes: indexes, router: router, limits: limits)
    }

    /// An origin as browsers send it (lower-case scheme and host, the port only when given), or nil when
    /// `text` is not one (a path, a query, no host).
    static func origin(_ text: String) -> String? {
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased(), let host = url.host?.lowercased(),
              !host.isEmpty, url.path.isEmpty || url.path == "/", url.query == nil, url.fragment == nil else { return nil }
        return "\(scheme)://\(host)" + (url.port.map { ":\($0)" } ?? "")
    }

    /// "NAME=VALUE"; for models a bare value is allowed and named after its last path component.
    static func split(_ spec: String, option: String, nameOptional: Bool) throws -> (String, String) {
        if let eq = spec.firstIndex(of: "="), eq != spec.startIndex {
            let name = String(spec[..<eq]), value = String(spec[spec.index(after: eq)...])
            guard !value.isEmpty else { throw ValidationError("\(option) \(spec): nothing after '='") }
            return (name, value)
        }
        guard nameOptional else { throw ValidationError("\(option) wants NAME=DIR, got '\(spec)'") }
        let name = URL(fileURLWithPath: spec).deletingPathExtension().lastPathComponent
        return (name, spec)
    }
}
