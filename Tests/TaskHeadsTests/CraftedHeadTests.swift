import Foundation
import GemmaEncoder
import TaskHeads
import TestSupport
import XCTest

/// Values a crafted head directory or request can hold that once trapped (issue 22's audit): each is an
/// error naming the file now, or is handled.
final class CraftedHeadTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try temporaryDirectory("crafted-head") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func head(inputs: Int, _ name: String) throws -> URL {
        let encoder = try TestModels.tiny()
        let architecture = HeadArchitecture(inputDimension: inputs, outputs: 2, pooling: .mean)
        let head = HeadDirectory(config: HeadConfig(task: .classification, architecture: architecture,
                                                    baseModel: .init(name: "tiny", digest: try ModelFingerprint.digest(of: encoder.source)),
                                                    attention: .bidirectional, prompt: nil),
                                 network: try HeadNetwork(architecture: architecture, seed: 0))
        let url = dir.appendingPathComponent(name)
        try head.write(to: url)
        return url
    }

    /// The base model's digest matches, the width does not: predicting once read past the states.
    func testAHeadOfAnotherWidthIsRefused() throws {
        let encoder = try TestModels.tiny()
        XCTAssertNoThrow(try HeadPredictor(head: try HeadDirectory.read(try head(inputs: 64, "right")), encoder: encoder))
        XCTAssertThrowsError(try HeadPredictor(head: try HeadDirectory.read(try head(inputs: 32, "narrow")), encoder: encoder)) {
            XCTAssertTrue("\($0)".contains("narrow: the head takes 32 inputs, the encoder gives 64"), "\($0)")
        }
    }

    func testANegativeMaxLengthIsAnError() throws {
        let url = try head(inputs: 64, "negative")
        let config = url.appendingPathComponent("head.json")
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: config)) as? [String: Any])
        json["max_length"] = -3
        try JSONSerialization.data(withJSONObject: json).write(to: config)
        XCTAssertThrowsError(try HeadDirectory.read(url)) {
            XCTAssertTrue("\($0)".contains("head.json: max_length -3 is not a length"), "\($0)")
        }
    }

    /// The pair budget is compared before subtracting: Int.min keeps what the template alone makes.
    func testPairMaxLengthNearIntMinDoesNotTrap() throws {
        let encoder = try TestModels.tiny()
        let pair = encoder.tokenizePair(query: "a cat", document: "the cat sat", template: .embeddingGemma, maxLength: Int.min)
        XCTAssertTrue(pair.truncated)
        XCTAssertEqual(pair.ids, [2, 1])
    }
}
