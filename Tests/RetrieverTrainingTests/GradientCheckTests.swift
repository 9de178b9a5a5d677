import EncoderKernels
import Foundation
import GemmaEncoder
import GemmaTraining
import ModelFormats
import RetrieverTraining
import TestSupport
import XCTest

/// Finite differences for the contrastive losses and the trainable pipeline on their own (the losses' parity
/// with sentence-transformers is ContrastiveFixtureTests).
final class GradientCheckTests: XCTestCase {
    func random(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var g = SeededGenerator(seed: seed)
        return (0..<count).map { _ in g.normal() * scale }
    }

    /// Central differences of `f` at `x` against `gradient`, on a few coordinates: relative error ≤ 2e-3
    /// (a step of 1e-3 on f32 inputs; a wrong term is off by O(1)).
    func check(_ x: [Float], gradient: [Float], step: Float = 1e-3, coordinates: [Int], _ f: ([Float]) -> Double,
               file: StaticString = #filePath, line: UInt = #line) {
        let scale = gradient.map { abs($0) }.max()!
        XCTAssertGreaterThan(scale, 0, file: file, line: line)
        for i in coordinates {
            var plus = x, minus = x
            plus[i] += step
            minus[i] -= step
            let numeric = (f(plus) - f(minus)) / Double(plus[i] - minus[i])
            XCTAssertEqual(numeric, Double(gradient[i]), accuracy: 2e-3 * Double(scale) + 1e-6,
                           "coordinate \(i)", file: file, line: line)
        }
    }

    func testLossGradientsMatchFiniteDifferences() {
        let d = 6
        let cases: [(String, ContrastiveLoss, ContrastiveLoss.Layout)] = [
            ("mnrl", ContrastiveLoss(), .ranking(anchors: 3, negatives: 4)),
            ("mnrl low scale", ContrastiveLoss(scale: 3), .ranking(anchors: 3, negatives: 0)),
            ("symmetric", ContrastiveLoss(symmetric: true), .ranking(anchors: 3, negatives: 2)),
            ("matryoshka", ContrastiveLoss(matryoshkaDimensions: [6, 4, 2]), .ranking(anchors: 3, negatives: 2)),
            ("cosent", ContrastiveLoss(kind: .cosent), .scored(scores: [0.1, 0.9, 0.4, 0.7])),
            ("cosent matryoshka", ContrastiveLoss(kind: .cosent, scale: 5, matryoshkaDimensions: [6, 3]), .scored(scores: [1, 0, 0.5])),
        ]
        for (name, loss, layout) in cases {
            let x = random(layout.rows * d, seed: UInt64(name.count))
            let (value, gradient) = loss.evaluate(x, dimension: d, layout: layout)
            XCTAssertTrue(value.isFinite && value > 0, name)
            check(x, gradient: gradient, coordinates: Array(stride(from: 0, to: x.count, by: 5))) {
                loss.evaluate($0, dimension: d, layout: layout).loss
            }
        }
    }

    func testLossIsSmallWhenPairsAreAlignedAndLargeWhenSwapped() {
        // Anchors equal to their positives, far from each other: the right answer is clear.
        let a: [Float] = [1, 0, 0, 0, 1, 0, 0, 0, 1]
        let good = ContrastiveLoss().evaluate(a + a, dimension: 3, layout: .ranking(anchors: 3, negatives: 0)).loss
        let swapped: [Float] = [0, 1, 0, 1, 0, 0, 0, 0, 1]
        let bad = ContrastiveLoss().evaluate(a + swapped, dimension: 3, layout: .ranking(anchors: 3, negatives: 0)).loss
        XCTAssertLessThan(good, 1e-6)
        XCTAssertGreaterThan(bad, 10)
    }

    /// A pipeline with every piece that has a backward: mean pooling without the prompt and max pooling
    /// concatenated, two Dense layers (tanh with bias, identity without), normalization.
    func pipeline() -> TrainablePipeline {
        let c = 5
        let d1 = DenseLayer(weight: FloatBuffer(random(7 * 2 * c, seed: 3, scale: 0.4)), bias: FloatBuffer(random(7, seed: 4)),
                            inputDimension: 2 * c, outputDimension: 7, activation: .tanh)
        let d2 = DenseLayer(weight: FloatBuffer(random(4 * 7, seed: 5, scale: 0.4)), bias: nil, inputDimension: 7,
                            outputDimension: 4, activation: .identity)
        let source = EmbeddingPipeline(pooling: PoolingConfig(modes: [.mean, .max], dimension: c, includePrompt: false),
                                       dense: [d1, d2], normalize: true)
        let p = try! TrainablePipeline(source)
        p.setTrained(true)
        return p
    }

    func testPipelineBackwardMatchesFiniteDifferences() {
        let p = pipeline(), c = 5
        let offsets = [0, 4, 5, 11], prompts = [2, 0, 3]
        let hidden = random(offsets.last! * c, seed: 9)
        let weights = random(3 * 4, seed: 10)
        // L = Σ w · output: dL/d(output) = w.
        func loss(_ h: [Float]) -> Double {
            let out = h.withUnsafeBufferPointer { p.forward(hidden: $0.baseAddress!, offsets: offsets, promptTokens: prompts).output }
            return zip(out, weights).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        }
        let tape = hidden.withUnsafeBufferPointer { p.forward(hidden: $0.baseAddress!, offsets: offsets, promptTokens: prompts) }
        var gradHidden = [Float](repeating: 0, count: hidden.count)
        gradHidden.withUnsafeMutableBufferPointer { p.backward(tape, gradOutput: weights, gradHidden: $0.baseAddress!) }
        check(hidden, gradient: gradHidden, coordinates: Array(0..<hidden.count), loss)
        // Prompt tokens take no part: their gradient is exactly zero for mean and only max can reach them.
        let weightsGradient = p.dense[0].weight.gradient!.array, biasGradient = p.dense[0].bias!.gradient!.array
        let w = p.dense[0].weight.value
        check(w.array, gradient: weightsGradient, coordinates: Array(stride(from: 0, to: w.count, by: 3))) { values in
            let saved = w.array
            values.withUnsafeBufferPointer { w.pointer.update(from: $0.baseAddress!, count: w.count) }
            defer { saved.withUnsafeBufferPointer { w.pointer.update(from: $0.baseAddress!, count: w.count) } }
            return loss(hidden)
        }
        let b = p.dense[0].bias!.value
        check(b.array, gradient: biasGradient, coordinates: Array(0..<b.count)) { values in
            let saved = b.array
            values.withUnsafeBufferPointer { b.pointer.update(from: $0.baseAddress!, count: b.count) }
            defer { saved.withUnsafeBufferPointer { b.pointer.update(from: $0.baseAddress!, count: b.count) } }
            return loss(hidden)
        }
    }

    func testPipelineForwardIsInferencePipeline() throws {
        let p = pipeline(), c = 5
        let offsets = [0, 4, 9], prompts = [1, 2]
        let hidden = random(offsets.last! * c, seed: 12)
        let ours = hidden.withUnsafeBufferPointer { p.forward(hidden: $0.baseAddress!, offsets: offsets, promptTokens: prompts).output }
        let inference = p.embeddingPipeline
        for r in 0..<2 {
            var v = inference.pooling.pool(hidden[(offsets[r] * c)..<(offsets[r + 1] * c)], length: offsets[r + 1] - offsets[r],
                                           firstToken: prompts[r])
            for layer in inference.dense { v = layer.apply(v, rows: 1) }
            v.withUnsafeMutableBufferPointer { l2NormalizeInPlace($0.baseAddress!, count: $0.count) }
            XCTAssertLessThan(maxAbsDiff(v, ours[(r * 4)..<((r + 1) * 4)]), 1e-6)
        }
    }
}
