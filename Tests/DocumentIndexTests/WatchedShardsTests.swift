import DocumentIndex
import Foundation
import GemmaEncoder
import TestSupport
import VectorSearch
import XCTest

/// `serve --index NAME=DIR` given several directories, while another process writes one of the shards: the
/// new version of that shard is served without a restart; a request's set of versions stays the one it
/// started with; a version a shard's watcher must refuse is not swapped in.
final class WatchedShardsTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try temporaryDirectory("watched-shards") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func docs(_ range: Range<Int>) -> [CorpusDocument] {
        range.map { CorpusDocument(id: "d\($0)", text: "archive tool \($0) mail server", metadataJSON: "{}") }
    }

    func testAShardRewrittenByAnotherWriterIsServedWithoutMixingVersions() throws {
        let encoder = try TestModels.tiny()
        let a = dir.appendingPathComponent("a"), b = dir.appendingPathComponent("b")
        try SearchIndex.create(directory: a, encoder: encoder, modelName: "tiny", factory: "Flat", expectedCount: 10)
            .add(docs(0..<10), resume: false)
        let writer = try SearchIndex.create(directory: b, encoder: encoder, modelName: "tiny", factory: "Flat", expectedCount: 10)
        try writer.add(docs(10..<20), resume: false)
        let served = try WatchedShards([try SearchIndex(directory: a, encoder: encoder), try SearchIndex(directory: b, encoder: encoder)])
        XCTAssertEqual(served.count, 20)
        let before = served.snapshot

        try writer.add(docs(20..<25), resume: false)
        XCTAssertFalse(served.shards[0].reloadIfChanged(), "shard a did not change")
        XCTAssertTrue(served.shards[1].reloadIfChanged())
        XCTAssertEqual(served.count, 25)
        XCTAssertEqual(before.count, 20, "a request's set keeps the versions it started with")
        let query = try served.queryEmbedding("archive tool 22 mail server")
        let ids = try served.search(["archive tool 22 mail server"], embeddings: [query], k: 25, mode: .vector, tuning: SearchTuning())[0].map(\.id)
        XCTAssertEqual(Set(ids), Set((0..<25).map { "d\($0)" }), "both shards answer, the new documents included")

        // The watcher loop picks versions up by itself.
        served.startWatching(every: 0.02)
        defer { served.stopWatching() }
        try writer.delete(ids: ["d24"])
        let deadline = Date().addingTimeInterval(10)
        while served.count != 24, Date() < deadline { usleep(10_000) }
        XCTAssertEqual(served.count, 24)
    }

    func testAVersionTheWatcherRefusesIsNotServed() throws {
        let encoder = try TestModels.tiny()
        let url = dir.appendingPathComponent("index")
        let writer = try SearchIndex.create(directory: url, encoder: encoder, modelName: "tiny", factory: "Flat", expectedCount: 10)
        try writer.add(docs(0..<10), resume: false)
        let watched = WatchedIndex(try SearchIndex(directory: url, encoder: encoder)) { manifest in
            manifest.count > 10 ? "more than ten documents" : nil
        }
        try writer.add(docs(10..<12), resume: false)
        XCTAssertFalse(watched.reloadIfChanged())
        XCTAssertEqual(watched.lastFailure, "more than ten documents")
        XCTAssertEqual(watched.count, 10, "the served version stays")
    }
}
