import EncoderService
import ServiceFixtures
import Foundation
import HummingbirdTesting
import XCTest

/// The tests that need a real socket, one of each kind: many concurrent connections through `RunningServer`
/// (what `serve` runs), its graceful shutdown, and bad input through the wire (HummingbirdTesting's live
/// mode). Everything else about the routes runs in router mode (RouteTests, RouteValidationTests).
final class LiveServerTests: XCTestCase {
    var fixture: ServerFixture!

    override func setUpWithError() throws { fixture = try ServerFixture.shared() }

    /// 64 concurrent requests over every route on 64 connections; each answer equals the library's own
    /// result for the same input.
    func testSixtyFourConcurrentMixedRequestsEqualDirectResults() async throws {
        let fixture = fixture!
        let requests = try (0..<64).map { try MixedLoad.request($0, fixture) }
        let service = fixture.service()
        service.start()
        let server = try await RunningServer.start(service, logger: quietLogger)
        let client = SocketClient(port: server.port)
        let replies: [Reply]
        do {
            replies = try await concurrently(requests.map { ($0.path, $0.body) }) { try await client.send("POST", $0.0, body: $0.1) }
        } catch {
            try await server.shutdown()
            throw error
        }
        try await server.shutdown()
        for (i, (request, reply)) in zip(requests, replies).enumerated() {
            XCTAssertEqual(reply.status, 200, "request \(i) (\(request.path)): \(reply.text)")
            try request.check(reply)
        }
    }

    /// Shutdown stops taking connections but lets a request already accepted finish.
    func testGracefulShutdownFinishesInFlightRequests() async throws {
        let service = fixture.service()
        let server = try await RunningServer.start(service, logger: quietLogger)
        let client = SocketClient(port: server.port)
        let inFlight = Task { try await client.post("embed", ["inputs": ["still being served"]]) }
        let stopping: Task<Void, Error>
        do {
            try await waitUntil("the request is queued") { service.models[0].scheduler.queued > 0 }
            stopping = Task { try await server.shutdown() }
            try await Task.sleep(for: .milliseconds(100))
        } catch {
            service.start()
            try await server.shutdown()
            throw error
        }
        service.start()
        let reply = try await inFlight.value
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual((reply.json as? [Any])?.count, 1)
        try await stopping.value
        do {
            _ = try await client.send("GET", "health")
            XCTFail("the server still answers after shutdown")
        } catch {}
    }

    /// Bad input over a real connection (HummingbirdTesting's live mode): malformed JSON, a body over the
    /// limit streamed in chunks, an unknown route; each gets its JSON error and the server keeps serving.
    func testBadRequestsOverASocketGetJSONErrors() async throws {
        var limits = ServiceLimits()
        limits.maxBodyBytes = 10_000
        let service = fixture.service(limits: limits)
        service.start()
        defer { service.stop() }
        let app = try HTTPFront.application(service, host: "127.0.0.1", port: 0, logger: quietLogger)
        try await app.test(.live) { client in
            let client = TestingClient(client: client)
            try await assertRefused(try await client.send("POST", "embed", body: Data(#"{"inputs": ["a""#.utf8)), 422, "Validation",
                                    mentioning: "not valid JSON", then: client)
            try await assertRefused(try await client.send("GET", "nowhere"), 404, "NotFound", mentioning: "nowhere", then: client)
            try await assertRefused(try await client.post("embed", ["inputs": String(repeating: "x", count: 20_000)]), 413, "PayloadTooLarge",
                                    mentioning: "10000 bytes", then: client)
        }
    }
}
