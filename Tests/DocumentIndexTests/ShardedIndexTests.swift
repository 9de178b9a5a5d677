import DocumentIndex
import Foundation
import GemmaEncoder
import TestSupport
import VectorSearch
import XCTest

/// Sharded indexes: one quantizer trained once, shards built from it with disjoint ids, merged.
final class ShardedIndexTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory("shards") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    static let words = ["archive", "compress", "editor", "text", "mail", "server", "game", "strategy", "audio",
                        "player", "network", "tool", "library", "python", "kernel", "driver"]

    /// 240 distinct documents of the tiny model's words, varied enough to spread over the lists.
    var documents: [CorpusDocument] {
        (0..<240).map { i in
            let w = (0..<6).map { Self.words[(i * 7 + $0 * $0 * 3 + i / 16) % Self.words.count] }
            // The number keeps texts (and so scores) distinct: ties would rank by list order, not by content.
            return CorpusDocument(id: "doc\(i)", text: w.joined(separator: " ") + " \(i)", metadataJSON: #"{"n": \#(i)}"#)
        }
    }

    func shard(_ name: String, _ docs: ArraySlice<CorpusDocument>, trained: URL, firstID: Int64) throws -> URL {
        let url = dir.appendingPathComponent(name)
        let index = try SearchIndex.create(directory: url, encoder: try TestModels.tiny(), modelName: "tiny", factory: nil,
                                           expectedCount: docs.count, trained: trained)
        // Batches of 20 start at the same documents in every build here (shards split at multiples of 20), so
        // each document's vector is the same bits whichever build embedded it.
        try index.add(Array(docs), batch: 20, resume: true, firstID: firstID)
        return url
    }

    func train(_ name: String, sample: [CorpusDocument], factory: String = "IVF8,Flat") throws -> URL {
        let url = dir.appendingPathComponent(name)
        try SearchIndex.train(directory: url, encoder: try TestModels.tiny(), modelName: "tiny", factory: factory, sample: sample)
        return url
    }

    /// Three shards (one of them empty) merged give, for every query, the same top 10 — ids and scores — as
    /// one index built in a single process from the same quantizer (nprobe = nlist, so both search every list),
    /// and every search mode works on the merged index.
    func testMergedShardsAnswerAsOneIndex() throws {
        let docs = documents
        let trained = try train("trained", sample: Array(docs.prefix(160)))
        let manifest = try SearchIndex.manifest(in: trained)
        XCTAssertEqual(manifest.count, 0)
        XCTAssertNotNil(manifest.quantizer)
        let single = try shard("single", docs[...], trained: trained, firstID: 1)
        let a = try shard("a", docs[0..<100], trained: trained, firstID: 1)
        let b = try shard("b", docs[100..<240], trained: trained, firstID: 1 << 40)
        let empty = try shard("empty", docs[0..<0], trained: trained, firstID: 2 << 40)
        let merged = dir.appendingPathComponent("merged")
        let result = try SearchIndex.merge(shards: [a, empty, b], into: merged)
        XCTAssertEqual(result.count, 240)
        // The same merge with the inverted lists on disk (index.ivfdata, found beside index.faiss after the
        // directory was built aside and renamed into place).
        let onDisk = dir.appendingPathComponent("ondisk")
        try SearchIndex.merge(shards: [a, empty, b], into: onDisk, onDisk: true)
        XCTAssertTrue(FileManager.default.fileExists(atPath: onDisk.appendingPathComponent("index.ivfdata").path))
        let one = try SearchIndex(directory: single, encoder: try TestModels.tiny())
        let all = try SearchIndex(directory: merged, encoder: try TestModels.tiny())
        let mapped = try SearchIndex(directory: onDisk, encoder: try TestModels.tiny())
        XCTAssertEqual(all.count, 240)
        XCTAssertEqual(mapped.count, 240)
        let queries = ["archive tool", "mail server network", "strategy game audio", "python library", "kernel driver text"]
        for query in queries {
            let expected = try one.search(query, k: 10, mode: .vector), got = try all.search(query, k: 10, mode: .vector)
            XCTAssertEqual(got.count, 10)
            XCTAssertEqual(got.map(\.id), expected.map(\.id), query)
            XCTAssertEqual(got.map(\.score), expected.map(\.score), query)
            XCTAssertEqual(try mapped.search(query, k: 10, mode: .vector), expected, "on disk: \(query)")
            XCTAssertEqual(try all.search(query, k: 5, mode: .keyword).map(\.id), try one.search(query, k: 5, mode: .keyword).map(\.id), query)
            XCTAssertEqual(try all.search(query, k: 5, mode: .hybrid).count, 5)
        }
        // The merged index grows like any other, on the same quantizer.
        try all.add([CorpusDocument(id: "new", text: "archive compress tool", metadataJSON: "{}")], resume: false)
        XCTAssertEqual(all.count, 241)
        XCTAssertEqual(try all.search("archive compress tool", k: 1, mode: .vector).first?.id, "new")
        // An on-disk index is not a merge source (FAISS would empty its lists' file, or leave them unmapped).
        let extra = docs[200..<220].map { CorpusDocument(id: "extra-" + $0.id, text: $0.text, metadataJSON: $0.metadataJSON) }
        let more = try shard("more", extra[...], trained: trained, firstID: 3 << 40)
        for ondiskMerge in [false, true] {
            XCTAssertThrowsError(try SearchIndex.merge(shards: [onDisk, more], into: dir.appendingPathComponent("again"), onDisk: ondiskMerge)) { error in
                XCTAssertTrue("\(error)".contains("keeps its inverted lists on disk"), "\(error)")
            }
        }
        XCTAssertEqual(try mapped.search("archive tool", k: 10, mode: .vector), try one.search("archive tool", k: 10, mode: .vector))
        // An on-disk index that grows is rebuilt in memory; its lists' file goes.
        try mapped.add([CorpusDocument(id: "new", text: "archive compress tool", metadataJSON: "{}")], resume: false)
        XCTAssertEqual(try mapped.search("archive compress tool", k: 1, mode: .vector).first?.id, "new")
        XCTAssertFalse(FileManager.default.fileExists(atPath: onDisk.appendingPathComponent("index.ivfdata").path))
    }

    /// Shards searched as one (`IndexShards`, what `serve --index NAME=DIR` repeated serves) give the merged
    /// index's vector results exactly (each shard's exhaustive top k holds its part of the global top k), and
    /// keyword and hybrid results fused from both shards; shards of another model are refused.
    func testShardsSearchedAsOneIndex() throws {
        let docs = documents
        let trained = try train("trained", sample: Array(docs.prefix(160)))
        let a = try shard("a", docs[0..<100], trained: trained, firstID: 1)
        let b = try shard("b", docs[100..<240], trained: trained, firstID: 1 << 40)
        let merged = try SearchIndex.merge(shards: [a, b], into: dir.appendingPathComponent("merged"))
        XCTAssertEqual(merged.count, 240)
        let one = try SearchIndex(directory: dir.appendingPathComponent("merged"), encoder: try TestModels.tiny())
        let shards = try IndexShards([try SearchIndex(directory: a, encoder: try TestModels.tiny()),
                                      try SearchIndex(directory: b, encoder: try TestModels.tiny())])
        XCTAssertEqual(shards.count, 240)
        for query in ["archive tool", "mail server network", "strategy game audio"] {
            let embedding = [try shards.queryEmbedding(query)]
            let expected = try one.search([query], embeddings: embedding, k: 10, mode: .vector)[0]
            let got = try shards.search([query], embeddings: embedding, k: 10, mode: .vector, tuning: SearchTuning())[0]
            XCTAssertEqual(got.map(\.id), expected.map(\.id), query)
            XCTAssertEqual(got.map(\.score), expected.map(\.score), query)
            let keyword = try shards.search([query], embeddings: [], k: 10, mode: .keyword, tuning: SearchTuning())[0]
            XCTAssertEqual(keyword.count, 10)
            let numbers = keyword.compactMap { Int($0.id.dropFirst(3)) }
            XCTAssertTrue(numbers.contains { $0 < 100 } && numbers.contains { $0 >= 100 }, "both shards answer: \(numbers)")
            XCTAssertEqual(Set(keyword.map(\.id)).count, 10)
            XCTAssertEqual(try shards.search([query], embeddings: embedding, k: 7, mode: .hybrid, tuning: SearchTuning())[0].count, 7)
        }
        let pipeline = SearchPipeline(index: shards, mode: .vector)
        XCTAssertEqual(try pipeline.search("archive tool", k: 5).map(\.result.id), try one.search("archive tool", k: 5, mode: .vector).map(\.id))
        let otherModel = dir.appendingPathComponent("g2")
        let g2 = try SearchIndex.create(directory: otherModel, encoder: try TestModels.tinyGemma2(), modelName: "tiny2", factory: "Flat",
                                        expectedCount: 10)
        try g2.add(Array(docs.prefix(10)), resume: false)
        XCTAssertThrowsError(try IndexShards([try SearchIndex(directory: a, encoder: try TestModels.tiny()), g2])) { error in
            XCTAssertTrue("\(error)".contains("cannot be searched with"), "\(error)")
        }
    }

    /// Hybrid search over shards fuses by the fitted fusion every shard holds, and by the standard one when they
    /// do not all hold the same (one shard's fit is not taken for the others); the shards' manifest records a
    /// fusion, and so hybrid as the best mode, only when it is shared.
    func testShardsFuseByTheFusionTheyShare() throws {
        let docs = documents
        let a = dir.appendingPathComponent("fa"), b = dir.appendingPathComponent("fb")
        for (url, part) in [(a, docs[0..<120]), (b, docs[120..<240])] {
            let index = try SearchIndex.create(directory: url, encoder: try TestModels.tiny(), modelName: "tiny", factory: "Flat",
                                               expectedCount: part.count)
            try index.add(Array(part), batch: 20, resume: false)
        }
        let fitted = HybridFusion(method: .rrf, vectorWeight: 0.2,
                                  tuned: .init(queries: 10, ndcg10: 0.9, vectorNDCG10: 0.8, keywordNDCG10: 0.7))
        func opened() throws -> IndexShards {
            try IndexShards([try SearchIndex(directory: a, encoder: try TestModels.tiny()),
                             try SearchIndex(directory: b, encoder: try TestModels.tiny())])
        }
        func hybrid(_ shards: IndexShards, _ query: String) throws -> [SearchResult] {
            try shards.search([query], embeddings: [try shards.queryEmbedding(query)], k: 10, mode: .hybrid, tuning: SearchTuning())[0]
        }
        /// The merged vector and keyword lists fused by `fusion`, as hybrid search should.
        func expected(_ shards: IndexShards, _ query: String, _ fusion: HybridFusion) throws -> [String] {
            let embedding = [try shards.queryEmbedding(query)]
            let vector = try shards.search([query], embeddings: embedding, k: 50, mode: .vector, tuning: SearchTuning())[0]
            let keyword = try shards.search([query], embeddings: [], k: 50, mode: .keyword, tuning: SearchTuning())[0]
            return Array(IndexShards.hybrid(vector: vector, keyword: keyword, fusion: fusion).prefix(10).map(\.id))
        }
        let queries = ["archive tool", "mail server network", "strategy game audio"]
        try SearchIndex(directory: a, encoder: try TestModels.tiny()).setFusion(fitted)
        let one = try opened()
        XCTAssertNil(one.manifest.fusion, "one shard's fit is not the shards'")
        XCTAssertEqual(one.fusion, .standard)
        XCTAssertEqual(one.manifest.bestSearchMode, .vector)
        var differs = false
        for query in queries {
            XCTAssertEqual(try hybrid(one, query).map(\.id), try expected(one, query, .standard), query)
            let (standard, other) = (try expected(one, query, .standard), try expected(one, query, fitted))
            if standard != other { differs = true }
        }
        XCTAssertTrue(differs, "the two fusions rank these queries differently (else the test shows nothing)")
        try SearchIndex(directory: b, encoder: try TestModels.tiny()).setFusion(fitted)
        let both = try opened()
        XCTAssertEqual(both.manifest.fusion, fitted)
        XCTAssertEqual(both.manifest.bestSearchMode, .hybrid)
        for query in queries { XCTAssertEqual(try hybrid(both, query).map(\.id), try expected(both, query, fitted), query) }
    }

    /// Shards whose documents were embedded with different title fields (a titled document's prompt carries its
    /// title) are not one index: searching or merging them is refused, naming the title fields.
    func testShardsOfAnotherTitleFieldAreRefused() throws {
        let model = try tinyTitledEncoderDirectory(in: dir)
        let encoder = try TextEncoder(directory: model)
        let docs = documents.prefix(40).map { CorpusDocument(id: $0.id, text: $0.text, metadataJSON: #"{"title": "t \#($0.id)", "name": "n"}"#) }
        let trained = dir.appendingPathComponent("titled-trained")
        try SearchIndex.train(directory: trained, encoder: encoder, modelName: "titled", factory: "IVF1,Flat", sample: docs)
        var shards: [URL] = []
        for (i, field) in ["title", "name"].enumerated() {
            let url = dir.appendingPathComponent("titled-\(field)")
            let index = try SearchIndex.create(directory: url, encoder: encoder, modelName: "titled", factory: nil, expectedCount: 20,
                                               trained: trained, titleField: field)
            try index.add(Array(docs[(i * 20)..<(i * 20 + 20)]), batch: 20, resume: false, firstID: Int64(i) << 40 + 1)
            XCTAssertEqual(index.manifest.titleField, field)
            shards.append(url)
        }
        XCTAssertThrowsError(try IndexShards(try shards.map { try SearchIndex(directory: $0, encoder: encoder) })) { error in
            XCTAssertTrue("\(error)".contains("different title field (title vs name)"), "\(error)")
        }
        XCTAssertThrowsError(try SearchIndex.merge(shards: shards, into: dir.appendingPathComponent("titled-merged"))) { error in
            XCTAssertTrue("\(error)".contains("cannot merge with") && "\(error)".contains("title field (title vs name)"), "\(error)")
        }
    }

    /// Shards that cannot be one index are refused before anything is written: another quantizer (trained on
    /// another sample), an index that trained its own, overlapping id ranges, the same document in two shards.
    func testMergeRefusesShardsThatDoNotFit() throws {
        let docs = documents
        let trained = try train("trained", sample: Array(docs.prefix(160)))
        let other = try train("other", sample: Array(docs.suffix(160)))
        let a = try shard("a", docs[0..<100], trained: trained, firstID: 1)
        let b = try shard("b", docs[100..<200], trained: other, firstID: 1 << 40)
        let out = dir.appendingPathComponent("out")
        func refused(_ shards: [URL], _ message: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try SearchIndex.merge(shards: shards, into: out), file: file, line: line) { error in
                XCTAssertTrue("\(error)".contains(message), "\(error)", file: file, line: line)
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path), "nothing published", file: file, line: line)
        }
        refused([a, b], "\(b.path) cannot merge with \(a.path): different quantizer")
        let own = dir.appendingPathComponent("own")
        let plain = try SearchIndex.create(directory: own, encoder: try TestModels.tiny(), modelName: "tiny", factory: "IVF8,Flat",
                                           expectedCount: 200)
        try plain.add(Array(docs[0..<200]), resume: false)
        refused([own, a], "was not started from a trained quantizer")
        let overlapping = try shard("overlap", docs[100..<200], trained: trained, firstID: 50)
        refused([a, overlapping], "\(overlapping.path): internal id 50 is also in an earlier shard (shards must be built with disjoint id ranges")
        let twice = try shard("twice", docs[90..<120], trained: trained, firstID: 1 << 41)
        refused([a, twice], "\(twice.path): document id \"doc90\" is also in an earlier shard")
        refused([a, a], "internal id 1 is also in an earlier shard")
        XCTAssertThrowsError(try SearchIndex.merge(shards: [a], into: a))
        // A shard cannot be continued from another quantizer than the one it started from.
        XCTAssertThrowsError(try SearchIndex.create(directory: a, encoder: try TestModels.tiny(), modelName: "tiny", factory: nil,
                                                    expectedCount: 1, trained: other)) { error in
            XCTAssertTrue("\(error)".contains("was started from another quantizer"), "\(error)")
        }
        // Flat has no quantizer to share.
        XCTAssertThrowsError(try train("flat", sample: Array(docs.prefix(10)), factory: "Flat")) { error in
            XCTAssertTrue("\(error)".contains("Flat has nothing to train"), "\(error)")
        }
    }
}
