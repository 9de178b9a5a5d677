import Foundation
import GemmaEncoder
import GemmaTraining
import ModelFormats
import RetrieverTraining
import TestSupport
import XCTest

/// Our contrastive losses, with the pipeline after the encoder (two Dense layers and Normalize), against
/// sentence-transformers 6.2's own loss classes (`scripts/make-contrastive-fixtures`, Tests/Fixtures/contrastive):
/// the loss within 1e-5 relative, every gradient within 1e-4 of its tensor's largest entry + 1e-7 (f32 here,
/// f64 there).
final class ContrastiveFixtureTests: XCTestCase {
    struct Fixture {
        let file: SafetensorsFile
        func values(_ name: String) throws -> [Float] {
            guard let t = file.tensors[name] else { throw XCTSkip("fixture has no \(name)") }
            return t.floats().array
        }
    }

    func fixture(_ name: String) throws -> Fixture {
        Fixture(file: try SafetensorsFile(url: fixturesDirectory.appendingPathComponent("contrastive/\(name).safetensors")))
    }

    /// Runs the fixture's rows (each a one-token "sequence" whose mean pooling is itself) through the
    /// pipeline and `loss`, and compares loss and gradients.
    func compare(_ name: String, loss: ContrastiveLoss, inputs: [String], layout: ContrastiveLoss.Layout) throws {
        let f = try fixture(name)
        let d1 = DenseLayer(weight: FloatBuffer(try f.values("dense1.weight")), bias: nil, inputDimension: 8, outputDimension: 12,
                            activation: .identity)
        let d2 = DenseLayer(weight: FloatBuffer(try f.values("dense2.weight")), bias: nil, inputDimension: 12, outputDimension: 6,
                            activation: .identity)
        let pipeline = try TrainablePipeline(EmbeddingPipeline(pooling: PoolingConfig(modes: [.mean], dimension: 8), dense: [d1, d2],
                                                               normalize: true))
        pipeline.setTrained(true)
        let rows = try inputs.map { try f.values($0) }
        let hidden = rows.flatMap { $0 }
        let count = hidden.count / 8
        let offsets = Array(0...count)
        let tape = hidden.withUnsafeBufferPointer {
            pipeline.forward(hidden: $0.baseAddress!, offsets: offsets, promptTokens: Array(repeating: 0, count: count))
        }
        let (value, gradient) = loss.evaluate(tape.output, dimension: 6, layout: layout)
        let reference = try f.values("loss")[0]
        XCTAssertEqual(value, Double(reference), accuracy: 1e-5 * Double(reference), name)
        var gradHidden = [Float](repeating: 0, count: hidden.count)
        gradHidden.withUnsafeMutableBufferPointer { pipeline.backward(tape, gradOutput: gradient, gradHidden: $0.baseAddress!) }
        func within(_ ours: ArraySlice<Float>, _ ref: [Float], _ label: String) {
            let scale = ref.map { abs($0) }.max()!
            XCTAssertGreaterThan(scale, 0, label)
            XCTAssertLessThanOrEqual(maxAbsDiff(ours, ref), 1e-4 * scale + 1e-7, "\(name) \(label)")
        }
        var row = 0
        for (input, values) in zip(inputs, rows) {
            within(gradHidden[(row * 8)..<(row * 8 + values.count)], try f.values("grad.\(input)"), input)
            row += values.count / 8
        }
        within(pipeline.dense[0].weight.gradient!.array[...], try f.values("grad.dense1.weight"), "dense1")
        within(pipeline.dense[1].weight.gradient!.array[...], try f.values("grad.dense2.weight"), "dense2")
    }

    let ranking = ContrastiveLoss.Layout.ranking(anchors: 4, negatives: 8)

    func testMultipleNegativesRanking() throws {
        try compare("mnrl", loss: ContrastiveLoss(), inputs: ["anchor", "positive", "negative"], layout: ranking)
    }

    func testSymmetricMultipleNegativesRanking() throws {
        try compare("mnrl-symmetric", loss: ContrastiveLoss(symmetric: true), inputs: ["anchor", "positive", "negative"], layout: ranking)
    }

    func testMatryoshka() throws {
        try compare("matryoshka", loss: ContrastiveLoss(matryoshkaDimensions: [6, 4, 2]), inputs: ["anchor", "positive", "negative"],
                    layout: ranking)
    }

    /// sentence-transformers' cached loss is the uncached one (its fixture equals mnrl's); ours is tested
    /// against our uncached gradients in EmbeddingFineTunerTests.
    func testCachedMultipleNegativesRanking() throws {
        try compare("cached-mnrl", loss: ContrastiveLoss(), inputs: ["anchor", "positive", "negative"], layout: ranking)
    }

    func testCoSENT() throws {
        let scores = try fixture("cosent").values("score").map(Double.init)
        try compare("cosent", loss: ContrastiveLoss(kind: .cosent), inputs: ["sentence1", "sentence2"], layout: .scored(scores: scores))
    }
}
