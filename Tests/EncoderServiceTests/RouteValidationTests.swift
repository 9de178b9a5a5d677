import EncoderService
import ServiceFixtures
import Foundation
import GemmaEncoder
import XCTest

/// Bad requests, one class per test, through HummingbirdTesting's router mode: each is refused with TEI's
/// status code and a JSON body naming the problem, and the service keeps answering.
final class RouteValidationTests: XCTestCase {
    var fixture: ServerFixture!

    override func setUpWithError() throws { fixture = try ServerFixture.shared() }

    func testMalformedJSON() async throws {
        try await withRouter(fixture.service()) { client in
            let reply = try await client.send("POST", "embed", body: Data(#"{"inputs": ["a""#.utf8))
            try await assertRefused(reply, 422, "Validation", mentioning: "not valid JSON", then: client)
        }
    }

    func testWrongTypes() async throws {
        try await withRouter(fixture.service()) { client in
            try await assertRefused(try await client.post("embed", ["inputs": 5]), 422, "Validation", mentioning: "inputs", then: client)
            try await assertRefused(try await client.post("search", ["query": "x", "k": "ten"]), 422, "Validation", mentioning: "k", then: client)
            try await assertRefused(try await client.post("rerank", ["texts": ["a"]]), 422, "Validation", mentioning: "query", then: client)
            try await assertRefused(try await client.post("v1/embeddings", ["input": "a", "encoding_format": "hex"]), 413, "Validation",
                                    mentioning: "encoding_format", then: client)
        }
    }

    /// Nothing to work on is TEI's Empty: 400.
    func testEmptyArrays() async throws {
        try await withRouter(fixture.service()) { client in
            try await assertRefused(try await client.post("embed", ["inputs": [String]()]), 400, "Empty", mentioning: "empty", then: client)
            try await assertRefused(try await client.post("rerank", ["query": "q", "texts": [String]()]), 400, "Empty",
                                    mentioning: "empty", then: client)
            try await assertRefused(try await client.post("v1/embeddings", ["input": [[Int]()]]), 400, "Empty",
                                    mentioning: "no tokens", then: client)
            try await assertRefused(try await client.post("search", ["query": ""]), 400, "Empty", mentioning: "query", then: client)
        }
    }

    /// Search parameters the index does not have (the fixture's index is Flat) or out of range: TEI's Validation (413), naming them.
    func testSearchParameters() async throws {
        try await withRouter(fixture.service()) { client in
            try await assertRefused(try await client.post("search", ["query": "x", "nprobe": 4]), 413, "Validation",
                                    mentioning: "nprobe applies to IVF indexes; index 'docs' is Flat", then: client)
            try await assertRefused(try await client.post("search", ["query": "x", "ef_search": 64]), 413, "Validation",
                                    mentioning: "ef_search applies to HNSW", then: client)
            try await assertRefused(try await client.post("search", ["query": "x", "nprobe": 0]), 413, "Validation",
                                    mentioning: "nprobe must be positive", then: client)
        }
    }

    func testInvalidUTF8() async throws {
        var body = Data(#"{"inputs": ""#.utf8)
        body.append(contentsOf: [0xFF, 0xFE, 0x41])
        body.append(Data(#""}"#.utf8))
        try await withRouter(fixture.service()) { [body] client in
            try await assertRefused(try await client.send("POST", "embed", body: body), 422, "Validation", mentioning: "UTF-8", then: client)
        }
    }

    func testUnknownIndexHeadRouteAndTokens() async throws {
        try await withRouter(fixture.service()) { client in
            try await assertRefused(try await client.post("search", ["index": "nope", "query": "x"]), 404, "NotFound", mentioning: "docs", then: client)
            try await assertRefused(try await client.post("predict", ["inputs": "x", "head": "nope"]), 404, "NotFound",
                                    mentioning: "sections", then: client)
            try await assertRefused(try await client.send("GET", "nowhere"), 404, "NotFound", mentioning: "nowhere", then: client)
            try await assertRefused(try await client.post("v1/embeddings", ["input": [2, 99999]]), 422, "Tokenizer", mentioning: "99999", then: client)
            try await assertRefused(try await client.post("embed", ["inputs": "x", "prompt_name": "nope"]), 413, "Validation",
                                    mentioning: "prompt_name", then: client)
        }
    }

    func testBodiesAndBatchesOverTheLimits() async throws {
        var limits = ServiceLimits()
        limits.maxBodyBytes = 10_000
        limits.maxClientBatchSize = 4
        try await withRouter(fixture.service(limits: limits)) { client in
            try await assertRefused(try await client.post("embed", ["inputs": String(repeating: "x", count: 20_000)]), 413, "PayloadTooLarge",
                                    mentioning: "10000 bytes", then: client)
            try await assertRefused(try await client.post("embed", ["inputs": ["a", "b", "c", "d", "e"]]), 413, "Validation",
                                    mentioning: "batch size 5", then: client)
            try await assertRefused(try await client.post("rerank", ["query": "q", "texts": ["a", "b", "c", "d", "e"]]), 413, "Validation",
                                    mentioning: "batch size 5", then: client)
        }
    }

    /// An input over the length limit is refused unless the request asks for truncation; a truncated input
    /// is always reported (header, OpenAI's usage).
    func testTruncationIsReportedNeverSilent() async throws {
        var limits = ServiceLimits()
        limits.maxInputLength = 8
        let fixture = fixture!
        try await withRouter(fixture.service(limits: limits)) { client in
            let long = "the cat sat on the mat with a hat"
            try await assertRefused(try await client.post("embed", ["inputs": [long]]), 413, "Validation", mentioning: "truncate", then: client)

            let cut = try await client.post("embed", ["inputs": [long, "short"], "truncate": true])
            XCTAssertEqual(cut.status, 200)
            XCTAssertEqual(cut.headers["x-truncated-inputs"], "1")
            let expected = try fixture.tiny.embed(fixture.tiny.tokenize([long], maxLength: 8), options: EmbeddingOptions(normalize: true))
            assertClose(floats((cut.json as? [Any])?.first), expected[0], "truncated embedding")

            let openai = try await client.post("v1/embeddings", ["input": long, "truncate": true])
            let usage = openai.object["usage"] as? [String: Any]
            XCTAssertEqual(usage?["truncated_inputs"] as? Int, 1)
            XCTAssertEqual(usage?["prompt_tokens"] as? Int, 8)
            let untouched = try await client.post("embed", ["inputs": ["short"]])
            XCTAssertNil(untouched.headers["x-truncated-inputs"])
        }
    }

    /// A rerank pair over the reranker's length: refused, or cut at the document's end and reported.
    func testRerankPairsOverTheLengthLimit() async throws {
        var limits = ServiceLimits()
        limits.maxInputLength = 8
        let fixture = fixture!
        try await withRouter(fixture.service(limits: limits)) { client in
            let document = String(repeating: "words ", count: 30)
            try await assertRefused(try await client.post("rerank", ["query": "the cat", "texts": ["short", document]]), 413, "Validation",
                                    mentioning: "text 1", then: client)
            let reranked = try await client.post("rerank", ["query": "the cat", "texts": ["short", document], "truncate": true, "raw_scores": true])
            XCTAssertEqual(reranked.status, 200)
            XCTAssertEqual(reranked.headers["x-truncated-inputs"], "1")
            let direct = try fixture.reranker.scores(query: "the cat", documents: ["short", document])
            let rows = reranked.json as? [[String: Any]] ?? []
            XCTAssertEqual(rows.count, 2)
            for row in rows {
                XCTAssertEqual(Float((row["score"] as? NSNumber)?.doubleValue ?? 0), direct[row["index"] as? Int ?? 0], accuracy: 1e-5)
            }
        }
    }
}
