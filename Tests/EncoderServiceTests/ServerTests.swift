import DocumentIndex
import EncoderService
import Foundation
import GemmaEncoder
import Logging
import TaskHeads
import TestSupport
import XCTest

/// The HTTP service on a real loopback socket, against the library's direct results.
/// Tolerance: embeddings and scores agree to 1e-5 (a request's inputs may share a forward pass with other
/// requests' inputs; packing changes the order of a few float sums, nothing else).
final class ServerTests: XCTestCase {
    let fixture = ServerFixture.shared
    var service: EncoderService!
    var server: RunningServer!
    var client: Client!

    static var quiet: Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    func start(limits: ServiceLimits = ServiceLimits(), startSchedulers: Bool = true) async throws {
        service = fixture.service(limits: limits)
        if startSchedulers { service.start() }
        server = try await RunningServer.start(service, logger: Self.quiet)
        client = Client(port: server.port)
    }

    override func tearDown() async throws {
        service?.start()  // a test that held the schedulers back lets the queue drain
        try await server?.shutdown()
    }

    func assertClose(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        XCTAssertLessThanOrEqual(maxAbsDiff(a, b), 1e-5, what, file: file, line: line)
    }

    /// `served` (the direct scores of the items the server returned, in its order) are the best `count` of
    /// `all`, best first: the same ranking up to ties closer than the tolerance.
    func assertRanked(_ served: [Double], _ all: [Double], count: Int, file: StaticString = #filePath, line: UInt = #line) {
        let best = Array(all.sorted(by: >).prefix(count))
        XCTAssertEqual(served.count, best.count, file: file, line: line)
        for (s, b) in zip(served, best) { XCTAssertEqual(s, b, accuracy: 1e-5, "\(served) vs \(best)", file: file, line: line) }
    }

    // MARK: Every route, concurrently

    /// 64 concurrent requests over every route; each response must equal what the library (and so the CLI,
    /// which calls it) computes for the same input.
    func testSixtyFourConcurrentMixedRequestsEqualDirectResults() async throws {
        try await start()
        let f = fixture
        let words = ["the cat sat", "a dog ran", "hello there", "tiny model text", "more words here", "zebra quiz"]
        func texts(_ i: Int, _ n: Int) -> [String] { (0..<n).map { "\(words[(i + $0) % words.count]) \(i * 7 + $0)" } }
        func sigmoid(_ x: Float) -> Float { 1 / (1 + exp(-x)) }

        typealias Check = (Client.Reply) throws -> Void
        var requests: [(String, Any, Check)] = []
        for i in 0..<64 {
            switch i % 10 {
            case 0:  // TEI embed, a list
                let t = texts(i, 1 + i % 4)
                let expected = try f.tiny.embed(t, options: EmbeddingOptions(normalize: true))
                requests.append(("embed", ["inputs": t], { reply in
                    let rows = reply.json as? [Any] ?? []
                    XCTAssertEqual(rows.count, expected.count)
                    for (row, e) in zip(rows, expected) { self.assertClose(floats(row), e, "embed \(i)") }
                }))
            case 1:  // OpenAI, floats, dimensions
                let t = texts(i, 2)
                let expected = try f.tiny.embed(t, options: EmbeddingOptions(dimension: 16))
                let tokens = f.tiny.tokenize(t).reduce(0) { $0 + $1.ids.count }
                requests.append(("v1/embeddings", ["input": t, "dimensions": 16], { reply in
                    let data = reply.object["data"] as? [[String: Any]] ?? []
                    XCTAssertEqual(data.map { $0["index"] as? Int }, [0, 1])
                    for (item, e) in zip(data, expected) { self.assertClose(floats(item["embedding"]), e, "openai \(i)") }
                    XCTAssertEqual((reply.object["usage"] as? [String: Any])?["prompt_tokens"] as? Int, tokens)
                    XCTAssertEqual(reply.object["model"] as? String, "tiny")
                }))
            case 2:  // OpenAI, base64, token arrays, the second model
                let ids: [[Int32]] = [[2, 290, 300, 301, 1], [2, 262, 263, 1]]
                let expected = try f.second.embed(ids.map { EncoderInput(ids: $0) })
                requests.append(("v1/embeddings", ["input": ids, "encoding_format": "base64", "model": "second"], { reply in
                    let data = reply.object["data"] as? [[String: Any]] ?? []
                    XCTAssertEqual(data.count, 2)
                    for (item, e) in zip(data, expected) {
                        let bytes = Data(base64Encoded: item["embedding"] as? String ?? "") ?? Data()
                        let v = bytes.withUnsafeBytes { raw in (0..<(bytes.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) } }
                        self.assertClose(v, e, "base64 \(i)")
                    }
                    XCTAssertEqual(reply.object["model"] as? String, "second")
                }))
            case 3:  // TEI rerank
                let docs = texts(i, 4)
                let scores = try f.reranker.scores(query: "the cat", documents: docs)
                requests.append(("rerank", ["query": "the cat", "texts": docs, "return_text": true], { reply in
                    let rows = reply.json as? [[String: Any]] ?? []
                    XCTAssertEqual(Set(rows.map { $0["index"] as? Int ?? -1 }), Set(docs.indices))
                    self.assertRanked(rows.map { Double(scores[$0["index"] as? Int ?? 0]) }, Array(scores.map(Double.init)), count: 4)
                    for row in rows {
                        let k = row["index"] as? Int ?? 0
                        XCTAssertEqual(Float((row["score"] as? NSNumber)?.doubleValue ?? 0), sigmoid(scores[k]), accuracy: 1e-5)
                        XCTAssertEqual(row["text"] as? String, docs[k])
                    }
                }))
            case 4:  // Cohere/Jina rerank with top_n
                let docs = texts(i, 5)
                let scores = try f.reranker.scores(query: "hello", documents: docs)
                requests.append(("rerank", ["query": "hello", "documents": docs, "top_n": 2], { reply in
                    let results = reply.object["results"] as? [[String: Any]] ?? []
                    self.assertRanked(results.map { Double(scores[$0["index"] as? Int ?? 0]) }, scores.map(Double.init), count: 2)
                    for r in results {
                        let k = r["index"] as? Int ?? 0
                        XCTAssertEqual(Float((r["relevance_score"] as? NSNumber)?.doubleValue ?? 0), sigmoid(scores[k]), accuracy: 1e-5)
                        XCTAssertEqual((r["document"] as? [String: Any])?["text"] as? String, docs[k])
                    }
                }))
            case 5:  // predict, a list and a single text
                let t = texts(i, 3)
                let expected = try f.head.predict(t)
                let single = i % 20 == 5
                requests.append(("predict", ["inputs": single ? t[0] as Any : t as Any], { reply in
                    let lists = single ? [reply.json as? [[String: Any]] ?? []] : reply.json as? [[[String: Any]]] ?? []
                    XCTAssertEqual(lists.count, single ? 1 : 3)
                    for (list, e) in zip(lists, expected) {
                        guard case let .classes(label, _, scores) = e else { return XCTFail("not a classification") }
                        XCTAssertEqual(list.first?["label"] as? String, label)
                        for item in list {
                            XCTAssertEqual((item["score"] as? NSNumber)?.doubleValue ?? -1, scores[item["label"] as? String ?? ""] ?? -2, accuracy: 1e-5)
                        }
                    }
                }))
            case 6, 7:  // search in every mode
                let mode = [SearchMode.vector, .keyword, .hybrid][i % 3]
                let query = words[i % words.count]
                let expected = try f.index.search(query, k: 40, mode: mode)
                let byID = Dictionary(uniqueKeysWithValues: expected.map { ($0.id, $0) })
                requests.append(("search", ["index": "docs", "query": query, "k": 5, "mode": mode.rawValue], { reply in
                    let results = reply.object["results"] as? [[String: Any]] ?? []
                    XCTAssertEqual(results.count, 5, "search \(mode) '\(query)'")
                    self.assertRanked(results.map { byID[$0["id"] as? String ?? ""]?.score ?? .nan }, expected.map(\.score), count: 5)
                    for r in results {
                        let e = byID[r["id"] as? String ?? ""]
                        XCTAssertEqual((r["score"] as? NSNumber)?.doubleValue ?? 0, e?.score ?? .nan, accuracy: 1e-5)
                        XCTAssertEqual(r["text"] as? String, e?.text)
                        XCTAssertEqual((r["metadata"] as? [String: Any])?["n"] as? Int, e.map { Int($0.id.dropFirst(3))! })
                    }
                }))
            case 8:  // search, reranked
                let query = words[i % words.count]
                let candidates = try f.index.search(query, k: 10, mode: .vector)
                let scores = try f.reranker.scores(query: query, documents: candidates.map(\.text))
                let byID = Dictionary(uniqueKeysWithValues: zip(candidates.map(\.id), scores.map(Double.init)))
                requests.append(("search", ["query": query, "k": 3, "rerank": true, "candidates": 10], { reply in
                    let results = reply.object["results"] as? [[String: Any]] ?? []
                    XCTAssertEqual(results.count, 3, "reranked search '\(query)'")
                    self.assertRanked(results.map { byID[$0["id"] as? String ?? ""] ?? .nan }, Array(byID.values), count: 3)
                    for r in results {
                        XCTAssertEqual((r["score"] as? NSNumber)?.doubleValue ?? 0, byID[r["id"] as? String ?? ""] ?? .nan, accuracy: 1e-5)
                    }
                }))
            default:  // tokenize
                let t = texts(i, 2)
                let expected = t.map { f.tiny.tokenizer.encode($0, addSpecialTokens: true) }
                requests.append(("tokenize", ["inputs": t], { reply in
                    let lists = reply.json as? [[[String: Any]]] ?? []
                    XCTAssertEqual(lists.map { $0.map { Int32($0["id"] as? Int ?? -1) } }, expected)
                    XCTAssertEqual(lists.first?.first?["special"] as? Bool, true)
                }))
            }
        }
        XCTAssertEqual(requests.count, 64)
        let client = client!
        let replies = try await withThrowingTaskGroup(of: (Int, Client.Reply).self) { group in
            for (i, r) in requests.enumerated() {
                let path = r.0, body = try JSONSerialization.data(withJSONObject: r.1)
                group.addTask { (i, try await client.send("POST", path, body: body)) }
            }
            var replies = [Client.Reply?](repeating: nil, count: requests.count)
            for try await (i, reply) in group { replies[i] = reply }
            return replies.map { $0! }
        }
        for (i, reply) in replies.enumerated() {
            XCTAssertEqual(reply.status, 200, "request \(i) (\(requests[i].0)): \(String(decoding: reply.body, as: UTF8.self))")
            try requests[i].2(reply)
        }
    }

    // MARK: Dynamic batching

    /// Requests queued while the scheduler is held back are coalesced into forward passes within the token
    /// budget, sorted out correctly afterwards; a request larger than one pass is split.
    func testConcurrentRequestsShareForwardPassesWithinTheTokenBudget() async throws {
        let encoder = fixture.tiny
        let scheduler = ForwardScheduler(encoder: encoder, maxBatchTokens: 256, maxQueuedTokens: 10_000)
        let passes = Passes()
        scheduler.onBatch = { inputs, tokens, _ in passes.add(inputs, tokens) }
        let requests = (0..<12).map { i in encoder.tokenize((0..<(1 + i % 3)).map { "request \(i) text \($0)" }) }
        let big = encoder.tokenize((0..<10).map { "a longer request number \($0) with words" })
        let total = (requests + [big]).flatMap { $0 }.reduce(0) { $0 + $1.ids.count }

        async let results = withThrowingTaskGroup(of: (Int, [[Float]]).self) { group in
            for (i, inputs) in (requests + [big]).enumerated() {
                group.addTask { (i, try await scheduler.tokenStates(inputs, attention: .bidirectional)) }
            }
            var out = [[[Float]]](repeating: [], count: requests.count + 1)
            for try await (i, s) in group { out[i] = s }
            return out
        }
        // Everything is queued before the first pass runs.
        while scheduler.queued < total { try await Task.sleep(nanoseconds: 1_000_000) }
        scheduler.start()
        let states = try await results
        scheduler.stop()

        let recorded = passes.all
        XCTAssertEqual(recorded.reduce(0) { $0 + $1.tokens }, total)
        XCTAssertTrue(recorded.allSatisfy { $0.tokens <= 256 }, "\(recorded)")
        XCTAssertLessThan(recorded.count, requests.count + 1, "requests were not coalesced: \(recorded)")
        XCTAssertGreaterThanOrEqual(recorded.count, (total + 255) / 256)
        XCTAssertGreaterThan(big.reduce(0) { $0 + $1.ids.count }, 256, "the big request must need two passes")
        for (inputs, got) in zip(requests + [big], states) {
            let expected = try encoder.tokenStates(inputs)
            XCTAssertEqual(got.count, expected.count)
            for (a, b) in zip(got, expected) { XCTAssertLessThanOrEqual(maxAbsDiff(a, b), 1e-5) }
        }
        XCTAssertEqual(scheduler.queued, 0)
    }

    final class Passes: @unchecked Sendable {
        private let lock = NSLock()
        private var passes: [(inputs: Int, tokens: Int)] = []
        func add(_ inputs: Int, _ tokens: Int) { lock.withLock { passes.append((inputs, tokens)) } }
        var all: [(inputs: Int, tokens: Int)] { lock.withLock { passes } }
    }

    /// A full queue answers 429 with Retry-After at once; the queued request still completes.
    func testFullQueueAnswers429WithRetryAfter() async throws {
        // The queue holds one request of this text, not two.
        let text = "the cat sat on the mat and more"
        let tokens = fixture.tiny.tokenize([text])[0].ids.count
        var limits = ServiceLimits()
        limits.maxBatchTokens = tokens + 5
        limits.maxQueuedTokens = tokens + 5
        try await start(limits: limits, startSchedulers: false)
        let client = client!
        let first = Task { try await client.post("embed", ["inputs": [text]]) }
        while service.models[0].scheduler.queued == 0 { try await Task.sleep(nanoseconds: 1_000_000) }
        let refused = try await client.post("embed", ["inputs": [text]])
        XCTAssertEqual(refused.status, 429)
        XCTAssertEqual(refused.object["error_type"] as? String, "Overloaded")
        XCTAssertEqual(refused.headers["retry-after"], "1")
        service.start()
        let accepted = try await first.value
        XCTAssertEqual(accepted.status, 200)
        // More tokens than the whole queue can never be accepted: a validation error, not "retry later".
        let huge = try await client.post("embed", ["inputs": [text, text]])
        XCTAssertEqual(huge.status, 413)
        XCTAssertTrue((huge.object["error"] as? String ?? "").contains("at most \(tokens + 5)"))
    }

    /// Shutdown stops taking connections but lets a request already accepted finish.
    func testGracefulShutdownFinishesInFlightRequests() async throws {
        try await start(startSchedulers: false)
        let client = client!
        let inFlight = Task { try await client.post("embed", ["inputs": ["still being served"]]) }
        while service.models[0].scheduler.queued == 0 { try await Task.sleep(nanoseconds: 1_000_000) }
        let server = server!
        let stopping = Task { try await server.shutdown() }
        try await Task.sleep(nanoseconds: 100_000_000)
        service.start()
        let reply = try await inFlight.value
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual((reply.json as? [Any])?.count, 1)
        try await stopping.value
        self.server = nil
        do {
            _ = try await client.send("GET", "health")
            XCTFail("the server still answers after shutdown")
        } catch {}
    }

    // MARK: Limits, truncation, models, metadata

    func testTruncationIsReportedNeverSilent() async throws {
        var limits = ServiceLimits()
        limits.maxInputLength = 8
        try await start(limits: limits)
        let long = "the cat sat on the mat with a hat"
        let refused = try await client.post("embed", ["inputs": [long]])
        XCTAssertEqual(refused.status, 413)
        XCTAssertEqual(refused.object["error_type"] as? String, "Validation")
        XCTAssertTrue((refused.object["error"] as? String ?? "").contains("truncate"))

        let cut = try await client.post("embed", ["inputs": [long, "short"], "truncate": true])
        XCTAssertEqual(cut.status, 200)
        XCTAssertEqual(cut.headers["x-truncated-inputs"], "1")
        let expected = try fixture.tiny.embed(fixture.tiny.tokenize([long], maxLength: 8), options: EmbeddingOptions(normalize: true))
        assertClose(floats((cut.json as? [Any])?.first), expected[0], "truncated embedding")

        let openai = try await client.post("v1/embeddings", ["input": long, "truncate": true])
        XCTAssertEqual(((openai.object["usage"] as? [String: Any])?["truncated_inputs"] as? Int), 1)
        XCTAssertEqual(((openai.object["usage"] as? [String: Any])?["prompt_tokens"] as? Int), 8)
        let untouched = try await client.post("embed", ["inputs": ["short"]])
        XCTAssertNil(untouched.headers["x-truncated-inputs"])

        // A rerank pair over the reranker's length: refused, or cut at the document's end and reported.
        let document = String(repeating: "words ", count: 30)
        let rerankRefused = try await client.post("rerank", ["query": "the cat", "texts": ["short", document]])
        XCTAssertEqual(rerankRefused.status, 413)
        XCTAssertTrue((rerankRefused.object["error"] as? String ?? "").contains("text 1"))
        let reranked = try await client.post("rerank", ["query": "the cat", "texts": ["short", document], "truncate": true, "raw_scores": true])
        XCTAssertEqual(reranked.status, 200)
        XCTAssertEqual(reranked.headers["x-truncated-inputs"], "1")
        let direct = try fixture.reranker.scores(query: "the cat", documents: ["short", document])
        for row in reranked.json as? [[String: Any]] ?? [] {
            XCTAssertEqual(Float((row["score"] as? NSNumber)?.doubleValue ?? 0), direct[row["index"] as? Int ?? 0], accuracy: 1e-5)
        }
    }

    func testModelsAreChosenByName() async throws {
        try await start()
        let a = try await client.post("v1/embeddings", ["input": "the cat"])
        let b = try await client.post("v1/embeddings", ["input": "the cat", "model": "second"])
        XCTAssertEqual(a.object["model"] as? String, "tiny")
        XCTAssertEqual(b.object["model"] as? String, "second")
        let va = floats((a.object["data"] as? [[String: Any]])?.first?["embedding"])
        let vb = floats((b.object["data"] as? [[String: Any]])?.first?["embedding"])
        assertClose(vb, try fixture.second.embed(["the cat"])[0], "second model")
        XCTAssertGreaterThan(maxAbsDiff(va, vb), 1e-3)
        let unknown = try await client.post("v1/embeddings", ["input": "the cat", "model": "nope"])
        XCTAssertEqual(unknown.status, 404)
        XCTAssertTrue((unknown.object["error"] as? String ?? "").contains("tiny, second"))
    }

    func testHealthInfoAndMetrics() async throws {
        try await start()
        let health = try await client.send("GET", "health")
        XCTAssertEqual(health.status, 200)
        let info = try JSONDecoder().decode(ServiceInfo.self, from: try await client.send("GET", "info").body)
        XCTAssertEqual(info.models.map(\.name), ["tiny", "second"])
        XCTAssertEqual(info.models[0].dimension, 64)
        XCTAssertEqual(info.heads, ["sections"])
        XCTAssertEqual(info.indexes, ["docs"])
        XCTAssertEqual(info.reranker, "tiny-reranker")
        _ = try await client.post("embed", ["inputs": ["a", "b c"]])
        _ = try await client.post("embed", ["inputs": []])
        let metrics = try await client.send("GET", "metrics")
        XCTAssertEqual(metrics.headers["content-type"]?.hasPrefix("text/plain"), true)
        let text = String(decoding: metrics.body, as: UTF8.self)
        for needle in [#"gemma_encoder_http_requests_total{route="/embed",status="200"} 1"#,
                       #"gemma_encoder_http_requests_total{route="/embed",status="400"} 1"#,
                       #"gemma_encoder_http_request_duration_seconds_count{route="/embed"} 2"#,
                       "gemma_encoder_batch_inputs_sum 2", "gemma_encoder_batch_inputs_count 1",
                       "gemma_encoder_tokens_total 7", "gemma_encoder_queue_tokens 0"] {
            XCTAssertTrue(text.contains(needle), "metrics lack \(needle):\n\(text)")
        }
    }

    // MARK: Bad input, one class per test: a 4xx JSON body, and the server keeps serving

    func assertRefused(_ reply: Client.Reply, _ status: Int, _ type: String, mentioning needle: String,
                       file: StaticString = #filePath, line: UInt = #line) async throws {
        XCTAssertEqual(reply.status, status, String(decoding: reply.body, as: UTF8.self), file: file, line: line)
        XCTAssertEqual(reply.object["error_type"] as? String, type, file: file, line: line)
        let message = reply.object["error"] as? String ?? ""
        XCTAssertTrue(message.contains(needle), "'\(message)' lacks '\(needle)'", file: file, line: line)
        XCTAssertEqual(reply.headers["content-type"], "application/json", file: file, line: line)
        let health = try await client.send("GET", "health")
        XCTAssertEqual(health.status, 200, "the server stopped answering", file: file, line: line)
    }

    func testMalformedJSON() async throws {
        try await start()
        try await assertRefused(try await client.send("POST", "embed", body: Data(#"{"inputs": ["a""#.utf8)), 422, "Validation", mentioning: "not valid JSON")
    }

    func testWrongTypes() async throws {
        try await start()
        try await assertRefused(try await client.post("embed", ["inputs": 5]), 422, "Validation", mentioning: "inputs")
        try await assertRefused(try await client.post("search", ["query": "x", "k": "ten"]), 422, "Validation", mentioning: "k")
        try await assertRefused(try await client.post("rerank", ["texts": ["a"]]), 422, "Validation", mentioning: "query")
        try await assertRefused(try await client.post("v1/embeddings", ["input": "a", "encoding_format": "hex"]), 413, "Validation", mentioning: "encoding_format")
    }

    /// Nothing to work on is TEI's Empty: 400.
    func testEmptyArrays() async throws {
        try await start()
        try await assertRefused(try await client.post("embed", ["inputs": [String]()]), 400, "Empty", mentioning: "empty")
        try await assertRefused(try await client.post("rerank", ["query": "q", "texts": [String]()]), 400, "Empty", mentioning: "empty")
        try await assertRefused(try await client.post("v1/embeddings", ["input": [[Int]()]]), 400, "Empty", mentioning: "no tokens")
        try await assertRefused(try await client.post("search", ["query": ""]), 400, "Empty", mentioning: "query")
    }

    func testInvalidUTF8() async throws {
        try await start()
        var body = Data(#"{"inputs": ""#.utf8)
        body.append(contentsOf: [0xFF, 0xFE, 0x41])
        body.append(Data(#""}"#.utf8))
        try await assertRefused(try await client.send("POST", "embed", body: body), 422, "Validation", mentioning: "UTF-8")
    }

    func testUnknownIndexHeadRouteAndTokens() async throws {
        try await start()
        try await assertRefused(try await client.post("search", ["index": "nope", "query": "x"]), 404, "NotFound", mentioning: "docs")
        try await assertRefused(try await client.post("predict", ["inputs": "x", "head": "nope"]), 404, "NotFound", mentioning: "sections")
        try await assertRefused(try await client.send("GET", "nowhere"), 404, "NotFound", mentioning: "nowhere")
        try await assertRefused(try await client.post("v1/embeddings", ["input": [2, 99999]]), 422, "Tokenizer", mentioning: "99999")
        try await assertRefused(try await client.post("embed", ["inputs": "x", "prompt_name": "nope"]), 413, "Validation", mentioning: "prompt_name")
    }

    func testBodiesAndBatchesOverTheLimits() async throws {
        var limits = ServiceLimits()
        limits.maxBodyBytes = 10_000
        limits.maxClientBatchSize = 4
        try await start(limits: limits)
        try await assertRefused(try await client.post("embed", ["inputs": String(repeating: "x", count: 20_000)]), 413, "PayloadTooLarge", mentioning: "10000 bytes")
        try await assertRefused(try await client.post("embed", ["inputs": ["a", "b", "c", "d", "e"]]), 413, "Validation", mentioning: "batch size 5")
        try await assertRefused(try await client.post("rerank", ["query": "q", "texts": ["a", "b", "c", "d", "e"]]), 413, "Validation", mentioning: "batch size 5")
    }
}
