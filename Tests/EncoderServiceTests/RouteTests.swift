import EncoderService
import ServiceFixtures
import Foundation
import GemmaEncoder
import TestSupport
import XCTest

/// Route behaviour that needs no socket, through HummingbirdTesting's router mode: models chosen by name,
/// health, info and metrics, and the full queue's 429.
final class RouteTests: XCTestCase {
    var fixture: ServerFixture!

    override func setUpWithError() throws { fixture = try ServerFixture.shared() }

    func testModelsAreChosenByName() async throws {
        let fixture = fixture!
        try await withRouter(fixture.service()) { client in
            let a = try await client.post("v1/embeddings", ["input": "the cat"])
            let b = try await client.post("v1/embeddings", ["input": "the cat", "model": "second"])
            XCTAssertEqual(a.object["model"] as? String, "tiny")
            XCTAssertEqual(b.object["model"] as? String, "second")
            let va = floats((a.object["data"] as? [[String: Any]])?.first?["embedding"])
            let vb = floats((b.object["data"] as? [[String: Any]])?.first?["embedding"])
            assertClose(va, try fixture.tiny.embed(["the cat"])[0], "default model")
            assertClose(vb, try fixture.second.embed(["the cat"])[0], "second model")
            XCTAssertGreaterThan(maxAbsDiff(va, vb), 1e-3)
            let unknown = try await client.post("v1/embeddings", ["input": "the cat", "model": "nope"])
            XCTAssertEqual(unknown.status, 404)
            XCTAssertTrue((unknown.object["error"] as? String ?? "").contains("tiny, second"))
        }
    }

    func testHealthInfoAndMetrics() async throws {
        try await withRouter(fixture.service()) { client in
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
            for needle in [#"gemma_encoder_http_requests_total{route="/embed",status="200"} 1"#,
                           #"gemma_encoder_http_requests_total{route="/embed",status="400"} 1"#,
                           #"gemma_encoder_http_request_duration_seconds_count{route="/embed"} 2"#,
                           "gemma_encoder_batch_inputs_sum 2", "gemma_encoder_batch_inputs_count 1",
                           "gemma_encoder_tokens_total 7", "gemma_encoder_queue_tokens 0"] {
                XCTAssertTrue(metrics.text.contains(needle), "metrics lack \(needle):\n\(metrics.text)")
            }
        }
    }

    /// A full queue answers 429 with Retry-After at once; the queued request still completes. More tokens
    /// than the whole queue can never be accepted: a validation error (413), not "retry later".
    func testFullQueueAnswers429WithRetryAfter() async throws {
        let text = "the cat sat on the mat and more"
        let tokens = fixture.tiny.tokenize([text])[0].ids.count
        var limits = ServiceLimits()
        limits.maxBatchTokens = tokens + 5  // the queue holds one request of this text, not two
        limits.maxQueuedTokens = tokens + 5
        let service = fixture.service(limits: limits)
        try await withRouter(service, startSchedulers: false) { client in
            let first = Task { try await client.post("embed", ["inputs": [text]]) }
            try await waitUntil("the first request is queued") { service.models[0].scheduler.queued > 0 }
            // Accepted instead, it would wait for the held scheduler: `awaiting` starts it after a while.
            let refused = try await awaiting("the second request is refused", unblock: service.start) {
                try await client.post("embed", ["inputs": [text]])
            }
            XCTAssertEqual(refused.status, 429)
            XCTAssertEqual(refused.object["error_type"] as? String, "Overloaded")
            XCTAssertEqual(refused.headers["retry-after"], "1")
            service.start()
            let accepted = try await first.value
            XCTAssertEqual(accepted.status, 200)
            let huge = try await client.post("embed", ["inputs": [text, text]])
            XCTAssertEqual(huge.status, 413)
            XCTAssertTrue((huge.object["error"] as? String ?? "").contains("at most \(tokens + 5)"), huge.text)
        }
    }
}
