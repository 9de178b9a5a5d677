import EncoderKernels
import Foundation
import TaskHeads
import TestSupport
import XCTest

final class MetricsTests: XCTestCase {
    func testClassificationMetricsAgainstHandCounts() {
        // truth 0 0 1 1 2 2, predicted 0 1 1 1 2 0: class F1s 2/4, 4/5, 2/3.
        let m = ClassificationMetrics(truth: [0, 0, 1, 1, 2, 2], predicted: [0, 1, 1, 1, 2, 0], classes: 3)
        XCTAssertEqual(m.accuracy, 4.0 / 6, accuracy: 1e-12)
        XCTAssertEqual(m.macroF1, (0.5 + 0.8 + 2.0 / 3) / 3, accuracy: 1e-12)
        XCTAssertEqual(m.confusion, [[1, 1, 0], [0, 2, 0], [1, 0, 1]])
    }

    func testRegressionMetricsAgainstHandValues() {
        let m = RegressionMetrics(truth: [1, 2, 3, 4], predicted: [2, 4, 6, 8])
        XCTAssertEqual(m.pearson, 1, accuracy: 1e-12)
        XCTAssertEqual(m.spearman, 1, accuracy: 1e-12)
        XCTAssertEqual(m.rmse, (30.0 / 4).squareRoot(), accuracy: 1e-12)
        // Ties share ranks: ranks (1.5, 1.5, 3) and (1, 2, 3) give Spearman 0.8660.
        XCTAssertEqual(RegressionMetrics(truth: [1, 1, 2], predicted: [1, 2, 3]).spearman, 0.75.squareRoot(), accuracy: 1e-9)
    }

    func testMultiLabelMetrics() {
        let m = MultiLabelMetrics(truth: [[0, 1], [2], [1]], predicted: [[0, 1], [1], [1, 2]], labels: 3)
        XCTAssertEqual(m.subsetAccuracy, 1.0 / 3, accuracy: 1e-12)
        // label 0: tp 1 → F1 1; label 1: tp 2, fp 1 → 0.8; label 2: fp 1, fn 1 → 0. micro: tp 3, fp 2, fn 1.
        XCTAssertEqual(m.macroF1, 1.8 / 3, accuracy: 1e-12)
        XCTAssertEqual(m.microF1, 6.0 / 9, accuracy: 1e-12)
    }
}

final class LabeledDataTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try temporaryDirectory("labels") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func file(_ lines: [String]) throws -> String {
        let url = dir.appendingPathComponent("\(UUID().uuidString).jsonl")
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func testClassesMultiLabelAndRegression() throws {
        let single = try LabeledData(path: try file([#"{"text": "a", "label": "x"}"#, #"{"text": "b", "label": 3}"#, #"{"text": "c", "label": true}"#]),
                                     task: .classification)
        XCTAssertEqual(single.classNames, ["3", "true", "x"])
        XCTAssertEqual(try single.targets(classes: single.classNames, balanced: false), .classes([2, 0, 1], weights: [1, 1, 1]))
        let multi = try LabeledData(path: try file([#"{"text": "a", "label": ["x", "y"]}"#, #"{"text": "b", "label": []}"#]), task: .classification)
        XCTAssertTrue(multi.isMultiLabel)
        XCTAssertEqual(try multi.targets(classes: ["x", "y"]), .multiLabel([1, 1, 0, 0]))
        let values = try LabeledData(path: try file([#"{"t": "a", "y": 1.5}"#, #"{"t": "b", "y": 3.5}"#]), task: .regression,
                                     textField: "t", labelField: "y")
        let stats = try XCTUnwrap(values.targetStatistics)
        XCTAssertEqual(stats.mean, [2.5])
        XCTAssertEqual(stats.std, [1])
        XCTAssertEqual(try values.standardizedTargets(mean: stats.mean, std: stats.std), .values([-1, 1]))
    }

    func testBalancedWeightsFollowScikitLearn() throws {
        let data = try LabeledData(path: try file((0..<4).map { #"{"text": "t", "label": "\#($0 == 0 ? "rare" : "common")"}"# }),
                                   task: .classification)
        // n / (classes × count): 4 / (2 × 3) and 4 / (2 × 1).
        XCTAssertEqual(try data.targets(classes: ["common", "rare"], balanced: true), .classes([1, 0, 0, 0], weights: [4.0 / 6, 2]))
    }

    func testErrorsNameFileAndLine() throws {
        let cases: [([String], HeadTask, String)] = [
            ([#"{"text": "a", "label": "x"}"#, #"{"label": "x"}"#], .classification, ":2: missing or non-string field \"text\""),
            ([#"{"text": "a"}"#], .classification, ":1: missing field \"label\""),
            ([#"{"text": "a", "label": 1.5}"#], .classification, ":1: field \"label\": a class label must be"),
            ([#"{"text": "a", "label": "x"}"#], .regression, ":1: field \"label\": a regression target must be a finite number"),
            ([#"{"text": "a", "label": [1, 2]}"#, "", #"{"text": "b", "label": [1]}"#], .regression, ":3: field \"label\": 1 targets, earlier rows have 2"),
            ([#"{"text": "a", "label": "x"}"#, #"{"text": "b", "label": ["x"]}"#], .classification, ":2: mixes single labels and label arrays"),
            (["not json"], .classification, ":1: not a JSON object"),
        ]
        for (lines, task, expected) in cases {
            let path = try file(lines)
            XCTAssertThrowsError(try LabeledData(path: path, task: task)) { error in
                XCTAssertTrue("\(error)".contains(path + expected), "\(error)")
            }
        }
        let known = try LabeledData(path: try file([#"{"text": "a", "label": "x"}"#, #"{"text": "b", "label": "zzz"}"#]), task: .classification)
        XCTAssertThrowsError(try known.targets(classes: ["x"])) { XCTAssertTrue("\($0)".contains(":2: unknown label \"zzz\"")) }
    }

    func testHoldOutIsSeededAndDisjoint() throws {
        var a = try LabeledData(path: try file((0..<20).map { #"{"text": "t\#($0)", "label": "\#($0 % 2)"}"# }), task: .classification)
        var b = a
        let validA = try HeadBuilder.holdOut(from: &a, fraction: 0.25, seed: 1)
        let validB = try HeadBuilder.holdOut(from: &b, fraction: 0.25, seed: 1)
        XCTAssertEqual(validA.texts, validB.texts)
        XCTAssertEqual(validA.texts.count, 5)
        XCTAssertEqual(a.texts.count, 15)
        XCTAssertTrue(Set(a.texts).isDisjoint(with: validA.texts))
        var one = try LabeledData(path: try file([#"{"text": "a", "label": "x"}"#]), task: .classification)
        XCTAssertThrowsError(try HeadBuilder.holdOut(from: &one, fraction: 0.1, seed: 0)) {
            XCTAssertEqual($0 as? HoldOutError, .tooFewRows(1, source: one.path))
        }
    }

    /// The one hold-out rule (heads and rerankers): a shuffle's first share, drawn so that the generator goes
    /// on exactly where that shuffle leaves it; the reranker samples its negatives from it next, so a seed
    /// gives the same split and the same negatives as before the rule was shared.
    func testHoldOutSplitDrawsAsOneShuffle() throws {
        var a = SeededGenerator(seed: 3), b = SeededGenerator(seed: 3)
        let split = try HoldOutSplit(count: 10, fraction: 0.3, using: &a)
        let order = Array(0..<10).shuffled(using: &b)
        XCTAssertEqual(split.valid, order.prefix(3).sorted())
        XCTAssertEqual(split.train, order.dropFirst(3).sorted())
        XCTAssertEqual(a.next(), b.next(), "the generator continues where the shuffle left it")
        XCTAssertEqual(try HoldOutSplit(count: 2, fraction: 0.01, using: &a).valid.count, 1, "at least one held out")
        XCTAssertEqual(try HoldOutSplit(count: 3, fraction: 0.99, using: &a).train.count, 1, "at least one left to train")
        XCTAssertThrowsError(try HoldOutSplit(count: 1, fraction: 0.5, using: &a)) {
            XCTAssertEqual($0 as? HoldOutError, .tooFewRows(1, source: nil))
        }
        XCTAssertThrowsError(try HoldOutSplit(count: 5, fraction: 1, using: &a)) { XCTAssertEqual($0 as? HoldOutError, .invalidFraction(1)) }
    }
}
