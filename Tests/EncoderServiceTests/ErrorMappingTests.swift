import CSQLite
import DocumentIndex
import EncoderService
import ServiceFixtures
import Foundation
import GemmaEncoder
import Logging
import TaskHeads
import TestSupport
import VectorSearch
import XCTest

/// Errors reach clients by kind: the client's problems are 4xx, a failing backend (model, head, index) 424,
/// the service's own failure 500; on a real loopback server, a broken index is a 424 and the server keeps serving.
final class ErrorMappingTests: XCTestCase {
    func testEveryKindOfErrorHasItsStatus() {
        struct Unexpected: Error {}
        let cases: [(any Error, Int, String)] = [
            (SchedulerError.overloaded(queuedTokens: 9), 429, "Overloaded"),
            (SchedulerError.tooLarge(tokens: 9, limit: 5), 413, "Validation"),
            (SchedulerError.stopped, 503, "Unhealthy"),
            (EncoderError.invalidInput("dimension 9 must be between 1 and the model's 8"), 413, "Validation"),
            (ModelError.tokenOutOfRange(sequence: 0, position: 1, id: 99, vocabularySize: 10), 422, "Tokenizer"),
            (DecodingError.dataCorrupted(.init(codingPath: [], debugDescription: "x")), 422, "Validation"),
            (EncoderError.invalidConfig(file: "config.json", field: "x", "bad"), 424, "Backend"),
            (ModelError.shapeMismatch("x"), 424, "Backend"),
            (TokenizerError.unreadable(file: "tokenizer.json", message: "x"), 424, "Backend"),
            (HeadError.invalidData("x"), 424, "Backend"),
            (IndexError.corrupt("x"), 424, "Backend"),
            (DocumentStoreError.closed(path: "documents.sqlite"), 424, "Backend"),
            (Unexpected(), 500, "Internal"),
        ]
        for (error, status, type) in cases {
            let mapped = ServiceError(classifying: error)
            XCTAssertEqual(mapped.status, status, "\(error)")
            XCTAssertEqual(mapped.type, type, "\(error)")
        }
        let refusal = ServiceError.validation("batch size 5 > 4")
        XCTAssertEqual(ServiceError(classifying: refusal), refusal, "a ServiceError keeps its kind")
        XCTAssertEqual(ServiceError(classifying: SchedulerError.overloaded(queuedTokens: 1)).retryAfterSeconds, 1)
    }

    /// An index whose SQLite file loses its documents table under the server (another process dropped it):
    /// search fails in the backend, so 424 with the SQLite error, never a 413 or a dropped connection.
    func testABrokenIndexIsABackendFailure() async throws {
        let fixture = try ServerFixture.shared()
        let directory = try temporaryDirectory("broken-index")
        defer { try? FileManager.default.removeItem(at: directory) }
        let index = try SearchIndex.create(directory: directory, encoder: fixture.tiny, modelName: "tiny",
                                           factory: "Flat", expectedCount: 4)
        try index.add(Array(fixture.documents.prefix(4)), batch: 4, resume: false)
        let service = EncoderService(models: [(name: "tiny", encoder: fixture.tiny)], indexes: ["broken": index])
        service.start()
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = try await RunningServer.start(service, logger: logger)
        let client = SocketClient(port: server.port)
        let before = try await client.post("search", ["query": "the cat", "k": 2])
        XCTAssertEqual(before.status, 200, String(decoding: before.body, as: UTF8.self))

        try Self.execute("DROP TABLE documents", in: directory.appendingPathComponent("documents.sqlite"))
        let reply = try await client.post("search", ["query": "the cat", "k": 2])
        XCTAssertEqual(reply.status, 424, String(decoding: reply.body, as: UTF8.self))
        XCTAssertEqual(reply.object["error_type"] as? String, "Backend")
        XCTAssertTrue((reply.object["error"] as? String ?? "").contains("documents"), "\(reply.object)")
        let health = try await client.send("GET", "health")
        XCTAssertEqual(health.status, 200, "the server stopped answering")
        try await server.shutdown()
    }

    /// SQL on a second connection to the file, as another process would run it.
    static func execute(_ sql: String, in url: URL) throws {
        var db: OpaquePointer?
        guard sqlite3_open(url.path, &db) == SQLITE_OK else { throw CocoaError(.fileReadUnknown) }
        defer { sqlite3_close(db) }
        sqlite3_busy_timeout(db, 5000)
        guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
            throw NSError(domain: "sqlite", code: 1, userInfo: [NSLocalizedDescriptionKey: String(cString: sqlite3_errmsg(db))])
        }
    }
}
