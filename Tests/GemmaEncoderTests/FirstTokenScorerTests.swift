import Foundation
import GemmaEncoder
import TestSupport
import XCTest

/// The RankT5-style scorer against transformers: for each fixture sequence as the pair text, the score is the
/// first decoder step's logit of the chosen token in transformers' own logits (`reference.json`, from the start
/// token 2), within the 1e-4, on both T5Gemma generations.
final class FirstTokenScorerTests: XCTestCase {
    private struct Reference: Decodable {
        let input_ids: [[Int32]]
        let decoder_input_ids: [[Int32]]
        let logits: [[[Float]]]
    }

    func testScoresAreTransformersFirstStepLogits() throws {
        for variant in ["t5gemma", "t5gemma2"] {
            let dir = fixturesDirectory.appendingPathComponent("tiny/\(variant)")
            let ref = try JSONDecoder().decode(Reference.self, from: Data(contentsOf: dir.appendingPathComponent("reference.json")))
            XCTAssertTrue(ref.decoder_input_ids.allSatisfy { $0.first == 2 }, "the reference starts from the start token")
            for token in [5, 77, 319] {
                let scorer = try FirstTokenScorer(model: try TextEncoder(directory: dir), token: "#\(token)")
                let scores = try scorer.scores(encoding: ref.input_ids.map { EncoderInput(ids: $0) })
                for (s, score) in scores.enumerated() {
                    XCTAssertEqual(score, ref.logits[s][0][token], accuracy: 1e-4, "\(variant) sequence \(s) token \(token)")
                }
            }
        }
    }
}
