import DocumentIndex
import Foundation
import GemmaEncoder
import TestSupport
import XCTest

/// The first `count` documents of the Debian fixture (a slice of the bundled corpus).
func debianSample(_ count: Int) throws -> [CorpusDocument] {
    let documents = try Corpus.load(path: debianCorpusFixture.path)
    guard count <= documents.count else { throw DebianFixtureTooShort(asked: count, available: documents.count) }
    return Array(documents.prefix(count))
}

struct StopAfterFirstBatch: Error {}

final class SearchIndexTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory("index") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func build(_ docs: [CorpusDocument], factory: String? = nil) throws -> SearchIndex {
        let index = try SearchIndex.create(directory: dir, encoder: try TestModels.embeddingGemma(), modelName: "embeddinggemma-300m",
                                           factory: factory, expectedCount: docs.count)
        try index.add(docs, batch: 16, resume: true)
        return index
    }

    func testBuildAndSearchEveryMode() throws {
        let docs = try debianSample(60)
        let index = try build(docs)
        XCTAssertEqual(index.count, 60)
        XCTAssertEqual(index.manifest.factory, "Flat")
        XCTAssertEqual(index.manifest.dimension, 768)
        XCTAssertEqual(index.manifest.documentPrompt, "title: none | text: ")
        // A document's own short description (its title, not indexed text) finds it.
        var hitsAtOne = 0
        for doc in docs.prefix(20) {
            let title = (try JSONSerialization.jsonObject(with: Data(doc.metadataJSON.utf8)) as! [String: Any])["title"] as! String
            let results = try index.search(title, k: 5, mode: .vector)
            XCTAssertEqual(results.count, 5)
            XCTAssertTrue(zip(results, results.dropFirst()).allSatisfy { $0.score >= $1.score }, "sorted by score")
            if results.first?.id == doc.id { hitsAtOne += 1 }
        }
        XCTAssertGreaterThanOrEqual(hitsAtOne, 14, "vector search finds a package by its short description")
        let keyword = try index.search("strategy game ancient warfare", k: 3, mode: .keyword)
        XCTAssertEqual(keyword.first?.id, "0ad")
        let hybrid = try index.search("real-time strategy game", k: 5, mode: .hybrid)
        XCTAssertTrue(hybrid.contains { $0.id == "0ad" })
        XCTAssertTrue(try index.search("\"unbalanced (quote OR NEAR(", k: 3, mode: .hybrid).count <= 3)
    }

    func testInterruptedBuildKeepsOldIndexAndResumesWithoutReembedding() throws {
        let docs = try debianSample(48)
        let index = try SearchIndex.create(directory: dir, encoder: try TestModels.embeddingGemma(), modelName: "embeddinggemma-300m",
                                           factory: nil, expectedCount: docs.count)
        XCTAssertThrowsError(try index.add(docs, batch: 16, resume: true) { done, _ in
            if done >= 16 { throw StopAfterFirstBatch() }
        })
        // The published index is still the previous (empty) one and opens fine.
        let reopened = try SearchIndex(directory: dir, encoder: try TestModels.embeddingGemma())
        XCTAssertEqual(reopened.count, 0)
        XCTAssertEqual(try reopened.search("game", k: 3, mode: .vector).count, 0)
        // The re-run embeds only the 32 documents that were not committed.
        XCTAssertEqual(try reopened.add(docs, batch: 16, resume: true), 32)
        XCTAssertEqual(reopened.count, 48)
    }

    func testAddDeleteAndDuplicates() throws {
        let docs = try debianSample(30)
        let index = try build(Array(docs.prefix(20)))
        // The same document again is skipped (a re-run of an interrupted add); other text under its id is an error.
        XCTAssertEqual(try index.add([docs[0]], resume: false), 0)
        var changed = docs[0]
        changed.text += " (changed)"
        XCTAssertThrowsError(try index.add([changed], resume: false)) { error in
            XCTAssertTrue("\(error)".contains("already in the index"), "\(error)")
        }
        XCTAssertEqual(try index.add(Array(docs[20...]), resume: false), 10)
        XCTAssertEqual(index.count, 30)
        XCTAssertEqual(try index.delete(ids: [docs[0].id, "no-such-id"]), 1)
        XCTAssertEqual(index.count, 29)
        for mode in SearchMode.allCases {
            XCTAssertFalse(try index.search(docs[0].text, k: 29, mode: mode).contains { $0.id == docs[0].id }, "\(mode)")
        }
        // Reopened from disk: the same count and results.
        let reopened = try SearchIndex(directory: dir, encoder: try TestModels.embeddingGemma())
        XCTAssertEqual(reopened.count, 29)
    }

    /// An IVF index is saved with a useful nprobe (FAISS's default of 1 would search one of the 4 lists here), so
    /// once reopened it returns what exact search returns.
    func testIVFIndexIsSavedWithSearchParameters() throws {
        let docs = try debianSample(40)
        _ = try build(docs, factory: "IVF4,Flat")
        let ivf = try SearchIndex.open(directory: dir)
        XCTAssertEqual(ivf.manifest.factory, "IVF4,Flat")
        let flatDir = dir.appendingPathComponent("flat")
        let flat = try SearchIndex.create(directory: flatDir, encoder: try TestModels.embeddingGemma(), modelName: "embeddinggemma-300m",
                                          factory: "Flat", expectedCount: docs.count)
        try flat.add(docs, batch: 20, resume: false)
        for query in ["strategy game", "mail server", "audio codec library", "fonts"] {
            let a = try ivf.search(query, k: 10, mode: .vector), b = try flat.search(query, k: 10, mode: .vector)
            XCTAssertEqual(a.map(\.id), b.map(\.id), query)
            for (x, y) in zip(a, b) { XCTAssertEqual(x.score, y.score, accuracy: 1e-5, query) }
        }
    }

    func testOpeningWithAnotherModelIsAnError() throws {
        _ = try build(try debianSample(4))
        let manifestURL = dir.appendingPathComponent("manifest.json")
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as! [String: Any]
        manifest["model_digest"] = String(repeating: "0", count: 64)
        try JSONSerialization.data(withJSONObject: manifest).write(to: manifestURL)
        XCTAssertThrowsError(try SearchIndex(directory: dir, encoder: try TestModels.embeddingGemma())) { error in
            XCTAssertTrue("\(error)".contains("was built with model"), "\(error)")
        }
        XCTAssertThrowsError(try SearchIndex(directory: dir.appendingPathComponent("missing"), encoder: try TestModels.embeddingGemma())) { error in
            XCTAssertTrue("\(error)".contains("not an index directory"), "\(error)")
        }
    }

    func testCorpusErrorsNameTheLine() throws {
        let cases = [
            ("dup.jsonl", "{\"id\": \"a\", \"text\": \"x\"}\n{\"id\": \"a\", \"text\": \"y\"}\n", "dup.jsonl:2: duplicate id \"a\" (first on line 1)"),
            ("noid.jsonl", "{\"text\": \"x\"}\n", "noid.jsonl:1: missing field \"id\""),
            ("notext.jsonl", "{\"id\": 1, \"body\": \"x\"}\n", "notext.jsonl:1: missing or non-string field \"text\""),
            ("empty.jsonl", "\n\n", "the corpus is empty"),
        ]
        for (name, content, message) in cases {
            let url = dir.appendingPathComponent(name)
            try content.write(to: url, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try Corpus.load(path: url.path)) { error in
                XCTAssertTrue("\(error)".contains(message), "\(name): \(error)")
            }
        }
        let url = dir.appendingPathComponent("ok.jsonl")
        try "{\"pkg\": 7, \"body\": \"x\", \"section\": \"net\"}\n".write(to: url, atomically: true, encoding: .utf8)
        XCTAssertEqual(try Corpus.load(path: url.path, idField: "pkg", textField: "body"),
                       [CorpusDocument(id: "7", text: "x", metadataJSON: "{\"section\":\"net\"}")])
    }

    func testReciprocalRankFusion() {
        let fused = reciprocalRankFusion([[1, 2, 3], [3, 1, 4]])
        XCTAssertEqual(fused.map(\.id), [1, 3, 2, 4])
        XCTAssertEqual(fused[0].score, 1 / 61.0 + 1 / 62.0, accuracy: 1e-12)
    }
}
