import DocumentIndex
import EncoderService
import ServiceFixtures
import Foundation
import TestSupport
import XCTest

/// `serve --index` while another writer adds to and deletes from the index: the server picks up each new
/// version without a restart, and no search fails across the swaps.
final class WatchedIndexTests: XCTestCase {
    func testServedIndexFollowsAnotherWriterWithoutAFailedRequest() async throws {
        let fixture = try ServerFixture.shared()
        let dir = try temporaryDirectory("watched")
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("index")
        let docs = (0..<30).map { CorpusDocument(id: "d\($0)", text: "the cat sat number \($0)", metadataJSON: "{}") }
        let writer = try SearchIndex.create(directory: url, encoder: fixture.tiny, modelName: "tiny", factory: "Flat", expectedCount: 30)
        try writer.add(Array(docs.prefix(20)), resume: false)

        let watched = WatchedIndex(try SearchIndex(directory: url, encoder: fixture.tiny))
        watched.startWatching(every: 0.05)
        defer { watched.stopWatching() }
        let service = EncoderService(models: [(name: "tiny", encoder: fixture.tiny)], heads: [:], reranker: nil, rerankerName: nil,
                                     indexes: ["docs": watched], limits: ServiceLimits())
        service.start()
        let server = try await RunningServer.start(service, logger: quietLogger)
        let client = SocketClient(port: server.port)
        // Searches run without pause while the writer publishes versions (stopped by a flag: cancelling the
        // task would cancel its request in flight).
        let stop = StopFlag()
        let searching = Task { () -> (requests: Int, failures: [String]) in
            var requests = 0, failures: [String] = []
            while !stop.isSet {
                let reply = try await client.post("search", ["index": "docs", "query": "the cat sat", "k": 5, "mode": "hybrid"])
                requests += 1
                if reply.status != 200 { failures.append("\(reply.status) \(reply.text)") }
            }
            return (requests, failures)
        }
        // Vector search: it reads the served version's FAISS index (keyword search reads the live SQLite store).
        func served(_ id: String) async throws -> Bool {
            let reply = try await client.post("search", ["index": "docs", "query": "the cat sat number 25", "k": 30, "mode": "vector"])
            return (reply.object["results"] as? [[String: Any]] ?? []).contains { $0["id"] as? String == id }
        }
        func eventually(_ condition: () async throws -> Bool) async throws -> Bool {
            for _ in 0..<100 {
                if try await condition() { return true }
                try await Task.sleep(nanoseconds: 50_000_000)
            }
            return false
        }
        try writer.add(Array(docs.suffix(10)), resume: false)
        let added = try await eventually { watched.count == 30 }
        XCTAssertTrue(added, "the added version is served")
        let present = try await served("d25")
        XCTAssertTrue(present, "the added document is in the served vectors")
        try writer.delete(ids: ["d25"])
        let deleted = try await eventually { watched.count == 29 }
        XCTAssertTrue(deleted, "the version after a delete is served")
        let gone = try await served("d25")
        XCTAssertFalse(gone)
        XCTAssertNil(watched.lastFailure)
        // A version that does not open (its file cut short) is not swapped in; the served one keeps answering.
        // The timer is stopped first, so that it cannot take the good version before the file is cut.
        watched.stopWatching()
        try writer.add([CorpusDocument(id: "late", text: "late text", metadataJSON: "{}")], resume: false)
        let faiss = url.appendingPathComponent("index.faiss")
        try Data(contentsOf: faiss).prefix(64).write(to: faiss)
        XCTAssertFalse(watched.reloadIfChanged())
        XCTAssertNotNil(watched.lastFailure)
        XCTAssertEqual(watched.count, 29, "the served version stays")
        XCTAssertTrue(watched.lastFailure?.contains("index.faiss") == true, watched.lastFailure ?? "")
        stop.set()
        let outcome = try await searching.value
        XCTAssertGreaterThan(outcome.requests, 10)
        XCTAssertEqual(outcome.failures, [], "no search failed across the swaps")
        try await server.shutdown()
    }
}

final class StopFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
