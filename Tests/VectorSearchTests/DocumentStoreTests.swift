import Foundation
import XCTest
import VectorSearch

final class DocumentStoreTests: XCTestCase {
    private var directory: URL!
    private var dbURL: URL { directory.appendingPathComponent("documents.sqlite") }

    override func setUpWithError() throws {
        directory = try TestVectors.temporaryDirectory()
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func sampleDocuments() -> [Document] {
        [
            Document(id: 1, externalID: "a.txt", text: "The quick brown fox jumps over the lazy dog", metadataJSON: #"{"lang":"en"}"#),
            Document(id: 2, externalID: "b.txt", text: "Swift is a general-purpose programming language"),
            Document(id: 7, externalID: "c.txt", text: "Vector search with FAISS and SQLite full text search"),
        ]
    }

    func testInsertAndFetchSurviveReopen() throws {
        do {
            let store = try DocumentStore(url: dbURL)
            try store.insert(sampleDocuments())
            try store.setMeta("cursor", "42")
            store.close()
            XCTAssertThrowsError(try store.count) { error in
                XCTAssertEqual(error as? DocumentStoreError, .closed(path: dbURL.path))
            }
        }
        let store = try DocumentStore(url: dbURL)
        XCTAssertEqual(try store.count, 3)
        XCTAssertEqual(try store.maxID, 7)
        let fetched = try store.documents(ids: [1, 7, 99])
        XCTAssertEqual(fetched.count, 2)
        XCTAssertEqual(fetched[1], sampleDocuments()[0])
        XCTAssertEqual(fetched[7], sampleDocuments()[2])
        XCTAssertEqual(try store.id(forExternalID: "b.txt"), 2)
        XCTAssertNil(try store.id(forExternalID: "missing"))
        XCTAssertEqual(try store.meta("cursor"), "42")
        XCTAssertEqual(try store.keywordSearch("fox", limit: 5).map(\.id), [1]) // FTS survived too
    }

    func testDuplicateExternalIDInsertsNothing() throws {
        let store = try DocumentStore(url: dbURL)
        try store.insert(Array(sampleDocuments().prefix(1)))
        let batch = [
            Document(id: 10, externalID: "new.txt", text: "fresh"),
            Document(id: 11, externalID: "a.txt", text: "clashes with an existing document"),
        ]
        XCTAssertThrowsError(try store.insert(batch)) { error in
            XCTAssertEqual(error as? DocumentStoreError, .duplicateExternalID("a.txt", path: dbURL.path))
            XCTAssertTrue("\(error)".contains("a.txt"))
        }
        XCTAssertEqual(try store.count, 1)
        XCTAssertNil(try store.id(forExternalID: "new.txt"))
        XCTAssertEqual(try store.keywordSearch("fresh", limit: 5).count, 0)

        // Duplicate within one batch, and duplicate internal id.
        XCTAssertThrowsError(try store.insert([
            Document(id: 20, externalID: "x", text: "x"), Document(id: 21, externalID: "x", text: "y"),
        ])) { XCTAssertEqual($0 as? DocumentStoreError, .duplicateExternalID("x", path: self.dbURL.path)) }
        XCTAssertThrowsError(try store.insert([Document(id: 1, externalID: "other", text: "z")])) {
            XCTAssertEqual($0 as? DocumentStoreError, .duplicateID(1, path: self.dbURL.path))
        }
        XCTAssertThrowsError(try store.insert([Document(id: 30, externalID: "bad-json", text: "t", metadataJSON: "{nope")])) { error in
            guard case let .sqlite(path, _, _, message)? = error as? DocumentStoreError else { return XCTFail("\(error)") }
            XCTAssertEqual(path, self.dbURL.path)
            XCTAssertTrue(message.contains("CHECK"), message)
        }
        XCTAssertEqual(try store.count, 1)
    }

    func testDeleteReturnsInternalIDsAndUpdatesFTS() throws {
        let store = try DocumentStore(url: dbURL)
        try store.insert(sampleDocuments())
        XCTAssertEqual(Set(try store.delete(externalIDs: ["a.txt", "c.txt", "unknown"])), [1, 7])
        XCTAssertEqual(try store.count, 1)
        XCTAssertEqual(try store.maxID, 2)
        XCTAssertEqual(try store.keywordSearch("fox search", limit: 10).count, 0)
        XCTAssertEqual(try store.documents(ids: [1, 2, 7]).keys.sorted(), [2])
        // The external id is free again.
        try store.insert([Document(id: 8, externalID: "a.txt", text: "reinserted fox")])
        XCTAssertEqual(try store.keywordSearch("fox", limit: 10).map(\.id), [8])
    }

    func testBM25RanksMatchingDocumentsFirst() throws {
        let store = try DocumentStore(url: dbURL)
        try store.insert(sampleDocuments() + [
            Document(id: 20, externalID: "d.txt", text: "FAISS vector index for vector search of vector embeddings"),
            Document(id: 21, externalID: "e.txt", text: "Cooking pasta takes ten minutes"),
        ])
        let hits = try store.keywordSearch("vector search", limit: 10)
        XCTAssertEqual(Set(hits.map(\.id)), [7, 20])
        XCTAssertEqual(hits.first?.id, 20) // more occurrences of the query words
        XCTAssertTrue(hits.allSatisfy { $0.score > 0 })
        XCTAssertEqual(hits.map(\.score), hits.map(\.score).sorted(by: >))

        // A document with both words beats one with only one of them.
        let both = try store.keywordSearch("quick pasta fox", limit: 10)
        XCTAssertEqual(both.map(\.id), [1, 21])
        XCTAssertEqual(try store.keywordSearch("ÉMBEDDINGS", limit: 10).map(\.id), [20]) // case + diacritics folded
        XCTAssertEqual(try store.keywordSearch("vector", limit: 1).count, 1)
        XCTAssertEqual(try store.keywordSearch("vector", limit: 0).count, 0)
    }

    func testHostileQueriesDoNotThrow() throws {
        let store = try DocumentStore(url: dbURL)
        try store.insert(sampleDocuments() + [Document(id: 30, externalID: "f", text: "a b x foo near and or not")])
        let hostile = [
            "\"unterminated", "a:b", "(x OR", "-foo", "NEAR(", "AND", "OR OR", "NOT", "*", "^start", "\"\"",
            "col:value", "text:fox", "{a b}", "a + b", "'; DROP TABLE documents; --", "", "   ", "???",
            "NEAR(a b, 5)", "fox*", "🦊 emoji", "\u{0}nul",
        ]
        for query in hostile {
            XCTAssertNoThrow(try store.keywordSearch(query, limit: 5), query)
        }
        XCTAssertEqual(try store.keywordSearch("-foo", limit: 5).map(\.id), [30]) // the word still matches
        // "text:" is a word here, not a column filter: doc 7 contains "text", doc 1 "fox".
        XCTAssertEqual(Set(try store.keywordSearch("text:fox", limit: 5).map(\.id)), [1, 7])
        XCTAssertEqual(try store.count, 4)
        XCTAssertEqual(DocumentStore.ftsQuery("(x OR \"y"), #""x" OR "OR" OR "y""#)
        XCTAssertNil(DocumentStore.ftsQuery("-- ::"))
    }

    func testMetaRoundTrip() throws {
        let store = try DocumentStore(url: dbURL)
        XCTAssertNil(try store.meta("cursor"))
        try store.setMeta("cursor", "file-0001")
        try store.setMeta("cursor", "file-0002")
        try store.setMeta("model", "embeddinggemma-300m")
        XCTAssertEqual(try store.meta("cursor"), "file-0002")
        XCTAssertEqual(try store.meta("model"), "embeddinggemma-300m")
    }

    func testEmptyStoreAndErrorsNameTheFile() throws {
        let store = try DocumentStore(url: dbURL)
        XCTAssertEqual(try store.count, 0)
        XCTAssertNil(try store.maxID)
        XCTAssertEqual(try store.delete(externalIDs: []), [])
        try store.insert([])

        let bad = directory.appendingPathComponent("missing-dir/db.sqlite")
        XCTAssertThrowsError(try DocumentStore(url: bad)) { error in
            XCTAssertTrue("\(error)".contains(bad.path), "\(error)")
        }
    }
}

final class DocumentStoreVectorTests: XCTestCase {
    func testVectorsRoundTripAndFollowDeletes() throws {
        let dir = try TestVectors.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("docs.sqlite")
        let docs = (1...3).map { Document(id: Int64($0), externalID: "d\($0)", text: "text \($0)") }
        let vectors: [[Float]] = [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
        do {
            let store = try DocumentStore(url: url)
            try store.insert(docs, vectors: vectors)
            XCTAssertThrowsError(try store.insert([Document(id: 9, externalID: "d9", text: "t")], vectors: []))
            XCTAssertThrowsError(try store.insert([Document(id: 9, externalID: "d1", text: "t")], vectors: [[0, 0, 0]]))
        }
        let store = try DocumentStore(url: url)
        var all = try store.allVectors(dimension: 3)
        XCTAssertEqual(all.ids, [1, 2, 3])
        XCTAssertEqual(all.vectors, vectors.flatMap { $0 })
        XCTAssertEqual(try store.delete(externalIDs: ["d2"]), [2])
        all = try store.allVectors(dimension: 3)
        XCTAssertEqual(all.ids, [1, 3])
        XCTAssertEqual(all.vectors, [1, 2, 3, 7, 8, 9])
        XCTAssertThrowsError(try store.allVectors(dimension: 4)) { error in
            guard case .invalidInput? = error as? DocumentStoreError else { return XCTFail("\(error)") }
        }
        // By id: the deleted document's vector is gone with it, an unknown id is absent.
        let some = try store.vectors(ids: [3, 2, 1, 42], dimension: 3)
        XCTAssertEqual(some, [1: [1, 2, 3], 3: [7, 8, 9]])
        XCTAssertThrowsError(try store.vectors(ids: [1], dimension: 2)) { error in
            guard case .invalidInput? = error as? DocumentStoreError else { return XCTFail("\(error)") }
        }
    }
}
