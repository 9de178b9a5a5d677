import Foundation
import DocumentIndex
import ModelFormats
import HTTPTypes
import Hummingbird
import NIOCore

/// One route of the HTTP API: what the router registers and what `/openapi.json` says of it, in one place, so
/// a route cannot be served undescribed or described unserved. Request schemas are recorded from the
/// Decodable type the handler decodes, response schemas from example values of the type it encodes.
struct APIRoute: Sendable {
    enum Method: String, Sendable { case get, post }

    struct Body: Sendable {
        var contentType: String
        /// nil for a body that is not JSON (a page, Prometheus text).
        var schema: APISchema?
        /// A JSON example (requests: sent as is by the tests and the docs page's "send").
        var example: String?
    }

    var method: Method
    var path: String
    var tag: String
    var summary: String
    var request: Body?
    var response: Body
    /// Statuses this route answers with the error body, besides the model-side ones (`APIRoute.modelSide`) and 401.
    var errors: [Int]
    var handler: @Sendable (Request, Routes) async throws -> Response

    /// Statuses any route that runs a model can answer: an overload, a stopped model, an internal fault.
    static let modelSide = [429, 503, 500]

    /// What each error status means here (Text Embeddings Inference's codes, `ServiceError.status`).
    static let errorMeaning = [
        400: "Empty input",
        401: "Missing or wrong API key (Authorization: Bearer KEY)",
        404: "Unknown model, head, index or reranker",
        413: "Input out of bounds (too long without truncate, too many inputs, k out of range) or a body over the limit",
        422: "Malformed JSON, a field of the wrong type, or text the tokenizer refuses",
        424: "A backend (a shard) failed",
        429: "Overloaded: the queue is full; retry after Retry-After seconds",
        500: "Internal error",
        503: "The model stopped answering",
    ]

    static func json<Req: Decodable, Res: Encodable>(
        _ path: String, tag: String, summary: String, request: Req.Type, example: String, response: [Res], errors: [Int],
        handler: @escaping @Sendable (Request, Routes) async throws -> Response
    ) throws -> APIRoute {
        APIRoute(method: .post, path: path, tag: tag, summary: summary,
                 request: Body(contentType: "application/json", schema: try SchemaRecorder.schema(decoding: request), example: example),
                 response: Body(contentType: "application/json", schema: try SchemaRecorder.schema(encoding: response)),
                 errors: errors, handler: handler)
    }

    static func get<Res: Encodable>(_ path: String, tag: String, summary: String, response: [Res],
                                    handler: @escaping @Sendable (Request, Routes) async throws -> Response) throws -> APIRoute {
        APIRoute(method: .get, path: path, tag: tag, summary: summary, request: nil,
                 response: Body(contentType: "application/json", schema: try SchemaRecorder.schema(encoding: response)),
                 errors: [], handler: handler)
    }

    static func page(_ path: String, tag: String, summary: String, contentType: String,
                     handler: @escaping @Sendable (Request, Routes) async throws -> Response) -> APIRoute {
        APIRoute(method: .get, path: path, tag: tag, summary: summary, request: nil,
                 response: Body(contentType: contentType, schema: nil), errors: [], handler: handler)
    }
}

extension APIRoute {
    /// Every route the server answers, in the order the description lists them.
    static func all() throws -> [APIRoute] {
        let embedding: [Float] = [0.0132, -0.0871, 0.0415]
        return [
            try .json("/v1/embeddings", tag: "embeddings", summary: "Embed texts or token ids (OpenAI's embeddings API).",
                      request: OpenAIEmbeddingRequest.self,
                      example: #"{"input": ["compress files on the command line", "a text editor"], "encoding_format": "float"}"#,
                      response: [OpenAIEmbeddingResponse(data: [.init(embedding: .floats(embedding), index: 0),
                                                                .init(embedding: .base64("AAAAPw=="), index: 1)],
                                                         model: "embeddinggemma-300m",
                                                         usage: .init(prompt_tokens: 12, total_tokens: 12, truncated_inputs: 0))],
                      errors: [400, 404, 413, 422]) { try await $1.openAIEmbeddings($0) },
            try .json("/embed", tag: "embeddings", summary: "Embed texts or token ids (Text Embeddings Inference's /embed): one vector per input.",
                      request: TEIEmbedRequest.self, example: #"{"inputs": "compress files on the command line", "normalize": true}"#,
                      response: [[embedding]], errors: [400, 404, 413, 422]) { try await $1.teiEmbed($0) },
            try .json("/rerank", tag: "rerank",
                      summary: "Order documents for a query with the loaded reranker: TEI's shape (texts) or Cohere's and Jina's (documents).",
                      request: RerankRequest.self,
                      example: #"{"query": "edit text in a terminal", "documents": ["vim: Vi IMproved, a text editor", "gzip: GNU compression utilities"], "top_n": 2}"#,
                      response: [RerankAnswer.tei([TEIRank(index: 1, score: 0.91, text: "vim: Vi IMproved, a text editor")]),
                                 RerankAnswer.cohere(CohereRerankResponse(
                                    model: "reranker", results: [.init(index: 0, relevance_score: 0.91, document: .init(text: "vim"))],
                                    usage: .init(total_tokens: 31)))],
                      errors: [400, 404, 413, 422]) { try await $1.rerank($0) },
            try .json("/predict", tag: "heads", summary: "Classify or score texts with a loaded head (TEI's /predict): labels with scores, best first.",
                      request: PredictRequest.self, example: #"{"inputs": ["a library for parsing JSON"]}"#,
                      response: [PredictAnswer.one([LabelScore(label: "libs", score: 0.93)]),
                                 PredictAnswer.many([[LabelScore(label: "libs", score: 0.93)]])],
                      errors: [400, 404, 413, 422]) { try await $1.predict($0) },
            try .json("/search", tag: "search",
                      summary: "Search a loaded index: hybrid, vector or keyword, optionally reranked; each hit with its id, score, text and metadata.",
                      request: SearchRequest.self, example: #"{"query": "compress files on the command line", "k": 5}"#,
                      response: [SearchResponse(index: "debian", mode: "hybrid",
                                                results: [.init(id: "gzip", score: 0.82, text: "GNU compression utilities",
                                                                metadata: .object(["title": .string("GNU compression utilities")]),
                                                                summary: .init(headline: "GNU compression utilities",
                                                                               snippet: "…compress files with gzip…", highlights: [[1, 9]]))],
                                                partial: true, failed_shards: [.init(shard: "http://10.0.0.2:8080", error: "timed out")])],
                      errors: [404, 413, 422, 424]) { try await $1.search($0) },
            try .json("/tokenize", tag: "embeddings", summary: "The tokens of each input (TEI's /tokenize), special tokens marked.",
                      request: TokenizeRequest.self, example: #"{"inputs": "compress files"}"#,
                      response: [[[TokenItem(id: 2, text: "<bos>", special: true)]]], errors: [404, 413, 422]) { try await $1.tokenize($0) },
            try .get("/health", tag: "service", summary: "Whether the server answers.", response: [["status": "ok"]]) { _, _ in
                try HTTPFront.json(["status": "ok"])
            },
            try .get("/info", tag: "service", summary: "The models, heads, indexes and reranker loaded, and the request limits.",
                     response: [ServiceInfo.example]) { try HTTPFront.json($1.info()) },
            .page("/metrics", tag: "service", summary: "Prometheus metrics: requests, latencies, batches, queue.",
                  contentType: "text/plain; version=0.0.4") { _, routes in
                Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                         body: .init(byteBuffer: ByteBuffer(string: routes.service.metrics.exposition())))
            },
            .page("/openapi.json", tag: "service", summary: "This description (OpenAPI 3.1).", contentType: "application/json") { _, _ in
                Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try OpenAPIDocument.data())))
            },
            .page("/", tag: "service", summary: "A search page: search any served index in each mode, rerank, read scores and snippets.",
                  contentType: "text/html") { _, _ in HTTPFront.html(SearchPage.html) },
            .page("/docs", tag: "service", summary: "This description as a page, with a form to send each example.", contentType: "text/html") { _, _ in
                HTTPFront.html(APIDocsPage.html)
            },
        ]
    }
}

/// /rerank answers in the shape it was asked in.
enum RerankAnswer: Encodable {
    case tei([TEIRank])
    case cohere(CohereRerankResponse)

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .tei(let ranks): try c.encode(ranks)
        case .cohere(let response): try c.encode(response)
        }
    }
}

/// /predict answers one list for one input, a list of lists for a batch.
enum PredictAnswer: Encodable {
    case one([LabelScore])
    case many([[LabelScore]])

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .one(let scores): try c.encode(scores)
        case .many(let lists): try c.encode(lists)
        }
    }
}

extension ServiceInfo {
    /// Every field set: what the description records the answer's shape from.
    static let example = ServiceInfo(
        models: [.init(name: "embeddinggemma-300m", dimension: 768, max_input_length: 2048,
                       prompts: ["query": "task: search result | query: "], default_prompt_name: "query")],
        heads: ["sections"], indexes: ["debian"],
        search_indexes: ["debian": .init(model: "embeddinggemma-300m", model_digest: "9f2c…", dimension: 768, factory: "Flat", count: 2000,
                                         query_prompt: "task: search result | query: ", attention: "bidirectional", pooling: "mean",
                                         title_field: "title",
                                         fusion: HybridFusion(method: .score, vectorWeight: 0.7,
                                                              tuned: .init(queries: 1184, ndcg10: 0.949, vectorNDCG10: 0.9429, keywordNDCG10: 0.79)))],
        reranker: "reranker", max_batch_tokens: 16384, max_client_batch_size: 64, max_body_bytes: 2_000_000, auto_truncate: false)
}

/// The OpenAPI 3.1 document of `APIRoute.all()`.
enum OpenAPIDocument {
    static func json() throws -> JSONValue {
        var paths: [String: JSONValue] = [:]
        for route in try APIRoute.all() {
            var operation: [String: JSONValue] = ["summary": .string(route.summary), "tags": .array([.string(route.tag)]),
                                                  "operationId": .string(route.method.rawValue + route.path.operationName)]
            if let request = route.request {
                var media: [String: JSONValue] = [:]
                if let schema = request.schema { media["schema"] = schema.json }
                if let example = request.example, let value = JSONValue(text: example) { media["example"] = value }
                operation["requestBody"] = .object(["required": .bool(true), "content": .object([request.contentType: .object(media)])])
            }
            var responses: [String: JSONValue] = [
                "200": .object(["description": .string("OK"),
                                "content": .object([route.response.contentType: .object(route.response.schema.map { ["schema": $0.json] } ?? [:])])])
            ]
            // The pages and the health check are open; every other route needs the key when the server has one.
            let open = APIKeyMiddleware.open.contains(route.path)
            if open { operation["security"] = .array([]) }
            // Routes describing or watching the server itself (tag "service") run no model.
            let statuses = route.errors + (route.tag == "service" ? [] : APIRoute.modelSide) + (open ? [] : [401])
            for status in Set(statuses).sorted() {
                responses[String(status)] = .object([
                    "description": .string(APIRoute.errorMeaning[status] ?? HTTPResponse.Status(code: status).reasonPhrase),
                    "content": .object(["application/json": .object(["schema": .object(["$ref": .string("#/components/schemas/Error")])])]),
                ])
            }
            operation["responses"] = .object(responses)
            var item: [String: JSONValue] = [:]
            if case .object(let existing)? = paths[route.path] { item = existing }
            item[route.method.rawValue] = .object(operation)
            paths[route.path] = .object(item)
        }
        return .object([
            "openapi": .string("3.1.0"),
            "info": .object(["title": .string("gemma-encoder"), "version": .string(ServiceInfo.apiVersion),
                             "description": .string("Embeddings, classification heads, search and reranking with Gemma-family encoders. Errors answer {error, error_type} with Text Embeddings Inference's status codes.")]),
            "paths": .object(paths),
            // The key is optional: a server started without one answers everyone.
            "security": .array([.object(["bearer": .array([])]), .object([:])]),
            "components": .object([
                "schemas": .object(["Error": try SchemaRecorder.schema(encoding: [ErrorBody(error: "message", error_type: "Validation")]).json]),
                "securitySchemes": .object(["bearer": .object(["type": .string("http"), "scheme": .string("bearer")])]),
            ]),
        ])
    }

    /// The document's bytes, keys sorted so the same server always answers the same bytes.
    static func data() throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return try encoder.encode(try json())
    }
}

extension ServiceInfo {
    /// The API's version in the description: the project's, bumped when a route or a shape changes.
    static let apiVersion = "1.0.0"
}

private extension String {
    /// "/v1/embeddings" → "V1Embeddings": the operationId's tail.
    var operationName: String {
        split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
    }
}
