import GemmaEncoder
import EncoderKernels
import Foundation
import TaskHeads
import XCTest

/// Training on synthetic token states: it learns, it is repeatable, early stopping keeps the best epoch.
final class TrainerTests: XCTestCase {
    /// Three classes told apart by which coordinate the tokens lean on, texts of 2–5 tokens, dimension 12.
    func problem(_ n: Int, seed: UInt64) -> (TokenStateSet, [Int]) {
        var rng = SeededGenerator(seed: seed)
        var set = TokenStateSet(dimension: 12)
        var labels: [Int] = []
        for i in 0..<n {
            let label = i % 3, tokens = 2 + i % 4
            set.append((0..<(tokens * 12)).map { j in (2 * rng.unit() - 1) + (j % 12 == label * 4 ? 1.5 : 0) })
            labels.append(label)
        }
        return (set, labels)
    }

    func testEveryPoolingLearnsASeparableProblem() throws {
        let (train, trainLabels) = problem(240, seed: 1), (valid, validLabels) = problem(60, seed: 2)
        var options = TrainingOptions()
        options.epochs = 15
        options.learningRate = 5e-3
        for pooling in Pooling.allCases {
            let result = try HeadTrainer.train(
                architecture: HeadArchitecture(inputDimension: 12, outputs: 3, pooling: pooling, attentionHeads: 3, hiddenSize: 16),
                train: train, trainTargets: .classes(trainLabels, weights: [1, 1, 1]),
                valid: valid, validTargets: .classes(validLabels, weights: [1, 1, 1]), options: options)
            let accuracy = result.epochs[result.bestEpoch - 1].validAccuracy ?? 0
            XCTAssertGreaterThanOrEqual(accuracy, 0.9, "\(pooling)")
            XCTAssertLessThan(result.epochs.last!.trainLoss, result.epochs.first!.trainLoss, "\(pooling)")
        }
    }

    func testSameSeedSameHeadOtherSeedOtherHead() throws {
        let (train, labels) = problem(60, seed: 3)
        var options = TrainingOptions()
        options.epochs = 3
        let architecture = HeadArchitecture(inputDimension: 12, outputs: 3, pooling: .attention, attentionHeads: 2, hiddenSize: 8)
        func run(_ seed: UInt64) throws -> [Float] {
            options.seed = seed
            return try HeadTrainer.train(architecture: architecture, train: train, trainTargets: .classes(labels, weights: [1, 1, 1]),
                                         valid: train, validTargets: .classes(labels, weights: [1, 1, 1]), options: options).network.parameters
        }
        XCTAssertEqual(try run(7), try run(7))
        XCTAssertNotEqual(try run(7), try run(8))
    }

    func testEarlyStoppingKeepsTheBestEpoch() throws {
        // Labels unrelated to the states: validation stops improving at once, so training ends after
        // `patience` epochs without improvement and keeps the best epoch's parameters.
        let (train, _) = problem(90, seed: 4)
        let labels = (0..<90).map { ($0 * 7919) % 3 }
        var options = TrainingOptions()
        options.epochs = 30
        options.patience = 2
        options.learningRate = 1e-2
        let result = try HeadTrainer.train(
            architecture: HeadArchitecture(inputDimension: 12, outputs: 3, pooling: .mean, hiddenSize: 32),
            train: train, trainTargets: .classes(labels, weights: [1, 1, 1]),
            valid: train.subset(0..<30), validTargets: .classes(Array(labels.prefix(30)), weights: [1, 1, 1]), options: options)
        XCTAssertLessThan(result.epochs.count, 30)
        XCTAssertEqual(result.epochs.count - result.bestEpoch, 2)
        let kept = HeadTrainer.evaluate(result.network, train.subset(0..<30), .classes(Array(labels.prefix(30)), weights: [1, 1, 1]))
        XCTAssertEqual(kept.loss, result.epochs[result.bestEpoch - 1].validLoss, accuracy: 1e-9)
    }

    /// Offsets (a fixed score the head is trained on top of) enter the loss as an added logit: the evaluation
    /// equals the loss of the shifted logits worked out here, and a head trained on top of offsets that
    /// already rank every positive first is left with little to learn (lower loss from the first epoch).
    func testOffsetsAreAddedToTheLogits() throws {
        let (states, _) = problem(48, seed: 5)  // 16 groups of 3, the positive first
        let targets = Targets.groups(size: 3)
        let helpful = (0..<48).map { Float($0 % 3 == 0 ? 4 : 0) }
        var options = TrainingOptions()
        options.epochs = 2
        let architecture = HeadArchitecture(inputDimension: 12, outputs: 1, pooling: .mean, hiddenSize: 8)
        let plain = try HeadTrainer.train(architecture: architecture, train: states, trainTargets: targets,
                                          valid: states, validTargets: targets, options: options)
        let shifted = try HeadTrainer.train(architecture: architecture, train: states, trainTargets: targets,
                                            valid: states, validTargets: targets, options: options,
                                            trainOffsets: helpful, validOffsets: helpful)
        XCTAssertLessThan(shifted.epochs[0].trainLoss, plain.epochs[0].trainLoss / 5)
        XCTAssertEqual(shifted.epochs.last!.validAccuracy, 1)

        let logits = shifted.network.predict(states)
        var expected = 0.0
        for g in 0..<16 {
            let z = (0..<3).map { Double(logits[3 * g + $0] + helpful[3 * g + $0]) }
            expected += (log(z.map(exp).reduce(0, +)) - z[0]) / 16
        }
        XCTAssertEqual(HeadTrainer.evaluate(shifted.network, states, targets, offsets: helpful).loss, expected, accuracy: 1e-5)
    }

    func testLearningRateScheduleWarmsUpThenDecays() {
        let schedule = LearningRateSchedule(peak: 1, warmup: 4, total: 12)
        XCTAssertEqual(schedule.rate(at: 0), 0.25)
        XCTAssertEqual(schedule.rate(at: 3), 1)
        XCTAssertEqual(schedule.rate(at: 4), 1)
        XCTAssertEqual(schedule.rate(at: 8), 0.5)
        XCTAssertEqual(schedule.rate(at: 12), 0)
    }

    func testBadInputsAreErrors() {
        let (train, labels) = problem(6, seed: 5)
        var options = TrainingOptions()
        options.epochs = 0
        XCTAssertThrowsError(try HeadTrainer.train(
            architecture: HeadArchitecture(inputDimension: 12, outputs: 3, pooling: .mean), train: train,
            trainTargets: .classes(labels, weights: [1, 1, 1]), valid: train, validTargets: .classes(labels, weights: [1, 1, 1]),
            options: options))
        XCTAssertThrowsError(try HeadNetwork(architecture: HeadArchitecture(inputDimension: 10, outputs: 2, pooling: .attention,
                                                                            attentionHeads: 4), seed: 0)) { error in
            XCTAssertEqual("\(error)", "invalid head: attention pooling: 4 heads do not divide the dimension 10")
        }
        XCTAssertThrowsError(try TokenStateSet(dimension: 4, values: [1, 2, 3], offsets: [0, 1]))
    }
}

extension TokenStateSet {
    func subset(_ range: Range<Int>) -> TokenStateSet { subset(Array(range)) }
}
