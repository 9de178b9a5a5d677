import EncoderService
import Foundation
import GemmaEncoder
import ServiceFixtures
import TaskHeads
import TestSupport
import XCTest

/// A fine-tuned cross-encoder fused with its base model's cosine, served when that base model is not one of
/// the served models: /rerank embeds the cosine with the base model through its own scheduler and answers
/// what the library's reranker scores.
final class FusedRerankerServiceTests: XCTestCase {
    func testFineTunedFusedRerankerIsServedBesideAnotherModel() async throws {
        let fixture = try ServerFixture.shared()
        let dir = try temporaryDirectory("fused-reranker")
        defer { try? FileManager.default.removeItem(at: dir) }
        let rows = (0..<12).map { i in
            #"{"query": "the cat \#(i)", "positive": "a cat sat \#(i)", "negatives": ["a dog ran", "hello there", "tiny words \#(i)"]}"#
        }
        let path = dir.appendingPathComponent("pairs.jsonl")
        try rows.joined(separator: "\n").write(to: path, atomically: true, encoding: .utf8)
        var plan = RerankerTrainingPlan()
        plan.negatives = 2
        plan.hiddenSize = 8
        plan.pooling = .mean
        plan.validFraction = 0.5
        plan.maxLength = 64
        plan.fuseSimilarity = true
        var options = FineTuneOptions()
        options.epochs = 1
        options.batchSize = 6
        options.maxLength = 64
        let head = try RerankerBuilder.fineTune(encoder: fixture.tiny, modelName: "tiny", examples: try RerankExample.read(path: path.path),
                                                valid: nil, plan: plan,
                                                run: FineTuneBuilder.Run(plan: HeadTrainingPlan(task: .rerank, pooling: .mean), options: options),
                                                out: dir.appendingPathComponent("reranker"))
        let tuned = try TextEncoder(directory: try XCTUnwrap(head.encoderLocation))
        let reranker = try Reranker(head: head, encoder: tuned, similarityEncoder: fixture.tiny)
        let documents = ["a cat sat 3", "a dog ran", "tiny words"]
        let expected = try reranker.rerankScores(query: "the cat 3", documents: documents, similarity: nil).final

        let service = EncoderService(models: [(name: "second", encoder: fixture.second)], heads: [:], reranker: .head(reranker),
                                     rerankerName: "fused", indexes: [:])
        try await withRouter(service) { client in
            let reply = try await client.post("rerank", ["query": "the cat 3", "texts": documents, "raw_scores": true])
            XCTAssertEqual(reply.status, 200, reply.text)
            let ranks = reply.json as? [[String: Any]] ?? []
            XCTAssertEqual(ranks.count, 3)
            for rank in ranks {
                let index = try XCTUnwrap(rank["index"] as? Int), score = try XCTUnwrap(rank["score"] as? Double)
                XCTAssertEqual(score, Double(expected[index]), accuracy: 1e-4)
            }
        }
    }
}
