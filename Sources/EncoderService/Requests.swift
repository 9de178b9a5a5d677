import Foundation

/// Inputs as the APIs accept them: one string, strings, one token array, or token arrays.
public struct InputBatch: Decodable, Sendable, Equatable {
    public enum Items: Sendable, Equatable {
        case texts([String])
        case tokens([[Int32]])
    }

    public var items: Items
    /// One string or one token array (not a list of one): some APIs then answer without the outer list.
    public var isSingle: Bool

    public init(texts: [String], isSingle: Bool = false) {
        items = .texts(texts)
        self.isSingle = isSingle
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) {
            (items, isSingle) = (.texts([s]), true)
        } else if let list = try? c.decode([String].self) {
            (items, isSingle) = (.texts(list), false)
        } else if let ids = try? c.decode([Int32].self), !ids.isEmpty {
            (items, isSingle) = (.tokens([ids]), true)
        } else if let lists = try? c.decode([[Int32]].self) {
            (items, isSingle) = (.tokens(lists), false)
        } else {
            throw DecodingError.typeMismatch(InputBatch.self, .init(codingPath: decoder.codingPath,
                debugDescription: "expected a string, an array of strings, an array of token ids or an array of such arrays"))
        }
    }

    public var count: Int {
        switch items {
        case .texts(let t): t.count
        case .tokens(let t): t.count
        }
    }
}

/// POST /v1/embeddings (OpenAI), plus `prompt_name` and `truncate`, which OpenAI lacks.
public struct OpenAIEmbeddingRequest: Decodable, Sendable {
    public var input: InputBatch
    public var model: String?
    public var dimensions: Int?
    public var encoding_format: String?
    public var user: String?
    public var prompt_name: String?
    public var truncate: Bool?
}

/// POST /embed (Text Embeddings Inference).
public struct TEIEmbedRequest: Decodable, Sendable {
    public var inputs: InputBatch
    public var normalize: Bool?
    public var truncate: Bool?
    public var truncation_direction: String?
    public var prompt_name: String?
    public var dimensions: Int?
    public var model: String?
}

/// POST /rerank: TEI's shape (`texts`, answering `[{index, score, text?}]`) or Cohere's and Jina's
/// (`documents`, answering `{results: [{index, relevance_score, document?}]}`).
public struct RerankRequest: Decodable, Sendable {
    public struct Document: Decodable, Sendable {
        public var text: String
        init(text: String) { self.text = text }
        public init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let s = try? c.decode(String.self) {
                text = s
            } else {
                struct Object: Decodable { var text: String }
                text = try c.decode(Object.self).text
            }
        }
    }

    public var query: String
    public var texts: [String]?
    public var documents: [Document]?
    public var raw_scores: Bool?
    public var return_text: Bool?
    public var return_documents: Bool?
    public var top_n: Int?
    public var truncate: Bool?
    public var model: String?
}

/// POST /predict (TEI): texts to classify with a head (`head` or `?head=`; the only head by default).
public struct PredictRequest: Decodable, Sendable {
    public var inputs: InputBatch
    public var head: String?
    public var raw_scores: Bool?
    public var truncate: Bool?
}

/// POST /search.
public struct SearchRequest: Decodable, Sendable {
    public var index: String?
    public var query: String
    public var k: Int?
    public var mode: String?
    public var rerank: Bool?
    public var candidates: Int?
    /// IVF lists visited and HNSW candidates explored for this query (default: the index's stored values).
    public var nprobe: Int?
    public var ef_search: Int?
    /// The query's embedding, computed by the caller (a shard router, which embeds once for all shards): the
    /// vector stage uses it instead of embedding `query` again.
    public var vector: [Float]?
}

/// POST /tokenize (TEI).
public struct TokenizeRequest: Decodable, Sendable {
    public var inputs: InputBatch
    public var add_special_tokens: Bool?
    public var model: String?
}
