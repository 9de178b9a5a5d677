import DocumentIndex
import Foundation
import GemmaEncoder
import TestSupport
import XCTest

/// An index over a decoder adapted as an encoder: the attention mode and pooling chosen at build time are
/// recorded in the manifest and used for documents and queries alike (tiny random Gemma 3; plumbing only).
final class AdaptedIndexTests: XCTestCase {
    func testAttentionAndPoolingAreRecordedAndUsedForQueries() throws {
        let dir = try temporaryDirectory("adapted-index")
        defer { try? FileManager.default.removeItem(at: dir) }
        let encoder = try TestModels.tiny()
        let documents = (0..<12).map { CorpusDocument(id: "d\($0)", text: "document number \($0) about \(["cats", "dogs", "birds"][$0 % 3])") }
        let url = dir.appendingPathComponent("index")
        let index = try SearchIndex.create(directory: url, encoder: encoder, modelName: "tiny", factory: "Flat",
                                           expectedCount: documents.count, attention: .causal, pooling: .last)
        try index.add(documents, resume: false)

        let manifest = try IndexManifest.load(url.appendingPathComponent("manifest.json"))
        XCTAssertEqual(manifest.attention, .causal)
        XCTAssertEqual(manifest.pooling, "last")

        // Reopened, a document's own text finds it with cosine 1: queries are embedded the same way.
        let reopened = try SearchIndex(directory: url, encoder: encoder)
        let options = EmbeddingOptions(attention: .causal, pooling: .last)
        for doc in documents.prefix(4) {
            let top = try reopened.search(doc.text, k: 1, mode: .vector)[0]
            XCTAssertEqual(top.id, doc.id)
            XCTAssertEqual(top.score, 1, accuracy: 1e-5)
        }
        let q = reopened.queryEmbeddingOptions
        XCTAssertEqual(q.attention, .causal)
        XCTAssertEqual(q.pooling, .last)
        // The stored vectors are the causal last-token embeddings, not the default bidirectional mean.
        let causal = try encoder.embed([documents[5].text], options: options)[0]
        let mean = try encoder.embed([documents[5].text])[0]
        XCTAssertGreaterThan(maxAbsDiff(causal, mean), 1e-3)
        let hit = try reopened.search([documents[5].text], embeddings: [causal], k: 1, mode: .vector)[0][0]
        XCTAssertEqual(hit.id, "d5")
        XCTAssertEqual(hit.score, 1, accuracy: 1e-5)

        XCTAssertThrowsError(try SearchIndex.create(directory: dir.appendingPathComponent("none"), encoder: encoder, modelName: "tiny",
                                                    factory: "Flat", expectedCount: 1, pooling: Pooling.attention))
    }
}
