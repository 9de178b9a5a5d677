import EncoderService
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import TestSupport
import XCTest

/// Keeps the service's one-line-per-request logs out of the test output.
let quietLogger: Logger = {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    return logger
}()

/// Runs `test` against `service` in HummingbirdTesting's router mode: the application `serve` runs (its
/// router, middleware, error mapping and limits) without a socket. The schedulers start first unless
/// `startSchedulers` is false (the test starts them), and are stopped afterwards.
func withRouter(_ service: EncoderService, startSchedulers: Bool = true,
                _ test: @Sendable (TestingClient) async throws -> Void) async throws {
    if startSchedulers { service.start() }
    defer { service.stop() }
    let app = try HTTPFront.application(service, host: "127.0.0.1", port: 0, logger: quietLogger)
    try await app.test(.router) { client in try await test(TestingClient(client: client)) }
}

/// A refused request: the status, TEI's error type and a message naming the problem, as a JSON body; and
/// the service still answers afterwards.
func assertRefused(_ reply: Reply, _ status: Int, _ type: String, mentioning needle: String, then client: some ServiceClient,
                   file: StaticString = #filePath, line: UInt = #line) async throws {
    XCTAssertEqual(reply.status, status, reply.text, file: file, line: line)
    XCTAssertEqual(reply.object["error_type"] as? String, type, file: file, line: line)
    let message = reply.object["error"] as? String ?? ""
    XCTAssertTrue(message.contains(needle), "'\(message)' lacks '\(needle)'", file: file, line: line)
    XCTAssertEqual(reply.headers["content-type"], "application/json", file: file, line: line)
    let health = try await client.send("GET", "health")
    XCTAssertEqual(health.status, 200, "the service stopped answering", file: file, line: line)
}

/// Two float vectors of the same length agree to 1e-5 (requests share forward passes; packing reorders a
/// few float sums, nothing else).
func assertClose(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, what, file: file, line: line)
    if a.count == b.count { XCTAssertLessThanOrEqual(maxAbsDiff(a, b), 1e-5, what, file: file, line: line) }
}
