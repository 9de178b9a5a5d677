import Foundation
import ModelFormats
import TaskHeads
import TestSupport
import XCTest

/// The rerank losses against sentence-transformers 6.2's own cross-encoder loss classes on fixed logits
/// (`scripts/make-rerank-loss-fixtures`, Tests/Fixtures/rerank-losses): 4 groups of a positive and 3
/// negatives; the loss within 1e-5 relative, dL/dlogits within 1e-4 of its largest entry (several of
/// sentence-transformers' losses compute in float32).
final class RerankLossFixtureTests: XCTestCase {
    func compare(_ name: String, _ targets: (SafetensorsFile) throws -> Targets) throws {
        let file = try SafetensorsFile(url: fixturesDirectory.appendingPathComponent("rerank-losses/\(name).safetensors"))
        func values(_ key: String) throws -> [Float] { try XCTUnwrap(file.tensors[key], "\(name): \(key)").floats().array }
        let logits = try values("logits"), reference = Double(try values("loss")[0]), gradient = try values("grad.logits")
        XCTAssertEqual(logits.count, 16)
        let (loss, grad) = Loss.evaluate(logits, outputs: 1, targets: try targets(file), items: Array(0..<16))
        XCTAssertEqual(loss, reference, accuracy: 1e-5 * abs(reference), name)
        let scale = gradient.map { abs($0) }.max()!
        XCTAssertGreaterThan(scale, 0)
        XCTAssertLessThanOrEqual(maxAbsDiff(grad, gradient), 1e-4 * scale, name)
    }

    func testBinaryCrossEntropy() throws { try compare("bce") { _ in .binary(size: 4) } }
    func testListNet() throws { try compare("listnet") { _ in .listnet(size: 4) } }
    func testRankNet() throws { try compare("ranknet") { _ in .pairs(size: 4) } }
    func testLambdaLossNDCG2PlusPlus() throws { try compare("lambda-ndcg2pp") { _ in .lambda(size: 4) } }
    func testMarginMSE() throws {
        try compare("margin-mse") { file in .margins(size: 4, teacher: try XCTUnwrap(file.tensors["teacher"]).floats().array) }
    }
}
