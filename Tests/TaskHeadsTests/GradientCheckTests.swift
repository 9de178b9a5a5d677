import GemmaEncoder
import EncoderKernels
import Foundation
import TaskHeads
import XCTest

/// Every trainable operation's analytic gradient against central differences of the loss: attention pooling
/// (query, key and value projections), the MLP, the output layer, dropout masks (the same seed gives the same
/// mask in every evaluation) and each loss.
final class GradientCheckTests: XCTestCase {
    /// Five texts of 1–6 tokens, dimension 8, values in [-1, 1).
    func states(seed: UInt64 = 7) -> TokenStateSet {
        var rng = SeededGenerator(seed: seed)
        var set = TokenStateSet(dimension: 8)
        for tokens in [3, 1, 6, 4, 2, 5] { set.append((0..<(tokens * 8)).map { _ in 2 * rng.unit() - 1 }) }
        return set
    }

    func loss(_ network: HeadNetwork, _ states: TokenStateSet, _ targets: Targets, _ items: [Int], dropoutSeed: UInt64?) -> Double {
        var rng = dropoutSeed.map { SeededGenerator(seed: $0) }
        let logits = network.forward(states, items: items, rng: &rng).logits
        return Loss.evaluate(logits, outputs: network.architecture.outputs, targets: targets, items: items).loss
    }

    func check(_ architecture: HeadArchitecture, _ targets: Targets, items: [Int], dropoutSeed: UInt64?,
               file: StaticString = #filePath, line: UInt = #line) throws {
        let states = states()
        var network = try HeadNetwork(architecture: architecture, seed: 3)
        // Move attention pooling away from its mean-pooling start so its softmax has gradients to check.
        var rng = SeededGenerator(seed: 11)
        for i in network.parameters.indices { network.parameters[i] += 0.3 * (2 * rng.unit() - 1) }

        var dropout = dropoutSeed.map { SeededGenerator(seed: $0) }
        let act = network.forward(states, items: items, rng: &dropout)
        let grad = Loss.evaluate(act.logits, outputs: architecture.outputs, targets: targets, items: items).grad
        let analytic = network.backward(states, items: items, activations: act, gradLogits: grad)

        let h: Float = 1e-2
        var checked = 0
        for entry in network.layout.entries {
            let stride = max(1, entry.range.count / 7)
            for p in Swift.stride(from: entry.range.lowerBound, to: entry.range.upperBound, by: stride) {
                var plus = network, minus = network
                plus.parameters[p] += h
                minus.parameters[p] -= h
                let numeric = (loss(plus, states, targets, items, dropoutSeed: dropoutSeed)
                               - loss(minus, states, targets, items, dropoutSeed: dropoutSeed)) / Double(2 * h)
                let a = Double(analytic[p])
                XCTAssertEqual(a, numeric, accuracy: 1e-3 + 2e-2 * abs(a),
                               "\(architecture.pooling) \(entry.name)[\(p - entry.range.lowerBound)]", file: file, line: line)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 10, file: file, line: line)
    }

    func testEveryPoolingWithLinearAndMLPHeadsUnderCrossEntropy() throws {
        let targets = Targets.classes([0, 2, 1, 2, 0, 1], weights: [1, 2, 0.5])
        for pooling in Pooling.allCases {
            for hidden in [nil, 6] as [Int?] {
                let architecture = HeadArchitecture(inputDimension: 8, outputs: 3, pooling: pooling, attentionHeads: 2,
                                                    hiddenSize: hidden, dropout: 0, hiddenDropout: 0)
                try check(architecture, targets, items: [0, 1, 2, 3, 4, 5], dropoutSeed: nil)
            }
        }
    }

    func testDropoutMasksAreHandledInTheBackwardPass() throws {
        let targets = Targets.classes([0, 2, 1, 2, 0, 1], weights: [1, 1, 1])
        for pooling in [Pooling.attention, .mean] {
            let architecture = HeadArchitecture(inputDimension: 8, outputs: 3, pooling: pooling, attentionHeads: 4,
                                                hiddenSize: 5, dropout: 0.3, hiddenDropout: 0.4)
            try check(architecture, targets, items: [5, 3, 1, 0], dropoutSeed: 99)
        }
        // And dropout really is on in training and off without a generator.
        let network = try HeadNetwork(architecture: HeadArchitecture(inputDimension: 8, outputs: 3, pooling: .mean,
                                                                     hiddenSize: 5, dropout: 0.5), seed: 1)
        var on: SeededGenerator? = SeededGenerator(seed: 5), off: SeededGenerator? = nil
        let trained = network.forward(states(), items: [0, 1], rng: &on), inference = network.forward(states(), items: [0, 1], rng: &off)
        XCTAssertNotEqual(trained.logits, inference.logits)
        // Equal up to rounding: the two calls are GEMMs of different row counts, which BLAS kernels may sum in
        // different orders (OpenBLAS's generic Prescott kernels differ in the last bit).
        let predicted = network.predict(states()).prefix(6).map { $0 }
        XCTAssertEqual(inference.logits.count, predicted.count)
        for (x, y) in zip(inference.logits, predicted) { XCTAssertEqual(x, y, accuracy: 1e-6 * max(1, abs(y))) }
    }

    func testMultiLabelRegressionAndListwiseLosses() throws {
        let multi = Targets.multiLabel([1, 0, 1, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 0, 0, 0, 1, 1])
        try check(HeadArchitecture(inputDimension: 8, outputs: 3, pooling: .attention, attentionHeads: 2, hiddenSize: 4,
                                   dropout: 0, hiddenDropout: 0), multi, items: [0, 1, 2, 3, 4, 5], dropoutSeed: nil)
        let values = Targets.values([0.5, -1, 2, 0.1, -0.3, 1.2, 0, 0.7, -2, 1, 0.2, -0.6])
        try check(HeadArchitecture(inputDimension: 8, outputs: 2, pooling: .max, hiddenSize: 4, dropout: 0, hiddenDropout: 0),
                  values, items: [0, 1, 2, 3, 4, 5], dropoutSeed: nil)
        // Rerank: groups of 3 rows, the first of each the positive; one score per row; every ranking loss.
        for targets in [Targets.groups(size: 3), .pairs(size: 3), .binary(size: 3), .listnet(size: 3), .margins(size: 3, teacher: [1, 0.5, 1.5, -1, 2, 0])] {
            try check(HeadArchitecture(inputDimension: 8, outputs: 1, pooling: .attention, attentionHeads: 2, hiddenSize: 4,
                                       dropout: 0, hiddenDropout: 0), targets, items: [0, 1, 2, 3, 4, 5], dropoutSeed: nil)
        }
    }

    /// LambdaRank's weights are constant between rank swaps: its gradient against central differences on
    /// logits whose gaps a step cannot close (a step in the head's parameters could reorder near-ties).
    func testLambdaGradient() {
        let logits: [Float] = [2, 0, 3, -1, 1.5, 0.5], items = Array(0..<6)
        let (_, grad) = Loss.evaluate(logits, outputs: 1, targets: .lambda(size: 3), items: items)
        for i in items {
            var plus = logits, minus = logits
            plus[i] += 1e-2
            minus[i] -= 1e-2
            let numeric = (Loss.evaluate(plus, outputs: 1, targets: .lambda(size: 3), items: items).loss
                           - Loss.evaluate(minus, outputs: 1, targets: .lambda(size: 3), items: items).loss) / 2e-2
            XCTAssertEqual(Double(grad[i]), numeric, accuracy: 1e-4, "logit \(i)")
        }
        XCTAssertNotEqual(grad[1], 0)
    }

    /// The losses' values against hand-computed ones.
    func testLossValues() {
        // Cross-entropy of logits (0, ln 3) with label 1: −log(3/4).
        let ce = Loss.evaluate([0, Float(log(3.0))], outputs: 2, targets: .classes([1], weights: [1, 1]), items: [0])
        XCTAssertEqual(ce.loss, -log(0.75), accuracy: 1e-6)
        assertClose(ce.grad.map(Double.init), [0.25, -0.25], accuracy: 1e-6)
        // Weighted: PyTorch divides by the summed weights of the batch's labels.
        let weighted = Loss.evaluate([0, 0, 0, 0], outputs: 2, targets: .classes([0, 1], weights: [3, 1]), items: [0, 1])
        XCTAssertEqual(weighted.loss, log(2.0), accuracy: 1e-6)
        // Binary cross-entropy with logits of 0: log 2 per label.
        XCTAssertEqual(Loss.evaluate([0, 0], outputs: 2, targets: .multiLabel([1, 0]), items: [0]).loss, log(2.0), accuracy: 1e-6)
        // MSE: ((1 − 0)² + (−1 − 1)²) / 2.
        XCTAssertEqual(Loss.evaluate([1, -1], outputs: 1, targets: .values([0, 1]), items: [0, 1]).loss, 2.5, accuracy: 1e-6)
        // Listwise: scores (2, 0, 0), positive first: −log(e² / (e² + 2)).
        XCTAssertEqual(Loss.evaluate([2, 0, 0], outputs: 1, targets: .groups(size: 3), items: [0, 1, 2]).loss,
                       -log(exp(2.0) / (exp(2.0) + 2)), accuracy: 1e-6)
        // Pairwise: mean over negatives of log(1 + exp(s_neg − s_pos)): (log(1 + e⁻²) + log(1 + e¹)) / 2.
        XCTAssertEqual(Loss.evaluate([2, 0, 3], outputs: 1, targets: .pairs(size: 3), items: [0, 1, 2]).loss,
                       (log(1 + exp(-2.0)) + log(1 + exp(1.0))) / 2 / log(2.0), accuracy: 1e-6)
        // Binary cross-entropy per pair, the positive 1: mean of softplus(−2), softplus(0), softplus(3).
        func softplus(_ x: Double) -> Double { log(1 + exp(x)) }
        XCTAssertEqual(Loss.evaluate([2, 0, 3], outputs: 1, targets: .binary(size: 3), items: [0, 1, 2]).loss,
                       (softplus(-2) + softplus(0) + softplus(3)) / 3, accuracy: 1e-6)
        // Margin-MSE: teacher (1, 0.5, 1.5): ((2 − 0) − 0.5)² and ((2 − 3) − (−0.5))², averaged.
        XCTAssertEqual(Loss.evaluate([2, 0, 3], outputs: 1, targets: .margins(size: 3, teacher: [1, 0.5, 1.5]), items: [0, 1, 2]).loss,
                       (1.5 * 1.5 + 0.25) / 2, accuracy: 1e-6)
        // LambdaLoss (NDCG-Loss2++, μ = 10): the positive ranks 2nd, between the score 3 (1st) and 0 (3rd); both
        // pairs are one place apart: 10 · (1 − 1/log2 3) plus |1/D_2 − 1/D_3| resp. |1/D_2 − 1/D_1|; mean over
        // pairs, in bits.
        let near = 10 * (1 - 1 / log2(3.0))
        let w1 = near + (1 / log2(3.0) - 0.5), w2 = near + (1 - 1 / log2(3.0))
        XCTAssertEqual(Loss.evaluate([2, 0, 3], outputs: 1, targets: .lambda(size: 3), items: [0, 1, 2]).loss,
                       (w1 * softplus(-2) + w2 * softplus(1)) / 2 / log(2.0), accuracy: 1e-6)
    }
}

/// Element-wise equality of two arrays within `accuracy`.
func assertClose(_ a: [Double], _ b: [Double], accuracy: Double, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: accuracy, file: file, line: line) }
}
