import DocumentIndex
import EncoderKernels
import Foundation
import ModelFormats
import GemmaEncoder
import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import ServiceLifecycle
import UnixSignals
import TaskHeads

/// The service's HTTP face: OpenAI's and Text Embeddings Inference's routes on Hummingbird.
public enum HTTPFront {
    /// The header that reports how many inputs were cut to the maximum length (only with `truncate`).
    public static let truncatedHeader = HTTPField.Name("X-Truncated-Inputs")!

    /// The router with every route of `APIRoute.all()` (the table `/openapi.json` describes), the error mapping
    /// and the per-route metrics and logs.
    public static func router(_ service: EncoderService, exposure: ServerExposure = ServerExposure()) throws -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ObservingMiddleware(metrics: service.metrics))
        if !exposure.corsOrigins.isEmpty { router.add(middleware: CORSOriginsMiddleware(origins: Set(exposure.corsOrigins))) }
        if let key = exposure.apiKey { router.add(middleware: APIKeyMiddleware(key: Array(key.utf8))) }
        let routes = Routes(service: service)
        for route in try APIRoute.all() {
            let handler = route.handler
            switch route.method {
            case .get: router.get(RouterPath(route.path)) { request, _ in try await handler(request, routes) }
            case .post: router.post(RouterPath(route.path)) { request, _ in try await handler(request, routes) }
            }
        }
        return router
    }

    /// An application serving `service` on `host:port` (port 0: any free port, reported to `onRunning`).
    /// With `exposure`: its API key, CORS origins, TLS, timeouts and connection limit.
    public static func application(_ service: EncoderService, host: String, port: Int, logger: Logger,
                                   exposure: ServerExposure = ServerExposure(),
                                   onRunning: @escaping @Sendable (Int) async -> Void = { _ in }) throws -> some ApplicationProtocol {
        Application(router: try router(service, exposure: exposure), server: try exposure.serverBuilder(),
                    configuration: .init(address: .hostname(host, port: port), serverName: "gemma-encoder",
                                         availableConnectionsDelegate: MaximumAvailableConnections(exposure.maxConnections)),
                    onServerRunning: { channel in await onRunning(channel.localAddress?.port ?? port) },
                    logger: logger)
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok, truncated: Int = 0) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.withoutEscapingSlashes]
        var headers: HTTPFields = [.contentType: "application/json"]
        if truncated > 0 { headers[truncatedHeader] = String(truncated) }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
    }

    static func html(_ page: String) -> Response {
        Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: page)))
    }

    static func errorResponse(_ error: ServiceError) -> Response {
        var response = (try? json(ErrorBody(error: error.message, error_type: error.type),
                                  status: .init(code: error.status))) ?? Response(status: .init(code: error.status))
        if let retry = error.retryAfterSeconds { response.headers[.retryAfter] = String(retry) }
        if error.kind == .unauthorized { response.headers[.wwwAuthenticate] = "Bearer" }
        return response
    }
}

/// A running server; `shutdown()` stops taking connections, lets in-flight requests finish, then stops the
/// schedulers (what SIGTERM does to `serve`).
public final class RunningServer: Sendable {
    public let port: Int
    private let group: ServiceGroup
    private let task: Task<Void, Error>
    private let service: EncoderService

    private init(port: Int, group: ServiceGroup, task: Task<Void, Error>, service: EncoderService) {
        self.port = port
        self.group = group
        self.task = task
        self.service = service
    }

    /// Serves `service`; returns once the socket is listening. With `stopOnSignals`, SIGTERM and SIGINT shut
    /// it down gracefully. The caller starts the service's schedulers (`service.start()`): requests accepted
    /// before that wait in the queue.
    public static func start(_ service: EncoderService, host: String = "127.0.0.1", port: Int = 0,
                             logger: Logger = Logger(label: "gemma-encoder"), exposure: ServerExposure = ServerExposure(),
                             stopOnSignals: Bool = false) async throws -> RunningServer {
        let (ports, continuation) = AsyncStream.makeStream(of: Int.self)
        let app = try HTTPFront.application(service, host: host, port: port, logger: logger, exposure: exposure) { port in
            continuation.yield(port)
            continuation.finish()
        }
        let group = ServiceGroup(configuration: .init(services: [app], gracefulShutdownSignals: stopOnSignals ? [.sigterm, .sigint] : [], logger: logger))
        let task = Task {
            defer { continuation.finish() }
            try await group.run()
        }
        guard let bound = await ports.first(where: { _ in true }) else {
            try await task.value
            throw ServiceError.backend("the server stopped before it listened on \(host):\(port)")
        }
        return RunningServer(port: bound, group: group, task: task, service: service)
    }

    /// Runs until a shutdown signal (or `shutdown()`), then stops the schedulers.
    public func wait() async throws {
        defer { service.stop() }
        try await task.value
    }

    public func shutdown() async throws {
        await group.triggerGracefulShutdown()
        try await wait()
    }
}

/// Maps every error to a JSON body with TEI's status codes, and records each request's route, status and
/// latency (metrics and one structured log line).
struct ObservingMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let metrics: ServiceMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        var response: Response
        do {
            response = try await next(request, context)
        } catch {
            response = Self.response(for: error, request)
        }
        let elapsed = start.duration(to: .now).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        // Unknown paths share one label, so a scanner cannot grow the metric set without bound.
        let route = context.endpointPath ?? "unmatched"
        metrics.recordRequest(route: route, status: response.status.code, seconds: seconds)
        var metadata: Logger.Metadata = ["route": "\(route)", "status": "\(response.status.code)",
                                         "ms": "\(String(format: "%.1f", seconds * 1000))"]
        if let truncated = response.headers[HTTPFront.truncatedHeader] { metadata["truncated"] = "\(truncated)" }
        context.logger.info("request", metadata: metadata)
        return response
    }

    /// The JSON error answer for anything a route or middleware threw.
    static func response(for error: any Error, _ request: Request) -> Response {
        if let error = error as? any HTTPResponseError { return HTTPFront.errorResponse(serviceError(error, request)) }
        return HTTPFront.errorResponse(ServiceError(classifying: error))
    }

    /// Hummingbird's own refusals (no route, body too large, wrong method) in the service's error shape.
    static func serviceError(_ error: any HTTPResponseError, _ request: Request) -> ServiceError {
        switch error.status.code {
        case 404: .notFound("no route \(request.method) \(request.uri.path)")
        case 413: ServiceError(.payloadTooLarge, "request body is larger than the limit")
        case 405: ServiceError(.http(status: 405, type: "MethodNotAllowed"), error.status.reasonPhrase)
        case let code: ServiceError(.http(status: code, type: code < 500 ? "Validation" : "Internal"), error.status.reasonPhrase)
        }
    }
}

/// Each route: decode, call the service, encode.
struct Routes: Sendable {
    let service: EncoderService

    func body<T: Decodable>(_ type: T.Type, _ request: Request) async throws -> T {
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: service.limits.maxBodyBytes)
        } catch is NIOTooManyBytesError {
            throw ServiceError(.payloadTooLarge, "request body is larger than the limit of \(service.limits.maxBodyBytes) bytes")
        }
        let data = Data(buffer.readableBytesView)
        guard String(validating: data, as: UTF8.self) != nil else {
            throw ServiceError.malformed("request body is not valid UTF-8")
        }
        // The library's coding-path formatter, so a request and a config file name a field the same way.
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DecodingError {
            let path = error.codingPathDescription
            switch error {
            case .keyNotFound: throw ServiceError.malformed("missing field `\(path)`")
            case .typeMismatch(_, let context): throw ServiceError.malformed("wrong type at `\(path)`: \(context.debugDescription)")
            case .valueNotFound: throw ServiceError.malformed("null at `\(path)`")
            default: throw ServiceError.malformed("request body is not valid JSON: \(error)")
            }
        } catch {
            throw ServiceError.malformed("request body is not valid JSON: \(error)")
        }
    }

    func openAIEmbeddings(_ request: Request) async throws -> Response {
        let r = try await body(OpenAIEmbeddingRequest.self, request)
        let format = r.encoding_format ?? "float"
        guard format == "float" || format == "base64" else {
            throw ServiceError.validation("encoding_format must be \"float\" or \"base64\", got \"\(format)\"")
        }
        let result = try await service.embed(r.input, model: r.model, promptName: r.prompt_name, truncate: r.truncate ?? service.limits.autoTruncate,
                                             normalize: nil, dimensions: r.dimensions)
        let items = result.vectors.enumerated().map { i, v in
            OpenAIEmbeddingResponse.Item(embedding: format == "base64" ? .base64(Self.base64(v)) : .floats(v), index: i)
        }
        return try HTTPFront.json(OpenAIEmbeddingResponse(
            data: items, model: result.model,
            usage: .init(prompt_tokens: result.tokens, total_tokens: result.tokens, truncated_inputs: result.truncated)),
            truncated: result.truncated)
    }

    /// OpenAI's base64 encoding: the float32 values' little-endian bytes.
    static func base64(_ vector: [Float]) -> String {
        var bytes = [UInt8]()
        bytes.reserveCapacity(vector.count * 4)
        for v in vector { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes.append(contentsOf: $0) } }
        return Data(bytes).base64EncodedString()
    }

    func teiEmbed(_ request: Request) async throws -> Response {
        let r = try await body(TEIEmbedRequest.self, request)
        if let direction = r.truncation_direction, direction.lowercased() != "right" {
            throw ServiceError.validation("truncation_direction \"\(direction)\" is not supported (only \"Right\")")
        }
        // TEI normalizes unless told not to.
        let result = try await service.embed(r.inputs, model: r.model, promptName: r.prompt_name, truncate: r.truncate ?? service.limits.autoTruncate,
                                             normalize: r.normalize ?? true, dimensions: r.dimensions)
        return try HTTPFront.json(result.vectors, truncated: result.truncated)
    }

    func rerank(_ request: Request) async throws -> Response {
        let r = try await body(RerankRequest.self, request)
        guard (r.texts == nil) != (r.documents == nil) else {
            throw ServiceError.malformed("send either `texts` (TEI) or `documents` (Cohere, Jina)")
        }
        let texts = r.texts ?? r.documents!.map(\.text)
        let (ranked, tokens, truncated) = try await service.rerank(query: r.query, documents: texts, topN: r.top_n,
                                                                   truncate: r.truncate ?? service.limits.autoTruncate)
        if r.texts != nil {
            let raw = r.raw_scores ?? false, withText = r.return_text ?? false
            return try HTTPFront.json(ranked.map {
                TEIRank(index: $0.index, score: raw ? $0.score : sigmoid($0.score), text: withText ? texts[$0.index] : nil)
            }, truncated: truncated)
        }
        let withDocuments = r.return_documents ?? true
        return try HTTPFront.json(CohereRerankResponse(
            model: service.rerankerName ?? "reranker",
            results: ranked.map { .init(index: $0.index, relevance_score: sigmoid($0.score),
                                        document: withDocuments ? .init(text: texts[$0.index]) : nil) },
            usage: .init(total_tokens: tokens)),
            truncated: truncated)
    }

    func predict(_ request: Request) async throws -> Response {
        let r = try await body(PredictRequest.self, request)
        let head = r.head ?? request.uri.queryParameters["head"].map(String.init)
        let (predictions, truncated) = try await service.predict(r.inputs, head: head, truncate: r.truncate ?? service.limits.autoTruncate)
        let lists: [[LabelScore]] = predictions.map { prediction in
            switch prediction {
            case let .classes(_, _, scores):
                scores.map { LabelScore(label: $0.key, score: $0.value) }
                    .sorted { $0.score != $1.score ? $0.score > $1.score : $0.label < $1.label }
            case let .values(values):
                values.enumerated().map { LabelScore(label: "LABEL_\($0.offset)", score: $0.element) }
            }
        }
        return r.inputs.isSingle ? try HTTPFront.json(lists[0], truncated: truncated) : try HTTPFront.json(lists, truncated: truncated)
    }

    func search(_ request: Request) async throws -> Response {
        let r = try await body(SearchRequest.self, request)
        let mode = try r.mode.map { name throws(ServiceError) in
            guard let mode = SearchMode(rawValue: name) else {
                throw ServiceError.validation("mode must be one of \(SearchMode.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            return mode
        }
        if let router = service.router {
            let mode = mode ?? router.bestSearchMode
            let (name, results, failed) = try await service.routedSearch(index: r.index, query: r.query, k: r.k ?? 10, mode: mode,
                                                                         rerank: r.rerank ?? false,
                                                                         tuning: SearchTuning(nprobe: r.nprobe, efSearch: r.ef_search), vector: r.vector)
            return try HTTPFront.json(SearchResponse(
                index: name, mode: mode.rawValue,
                results: results.map { .init(id: $0.id, score: $0.score, text: $0.text, metadata: JSONValue(text: $0.metadataJSON),
                                             summary: .init(text: $0.text, metadataJSON: $0.metadataJSON, query: r.query,
                                                            titleField: router.titleField)) },
                partial: failed.isEmpty ? nil : true,
                failed_shards: failed.isEmpty ? nil : failed.map { .init(shard: $0.shard, error: $0.error) }))
        }
        let (name, ran, results) = try await service.search(index: r.index, query: r.query, k: r.k ?? 10, mode: mode,
                                                            rerank: r.rerank ?? false, candidates: r.candidates ?? 50,
                                                            tuning: SearchTuning(nprobe: r.nprobe, efSearch: r.ef_search), vector: r.vector)
        let titleField = try service.index(named: name).1.snapshot.manifest.titleField
        return try HTTPFront.json(SearchResponse(index: name, mode: ran.rawValue, results: results.map {
            .init(id: $0.result.id, score: $0.score, text: $0.result.text, metadata: JSONValue(text: $0.result.metadataJSON),
                  summary: .init(text: $0.result.text, metadataJSON: $0.result.metadataJSON, query: r.query, titleField: titleField))
        }))
    }

    func tokenize(_ request: Request) async throws -> Response {
        let r = try await body(TokenizeRequest.self, request)
        let tokens = try service.tokenize(r.inputs, model: r.model, addSpecialTokens: r.add_special_tokens ?? true)
        return try HTTPFront.json(tokens.map { $0.map { TokenItem(id: $0.id, text: $0.text, special: $0.special) } })
    }

    func info() -> ServiceInfo { service.info() }
}
