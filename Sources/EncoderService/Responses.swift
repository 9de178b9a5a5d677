import Foundation

/// POST /v1/embeddings answer (OpenAI's shape; `usage.truncated_inputs` is ours).
struct OpenAIEmbeddingResponse: Encodable {
    struct Item: Encodable {
        enum Vector: Encodable {
            case floats([Float])
            case base64(String)
            func encode(to encoder: Encoder) throws {
                var c = encoder.singleValueContainer()
                switch self {
                case let .floats(v): try c.encode(v)
                case let .base64(s): try c.encode(s)
                }
            }
        }
        var object = "embedding"
        var embedding: Vector
        var index: Int
    }
    struct Usage: Encodable {
        var prompt_tokens: Int
        var total_tokens: Int
        var truncated_inputs: Int
    }
    var object = "list"
    var data: [Item]
    var model: String
    var usage: Usage
}

/// A rerank result in TEI's shape.
struct TEIRank: Encodable {
    var index: Int
    var score: Float
    var text: String?
}

/// A rerank answer in Cohere's and Jina's shape.
struct CohereRerankResponse: Encodable {
    struct Result: Encodable {
        struct Document: Encodable { var text: String }
        var index: Int
        var relevance_score: Float
        var document: Document?
    }
    struct Usage: Encodable { var total_tokens: Int }
    var model: String
    var results: [Result]
    var usage: Usage
}

/// A label with its score (TEI's /predict).
struct LabelScore: Encodable {
    var label: String
    var score: Double
}

struct SearchResponse: Encodable {
    struct Hit: Encodable {
        var id: String
        var score: Double
        var text: String
        var metadata: JSONValue?
    }
    struct FailedShard: Encodable {
        var shard: String
        var error: String
    }
    var index: String
    var mode: String
    var results: [Hit]
    /// Through a shard router: true when some shards did not answer (listed in failed_shards); absent otherwise.
    var partial: Bool? = nil
    var failed_shards: [FailedShard]? = nil
}

/// A token as TEI's /tokenize reports it (without character offsets).
struct TokenItem: Encodable {
    var id: Int32
    var text: String
    var special: Bool
}

struct ErrorBody: Encodable {
    var error: String
    var error_type: String
}

/// Any JSON value: a document's stored metadata is re-emitted as JSON rather than as a string.
enum JSONValue: Codable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init?(text: String) {
        guard !text.isEmpty, let value = try? JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) else { return nil }
        self = value
    }

    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let v = try? c.decode(Bool.self) { self = .bool(v) }
        else if let v = try? c.decode(Double.self) { self = .number(v) }
        else if let v = try? c.decode(String.self) { self = .string(v) }
        else if let v = try? c.decode([JSONValue].self) { self = .array(v) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }

    func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .null: try c.encodeNil()
        case let .bool(v): try c.encode(v)
        case let .number(v): try c.encode(v)
        case let .string(v): try c.encode(v)
        case let .array(v): try c.encode(v)
        case let .object(v): try c.encode(v)
        }
    }
}
