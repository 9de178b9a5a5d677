import DocumentIndex
import Foundation
import GemmaEncoder
import ServiceFixtures
import TaskHeads
import TestSupport
import XCTest

/// One request of a mixed load: its route, its body, and the check of the answer against what the library
/// (and so the CLI, which calls it) computes directly for the same input.
struct MixedRequest {
    let path: String
    let body: Data
    let check: (Reply) throws -> Void

    init(_ path: String, _ object: Any, check: @escaping (Reply) throws -> Void) throws {
        self.path = path
        body = try JSONSerialization.data(withJSONObject: object)
        self.check = check
    }
}

/// Requests over every route, the i-th of a mix: embeddings (TEI, OpenAI floats and base64, two models),
/// rerank (TEI, Cohere), predict, search in every mode (plain and reranked), tokenize.
enum MixedLoad {
    static let words = ["the cat sat", "a dog ran", "hello there", "tiny model text", "more words here", "zebra quiz"]

    static func texts(_ i: Int, _ n: Int) -> [String] { (0..<n).map { "\(words[(i + $0) % words.count]) \(i * 7 + $0)" } }

    static func request(_ i: Int, _ f: ServerFixture) throws -> MixedRequest {
        switch i % 10 {
        case 0: try teiEmbed(i, f)
        case 1: try openAIFloats(i, f)
        case 2: try openAIBase64(i, f)
        case 3: try teiRerank(i, f)
        case 4: try cohereRerank(i, f)
        case 5: try predict(i, f)
        case 6, 7: try search(i, f)
        case 8: try rerankedSearch(i, f)
        default: try tokenize(i, f)
        }
    }

    static func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

    static func teiEmbed(_ i: Int, _ f: ServerFixture) throws -> MixedRequest {
        let t = texts(i, 1 + i % 4)
        let expected = try f.tiny.embed(t, options: EmbeddingOptions(normalize: true))
        return try MixedRequest("embed", ["inputs": t]) { reply in
            let rows = reply.json as? [Any] ?? []
            XCTAssertEqual(rows.count, expected.count)
            for (row, e) in zip(rows, expected) { assertClose(floats(row), e, "embed \(i)") }
        }
    }

    static func openAIFloats(_ i: Int, _ f: ServerFixture) throws -> MixedRequest {
        let t = texts(i, 2)
        let expected = try f.tiny.embed(t, options: EmbeddingOptions(dimension: 16))
        let tokens = f.tiny.tokenize(t).reduce(0) { $0 + $1.ids.count }
        return try MixedRequest("v1/embeddings", ["input": t, "dimensions": 16]) { reply in
            let data = reply.object["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(data.map { $0["index"] as? Int }, [0, 1])
            for (item, e) in zip(data, expected) { assertClose(floats(item["embedding"]), e, "openai \(i)") }
            XCTAssertEqual((reply.object["usage"] as? [String: Any])?["prompt_tokens"] as? Int, tokens)
            XCTAssertEqual(reply.object["model"] as? String, "tiny")
        }
    }

    /// Token arrays in, base64 float32 out, on the second model.
    static func openAIBase64(_ i: Int, _ f: ServerFixture) throws -> MixedRequest {
        let ids: [[Int32]] = [[2, 290, 300, 301, 1], [2, 262, 263, 1]]
        let expected = try f.second.embed(ids.map { EncoderInput(ids: $0) })
        return try MixedRequest("v1/embeddings", ["input": ids, "encoding_format": "base64", "model": "second"]) { reply in
            let data = reply.object["data"] as? [[String: Any]] ?? []
            XCTAssertEqual(data.count, 2)
            for (item, e) in zip(data, expected) {
                let bytes = Data(base64Encoded: item["embedding"] as? String ?? "") ?? Data()
                let v = bytes.withUnsafeBytes { raw in
                    (0..<(bytes.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
                }
                assertClose(v, e, "base64 \(i)")
            }
            XCTAssertEqual(reply.object["model"] as? String, "second")
        }
    }

    static func teiRerank(_ i: Int, _ f: ServerFixture) throws -> MixedRequest {
        let docs = texts(i, 4)
        let scores = try f.reranker.scores(query: "the cat", documents: docs)
        return try MixedRequest("rerank", ["query": "the cat", "texts": docs, "return_text": true]) { reply in
            let rows = reply.json as? [[String: Any]] ?? []
            XCTAssertEqual(Set(rows.map { $0["index"] as? Int ?? -1 }), Set(docs.indices))
            assertRanked(rows.map { Double(scores[$0["index"] as? Int ?? 0]) }, scores.map(Double.init), count: 4)
            for row in rows {
                let k = row["index"] as? Int ?? 0
                XCTAssertEqual(Float((row["score"] as? NSNumber)?.doubleValue ?? 0), sigmoid(scores[k]), accuracy: 1e-5)
                XCTAssertEqual(row["text"] as? String, docs[k])
            }
        }
    }

    /// Cohere / Jina's shape, with top_n.
    static func cohereRerank(_ i: Int, _ f: ServerFixture) throws -> MixedRequest {
        let docs = texts(i, 5)
        let scores = try f.reranker.scores(query: "hello", documents: docs)
        return try MixedRequest("rerank", ["query": "hello", "documents": docs, "top_n": 2]) { reply in
            let results = reply.object["results"] as? [[String: Any]] ?? []
            assertRanked(results.map { Double(scores[$0["index"] as? Int ?? 0]) }, scores.map(Double.init), count: 2)
            for r in results {
                let k = r["index"] as? Int ?? 0
                XCTAssertEqual(Float((r["relevance_score"] as? NSNumber)?.doubleValue ?? 0), sigmoid(scores[k]), accuracy: 1e-5)
                XCTAssertEqual((r["document"] as? [String: Any])?["text"] as? String, docs[k])
            }
        }
    }

    /// A list of texts, or (every other time) a single text.
    static func predict(_ i: Int, _ f: ServerFixture) throws -> MixedRequest {
        let t = texts(i, 3)
        let expected = try f.head.predict(t)
        let single = i % 20 == 5
        return try MixedRequest("predict", ["inputs": single ? t[0] as Any : t as Any]) { reply in
            let lists = single ? [reply.json as? [[String: Any]] ?? []] : reply.json as? [[[String: Any]]] ?? []
            XCTAssertEqual(lists.count, single ? 1 : 3)
            for (list, e) in zip(lists, expected) {
                guard case let .classes(label, _, scores) = e else { return XCTFail("not a classification") }
                XCTAssertEqual(list.first?["label"] as? String, label)
                for item in list {
                    XCTAssertEqual((item["score"] as? NSNumber)?.doubleValue ?? -1, scores[item["label"] as? String ?? ""] ?? -2, accuracy: 1e-5)
                }
            }
        }
    }

    static func search(_ i: Int, _ f: ServerFixture) throws -> MixedRequest {
        let mode = [SearchMode.vector, .keyword, .hybrid][i % 3]
        let query = words[i % words.count]
        let expected = try f.index.search(query, k: 40, mode: mode)
        let byID = Dictionary(uniqueKeysWithValues: expected.map { ($0.id, $0) })
        return try MixedRequest("search", ["index": "docs", "query": query, "k": 5, "mode": mode.rawValue]) { reply in
            let results = reply.object["results"] as? [[String: Any]] ?? []
            XCTAssertEqual(results.count, 5, "search \(mode) '\(query)'")
            assertRanked(results.map { byID[$0["id"] as? String ?? ""]?.score ?? .nan }, expected.map(\.score), count: 5)
            for r in results {
                let e = byID[r["id"] as? String ?? ""]
                XCTAssertEqual((r["score"] as? NSNumber)?.doubleValue ?? 0, e?.score ?? .nan, accuracy: 1e-5)
                XCTAssertEqual(r["text"] as? String, e?.text)
                XCTAssertEqual((r["metadata"] as? [String: Any])?["n"] as? Int, e.flatMap { Int($0.id.dropFirst(3)) })
            }
        }
    }

    static func rerankedSearch(_ i: Int, _ f: ServerFixture) throws -> MixedRequest {
        let query = words[i % words.count]
        let candidates = try f.index.search(query, k: 10, mode: .vector)
        let scores = try f.reranker.scores(query: query, documents: candidates.map(\.text))
        let byID = Dictionary(uniqueKeysWithValues: zip(candidates.map(\.id), scores.map(Double.init)))
        return try MixedRequest("search", ["query": query, "k": 3, "rerank": true, "candidates": 10]) { reply in
            let results = reply.object["results"] as? [[String: Any]] ?? []
            XCTAssertEqual(results.count, 3, "reranked search '\(query)'")
            assertRanked(results.map { byID[$0["id"] as? String ?? ""] ?? .nan }, Array(byID.values), count: 3)
            for r in results {
                XCTAssertEqual((r["score"] as? NSNumber)?.doubleValue ?? 0, byID[r["id"] as? String ?? ""] ?? .nan, accuracy: 1e-5)
            }
        }
    }

    static func tokenize(_ i: Int, _ f: ServerFixture) throws -> MixedRequest {
        let t = texts(i, 2)
        let expected = t.map { f.tiny.tokenizer.encode($0, addSpecialTokens: true) }
        return try MixedRequest("tokenize", ["inputs": t]) { reply in
            let lists = reply.json as? [[[String: Any]]] ?? []
            XCTAssertEqual(lists.map { $0.map { Int32($0["id"] as? Int ?? -1) } }, expected)
            XCTAssertEqual(lists.first?.first?["special"] as? Bool, true)
        }
    }
}

/// `served` (the direct scores of the items the server returned, in its order) are the best `count` of
/// `all`, best first: the same ranking up to ties closer than the tolerance.
func assertRanked(_ served: [Double], _ all: [Double], count: Int, file: StaticString = #filePath, line: UInt = #line) {
    let best = Array(all.sorted(by: >).prefix(count))
    XCTAssertEqual(served.count, best.count, file: file, line: line)
    for (s, b) in zip(served, best) { XCTAssertEqual(s, b, accuracy: 1e-5, "\(served) vs \(best)", file: file, line: line) }
}
