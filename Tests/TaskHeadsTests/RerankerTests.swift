import Foundation
import GemmaEncoder
import TaskHeads
import TestSupport
import XCTest

final class RerankerTests: XCTestCase {
    var dir: URL!
    var encoder: Encoder!

    override func setUpWithError() throws {
        dir = try temporaryDirectory("rerank")
        encoder = try Encoder(directory: try tinyEncoderDirectory(in: dir))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testPairTemplate() throws {
        let t = try PairTemplate("q: {query} | d: {document}.")
        XCTAssertEqual(t.render(query: "a {document} b", document: "x"), "q: a {document} b | d: x.")
        XCTAssertThrowsError(try PairTemplate("only {query}"))
        XCTAssertThrowsError(try PairTemplate("{query} {document} {query}"))
        let decoded = try JSONDecoder().decode(PairTemplate.self, from: try JSONEncoder().encode(t))
        XCTAssertEqual(decoded, t)
        XCTAssertThrowsError(try JSONDecoder().decode(PairTemplate.self, from: Data(#""no placeholders""#.utf8)))
    }

    func testLongPairsLoseTheDocumentFirst() throws {
        let template = try PairTemplate("query: {query} text: {document}")
        let short = encoder.tokenizePair(query: "the cat", document: "a dog ran", template: template, maxLength: 64)
        XCTAssertEqual(short.ids, encoder.tokenizer.encode("query: the cat text: a dog ran"))
        XCTAssertFalse(short.truncated)

        let document = String(repeating: "more words here ", count: 40)
        let long = encoder.tokenizePair(query: "the cat sat", document: document, template: template, maxLength: 48)
        XCTAssertTrue(long.truncated)
        XCTAssertLessThanOrEqual(long.ids.count, 48)
        XCTAssertGreaterThanOrEqual(long.ids.count, 44, "the budget is used, not wasted")
        XCTAssertEqual(long.ids.last, encoder.tokenizer.eosTokenId)
        let text = encoder.tokenizer.decode(long.ids, skipSpecialTokens: true)
        XCTAssertTrue(text.hasPrefix("query: the cat sat text: more words here"), text)
        XCTAssertTrue(document.hasPrefix(String(text.dropFirst("query: the cat sat text: ".count))), text)
    }

    func testTrainScoreAndRank() throws {
        let rows = (0..<12).map { i in
            #"{"query": "the cat \#(i)", "positive": "a cat sat \#(i)", "negatives": ["a dog ran", "hello there", "tiny words \#(i)"]}"#
        }
        let path = dir.appendingPathComponent("pairs.jsonl")
        try rows.joined(separator: "\n").write(to: path, atomically: true, encoding: .utf8)
        var plan = RerankerTrainingPlan()
        plan.negatives = 2
        plan.options.epochs = 2
        plan.hiddenSize = 8
        for loss in RankingLoss.allCases {
            plan.loss = loss
            let head = try RerankerBuilder.train(encoder: encoder, modelName: "tiny", examples: try RerankExample.read(path: path.path),
                                                 valid: nil, plan: plan, cache: nil)
            XCTAssertEqual(head.config.task, .rerank)
            XCTAssertEqual(head.config.rankingLoss, loss)
            XCTAssertEqual(head.config.pairTemplate, PairTemplate.embeddingGemma.text)
            try head.write(to: dir.appendingPathComponent("reranker"))
            let reranker = try Reranker(head: try HeadDirectory.read(dir.appendingPathComponent("reranker")), encoder: encoder)
            let documents = ["a dog ran", "a cat sat", "hello there"]
            let scores = try reranker.scores(query: "the cat", documents: documents)
            XCTAssertEqual(scores.count, 3)
            let ranked = try reranker.rank(query: "the cat", documents: documents)
            XCTAssertEqual(Set(ranked.map(\.index)), [0, 1, 2])
            XCTAssertEqual(ranked.map(\.score), scores.sorted(by: >))
            // The same pair scores the same alone and among others.
            XCTAssertEqual(try reranker.scores(query: "the cat", documents: [documents[1]])[0], scores[1], accuracy: 1e-5)
        }
    }

    func testBadRowsAndWrongHeadsAreErrors() throws {
        let path = dir.appendingPathComponent("bad.jsonl")
        try #"{"query": "q", "positive": "p", "negatives": []}"#.write(to: path, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try RerankExample.read(path: path.path)) {
            XCTAssertTrue("\($0)".contains("bad.jsonl:1: field \"negatives\" must be a non-empty array"), "\($0)")
        }
        var plan = RerankerTrainingPlan()
        plan.negatives = 3
        let few = [RerankExample(query: "q", positive: "p", negatives: ["n"], line: 4), RerankExample(query: "q", positive: "p", negatives: ["n"], line: 5)]
        XCTAssertThrowsError(try RerankerBuilder.train(encoder: encoder, modelName: "tiny", examples: few, valid: nil, plan: plan, cache: nil)) {
            XCTAssertTrue("\($0)".contains("1 negatives, --negatives asks for 3"), "\($0)")
        }
        let classifier = HeadDirectory(config: HeadConfig(task: .classification,
                                                          architecture: HeadArchitecture(inputDimension: 64, outputs: 2, pooling: .mean),
                                                          baseModel: .init(name: "tiny", digest: try ModelFingerprint.digest(of: encoder.location)),
                                                          attention: .bidirectional, prompt: nil),
                                       network: try HeadNetwork(architecture: HeadArchitecture(inputDimension: 64, outputs: 2, pooling: .mean), seed: 0))
        XCTAssertThrowsError(try Reranker(head: classifier, encoder: encoder)) { XCTAssertTrue("\($0)".contains("not a reranker")) }
    }
}
