import Foundation
import GemmaEncoder
import TaskHeads
import TestSupport
import XCTest

/// Heads on the tiny random Gemma 3 (with a tokenizer of its own): building, saving, loading, predicting and
/// evaluating, the token-state cache, and the base-model check. The tiny model's outputs mean nothing; the
/// plumbing is what is tested here (quality is a matter for the experiment scripts on real models).
final class HeadDirectoryTests: XCTestCase {
    var dir: URL!
    var encoder: TextEncoder!

    override func setUpWithError() throws {
        dir = try temporaryDirectory("heads")
        encoder = try TextEncoder(directory: try tinyEncoderDirectory(in: dir))
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func file(_ name: String, _ lines: [String]) throws -> String {
        let url = dir.appendingPathComponent(name)
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func words(_ i: Int) -> String { ["the cat sat", "a dog ran", "hello there", "tiny model text", "more words here"][i % 5] + " \(i)" }

    func classificationData() throws -> (LabeledData, LabeledData) {
        let rows = (0..<40).map { #"{"text": "\#(words($0))", "label": "\#(["a", "b", "c"][$0 % 3])"}"# }
        return (try LabeledData(path: try file("train.jsonl", Array(rows.prefix(30))), task: .classification),
                try LabeledData(path: try file("valid.jsonl", Array(rows.suffix(10))), task: .classification))
    }

    /// A classification head trained for one epoch, for tests of saving and loading rather than training.
    func oneEpochHead(pooling: Pooling) throws -> HeadDirectory {
        let (train, valid) = try classificationData()
        var plan = HeadTrainingPlan(task: .classification, pooling: pooling)
        plan.options.epochs = 1
        return try HeadBuilder.train(encoder: encoder, modelName: "tiny", train: train, valid: valid, plan: plan, cache: nil)
    }

    func testTrainSaveLoadPredictEvaluate() throws {
        let (train, valid) = try classificationData()
        var plan = HeadTrainingPlan(task: .classification, pooling: .attention)
        plan.attentionHeads = 4
        plan.hiddenSize = 8
        plan.options.epochs = 3
        let head = try HeadBuilder.train(encoder: encoder, modelName: "tiny", train: train, valid: valid, plan: plan, cache: nil)
        XCTAssertEqual(head.config.labels, ["a", "b", "c"])
        XCTAssertEqual(head.config.training?.trainRows, 30)
        XCTAssertEqual(head.config.training?.epochs.isEmpty, false)

        let url = dir.appendingPathComponent("head")
        try head.write(to: url)
        let loaded = try HeadDirectory.read(url)
        XCTAssertEqual(loaded.config, head.config)
        XCTAssertEqual(loaded.network, head.network)

        let predictor = try HeadPredictor(head: loaded, encoder: encoder)
        let predictions = try predictor.predict(valid.texts)
        XCTAssertEqual(predictions.count, 10)
        for p in predictions {
            guard case let .classes(label, labels, scores) = p else { return XCTFail("not a class prediction") }
            XCTAssertTrue(["a", "b", "c"].contains(label))
            XCTAssertEqual(labels, [label])
            XCTAssertEqual(scores.values.reduce(0, +), 1, accuracy: 1e-5)
            XCTAssertEqual(scores.max { $0.value < $1.value }?.key, label)
        }
        guard case let .classification(metrics, labels) = try predictor.evaluate(valid) else { return XCTFail("not classification") }
        XCTAssertEqual(labels, ["a", "b", "c"])
        XCTAssertEqual(metrics.confusion.joined().reduce(0, +), 10)

        // Written again over itself: replaced whole, nothing left beside it.
        try head.write(to: url)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".head") }, [])
    }

    /// The default head without validation rows: linear, fitted exactly (no dropout recorded), its L2 chosen
    /// on the held-out rows, then refitted on all of them; the states of all rows are encoded once.
    func testDefaultHeadChoosesL2OnHeldOutRowsThenRefitsOnAll() throws {
        let (train, _) = try classificationData()
        let cache = TokenStateCache(directory: dir.appendingPathComponent("states"))
        let head = try HeadBuilder.train(encoder: encoder, modelName: "tiny", train: train, valid: nil,
                                         plan: HeadTrainingPlan(task: .classification, pooling: .mean), cache: cache)
        let summary = try XCTUnwrap(head.config.training)
        XCTAssertEqual(summary.options.solver, .lbfgs)
        XCTAssertEqual([summary.trainRows, summary.validRows, summary.refitRows], [27, 3, 30])
        XCTAssertEqual(summary.l2, summary.epochs[summary.bestEpoch - 1].l2)
        XCTAssertEqual(head.config.architecture.dropout, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache.directory.path).count, 1, "one cache file: all rows")
        // With validation rows nothing is refitted.
        let (_, valid) = try classificationData()
        let given = try HeadBuilder.train(encoder: encoder, modelName: "tiny", train: train, valid: valid,
                                          plan: HeadTrainingPlan(task: .classification, pooling: .mean), cache: nil)
        XCTAssertNil(given.config.training?.refitRows)
        XCTAssertNotNil(given.config.training?.l2)
    }

    func testRegressionTargetsAreStandardizedAndRestored() throws {
        let rows = (0..<30).map { #"{"text": "\#(words($0))", "label": \#(1000 + 10 * Double($0 % 5))}"# }
        let data = try LabeledData(path: try file("values.jsonl", rows), task: .regression)
        var plan = HeadTrainingPlan(task: .regression, pooling: .mean)
        plan.options.epochs = 30
        plan.options.learningRate = 1e-2
        // Statistics come from the training rows (all 30 here: validation is given).
        let head = try HeadBuilder.train(encoder: encoder, modelName: "tiny", train: data, valid: data, plan: plan, cache: nil)
        XCTAssertEqual(head.config.targetMean?.first ?? 0, 1020, accuracy: 1e-9)
        XCTAssertEqual(head.config.targetStd?.first ?? 0, 200.0.squareRoot(), accuracy: 1e-9)
        let predictor = try HeadPredictor(head: head, encoder: encoder)
        let values = try predictor.predict(data.texts).map { p -> Double in
            if case let .values(v) = p { return v[0] }
            return .nan
        }
        // Outputs come back in the targets' units (around 1,020), not standardized ones (around 0).
        XCTAssertEqual(values.reduce(0, +) / Double(values.count), 1020, accuracy: 15)
        guard case let .regression(metrics) = try predictor.evaluate(data) else { return XCTFail("not regression") }
        XCTAssertEqual(metrics.count, 1)
        XCTAssertLessThan(metrics[0].rmse, 200.0.squareRoot() * 1.5)
    }

    func testAnotherBaseModelIsRefused() throws {
        let head = try oneEpochHead(pooling: .mean)
        // The same architecture with one config value changed is another model.
        let other = dir.appendingPathComponent("other")
        try FileManager.default.copyItem(at: encoder.location, to: other)
        let config = other.appendingPathComponent("config.json")
        try String(contentsOf: config, encoding: .utf8).replacingOccurrences(of: "\"rms_norm_eps\": 1e-06", with: "\"rms_norm_eps\": 2e-06")
            .write(to: config, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try HeadPredictor(head: head, encoder: try TextEncoder(directory: other))) { error in
            XCTAssertTrue("\(error)".contains("this head was trained on 'tiny'"), "\(error)")
        }
    }

    func testBrokenHeadDirectoriesAreClearErrors() throws {
        let head = try oneEpochHead(pooling: .attention)
        let url = dir.appendingPathComponent("broken")
        XCTAssertThrowsError(try HeadDirectory.read(url)) { XCTAssertTrue("\($0)".contains("not a head directory")) }
        try head.write(to: url)
        var wrong = head
        wrong.config.architecture.hiddenSize = 5  // the weights on disk have no hidden layer
        try JSONEncoder().encode(wrong.config).write(to: url.appendingPathComponent("head.json"))
        XCTAssertThrowsError(try HeadDirectory.read(url)) { XCTAssertTrue("\($0)".contains("missing tensor hidden.weight"), "\($0)") }
        try Data("{".utf8).write(to: url.appendingPathComponent("head.json"))
        XCTAssertThrowsError(try HeadDirectory.read(url)) { XCTAssertTrue("\($0)".contains("head.json"), "\($0)") }
        // Labels that do not match the outputs, or repeat a name (a predictor indexes them by output).
        let labels = try XCTUnwrap(head.config.labels)
        for (changed, words) in [(Array(labels.dropLast()), "entries for"), (Array(repeating: labels[0], count: labels.count), "repeat")] {
            var bad = head
            bad.config.labels = changed
            try JSONEncoder().encode(bad.config).write(to: url.appendingPathComponent("head.json"))
            XCTAssertThrowsError(try HeadDirectory.read(url)) { XCTAssertTrue("\($0)".contains(words), "\($0)") }
        }
    }

    /// A writer killed between moving the old head aside and renaming the new one in (file systems without
    /// RENAME_EXCHANGE): the reader puts the old head back instead of finding none.
    func testAHeadMovedAsideByAKilledWriterIsReadBack() throws {
        let head = try oneEpochHead(pooling: .mean)
        let url = dir.appendingPathComponent("head")
        try head.write(to: url)
        let exited = Process()
        exited.executableURL = URL(fileURLWithPath: "/bin/true")
        try exited.run()
        exited.waitUntilExit()
        try FileManager.default.moveItem(at: url, to: dir.appendingPathComponent(".head.\(exited.processIdentifier).5eed.old"))
        XCTAssertEqual(try HeadDirectory.read(url).network, head.network)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix(".head") }, [])
    }

    func testTokenStatesAreCachedOnDisk() throws {
        let cache = TokenStateCache(directory: dir.appendingPathComponent("states"))
        let request = TokenStateCache.Request(texts: ["hello there", "the cat"], prompt: "q: ", attention: .bidirectional,
                                              modelDigest: try ModelFingerprint.digest(of: encoder.source))
        let first = try cache.states(request, encoder: encoder).states
        XCTAssertEqual(first, try TokenStateCache.compute(request, encoder: encoder))
        let files = try FileManager.default.contentsOfDirectory(at: cache.directory, includingPropertiesForKeys: nil)
        XCTAssertEqual(files.count, 1)
        // Change the first float on disk: a second call must read it from there rather than re-encode.
        var bytes = try Data(contentsOf: files[0])
        let valuesStart = bytes.count - first.values.count * 4
        withUnsafeBytes(of: Float(12345).bitPattern.littleEndian) { bytes.replaceSubrange(valuesStart..<(valuesStart + 4), with: $0) }
        try bytes.write(to: files[0])
        XCTAssertEqual(try cache.states(request, encoder: encoder).states.values[0], 12345)
        // A truncated file is recomputed and rewritten; another prompt is another entry.
        try bytes.prefix(bytes.count - 8).write(to: files[0])
        XCTAssertEqual(try cache.states(request, encoder: encoder).states, first)
        var other = request
        other.prompt = nil
        _ = try cache.states(other, encoder: encoder)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cache.directory.path).count, 2)
    }
}
