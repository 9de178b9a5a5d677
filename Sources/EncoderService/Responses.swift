import DocumentIndex
import Foundation
import ModelFormats

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
        /// What a person reads of the hit (the CLI's `ResultSummary`): its headline, a snippet around the query's
        /// words, and where those words are in the snippet as [start, end) offsets in UTF-16 code units (the
        /// way JavaScript indexes strings).
        var summary: Summary?
    }
    struct Summary: Encodable {
        var headline: String
        var snippet: String
        var highlights: [[Int]]
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

extension SearchResponse.Summary {
    init(text: String, metadataJSON: String, query: String, titleField: String?) {
        let summary = ResultSummary(text: text, metadataJSON: metadataJSON, query: query, titleField: titleField)
        headline = summary.headline
        snippet = summary.snippet
        // Character offsets → UTF-16 offsets.
        let characters = Array(summary.snippet)
        var utf16 = [0]
        for c in characters { utf16.append(utf16.last! + c.utf16.count) }
        highlights = summary.highlights.map { [utf16[$0.lowerBound], utf16[$0.upperBound]] }
    }
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
