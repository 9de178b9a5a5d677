import Foundation
import TaskHeads
import TestSupport
import XCTest

/// The classification loss with label smoothing against PyTorch's F.cross_entropy(weight:, label_smoothing:)
/// (`scripts/make-classification-loss-fixtures`, Tests/Fixtures/classification-loss): the loss and its gradient
/// with respect to the logits, with and without class weights, at ε = 0, 0.1 and 0.3.
final class LabelSmoothingTests: XCTestCase {
    struct Fixture: Decodable {
        struct Case: Decodable {
            let weights: [Float]
            let label_smoothing: Float
            let loss: Double
            let grad: [Double]
        }
        let rows: Int, classes: Int
        let logits: [Float]
        let labels: [Int]
        let cases: [Case]
    }

    func testLossAndGradientMatchPyTorch() throws {
        let url = fixturesDirectory.appendingPathComponent("classification-loss/label-smoothing.json")
        let fixture = try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
        XCTAssertEqual(fixture.cases.count, 6)
        let items = Array(0..<fixture.rows)
        for c in fixture.cases {
            let targets = Targets.classes(fixture.labels, weights: c.weights)
            let (loss, grad) = Loss.evaluate(fixture.logits, outputs: fixture.classes, targets: targets, items: items,
                                             labelSmoothing: c.label_smoothing)
            let name = "ε \(c.label_smoothing), weights \(c.weights)"
            XCTAssertEqual(loss, c.loss, accuracy: 1e-5 * abs(c.loss), name)
            // The gradient tolerance of the parity tests: 1e-4 · max |ref| + 1e-6 per tensor.
            let scale = c.grad.map(abs).max()!
            let worst = zip(grad, c.grad).map { abs(Double($0) - $1) }.max()!
            XCTAssertLessThanOrEqual(worst, 1e-4 * scale + 1e-6, name)
        }
        // ε = 0 is the loss without smoothing, bit for bit.
        let targets = Targets.classes(fixture.labels, weights: fixture.cases[3].weights)
        let plain = Loss.evaluate(fixture.logits, outputs: fixture.classes, targets: targets, items: items)
        let zero = Loss.evaluate(fixture.logits, outputs: fixture.classes, targets: targets, items: items, labelSmoothing: 0)
        XCTAssertEqual(plain.loss, zero.loss)
        XCTAssertEqual(plain.grad, zero.grad)
    }

    /// 0 is recorded as nil (runs from before the option still match on --resume); out-of-range values are refused.
    func testOptionIsRecordedAndChecked() throws {
        var options = FineTuneOptions()
        options.labelSmoothing = 0
        XCTAssertNil(options.labelSmoothing)
        let before = try JSONEncoder().encode(options)
        XCTAssertFalse(String(decoding: before, as: UTF8.self).contains("label_smoothing"))
        XCTAssertEqual(try JSONDecoder().decode(FineTuneOptions.self, from: before), options)
        options.labelSmoothing = 0.1
        let after = try JSONDecoder().decode(FineTuneOptions.self, from: JSONEncoder().encode(options))
        XCTAssertEqual(after.labelSmoothing, 0.1)
        XCTAssertNoThrow(try options.validate())
        options.labelSmoothing = 1
        XCTAssertThrowsError(try options.validate())
    }
}
