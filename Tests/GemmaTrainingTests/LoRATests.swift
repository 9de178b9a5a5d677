import EncoderKernels
import Foundation
import GemmaModel
import GemmaTraining
import TestSupport
import XCTest

final class LoRATests: XCTestCase {
    /// L = Σ w ⊙ hidden, a scalar whose gradient is w: enough to exercise every parameter.
    func gradients(_ model: TrainableGemma, batch: [[Int32]], weights w: [Float]) throws -> TrainableGemma.Pass {
        let pass = try model.forward(batch, mode: .bidirectional)
        model.backward(pass, gradHidden: w)
        return pass
    }

    /// At initialization (B = 0) the adapted model is the base model, dL/dA = 0, and dL/dB = s · dL/dW_block · Aᵀ:
    /// LoRA's gradient follows from the full fine-tune's, checked on every target of every layer.
    func testInitialGradientsFollowFromFullGradients() throws {
        for family in ["gemma", "gemma2", "gemma3"] {
            let batch = try tinyBatch(family)
            let full = try trainableTiny(family, scope: .all, embeddings: false)
            var g = SeededGenerator(seed: 3)
            let w = (0..<(batch.joined().count * 64)).map { _ in g.normal() }
            let base = try gradients(full, batch: batch, weights: w)
            let lora = try trainableTiny(family, scope: .lora(rank: 4, alpha: 8, targets: LoRATarget.allCases), embeddings: false)
            let adapted = try gradients(lora, batch: batch, weights: w)
            XCTAssertEqual(adapted.hidden.array, base.hidden.array, "\(family): B = 0 leaves the model unchanged")
            XCTAssertEqual(lora.trainedParameters.count, 4 * 7 * 2, "\(family): only the adapters train")
            let fullGradients = Dictionary(uniqueKeysWithValues: full.trainedParameters.flatMap { $0.gradientTensors() }.map { ($0.name, $0.values) })
            for adapter in lora.adapters {
                XCTAssertTrue(adapter.a.gradient!.array.allSatisfy { $0 == 0 }, adapter.a.name)
                let module = adapter.b.name.replacingOccurrences(of: ".lora_B.weight", with: ".weight")
                let dW = try XCTUnwrap(fullGradients[module], module)
                let rows = adapter.b.shape[0], r = adapter.rank, cols = adapter.a.shape[1]
                var expected = [Float](repeating: 0, count: rows * r)
                gemmTransposedB(m: rows, n: r, k: cols, alpha: adapter.scaling, a: dW, lda: cols, w: adapter.a.value.pointer,
                                ldw: cols, c: &expected, ldc: r)
                let ours = adapter.b.gradient!.array
                let scale = expected.map(abs).max()!
                let worst = zip(ours, expected).map { abs($0 - $1) }.max()!
                XCTAssertGreaterThan(scale, 0, adapter.b.name)
                XCTAssertLessThanOrEqual(worst, 1e-4 * scale + 1e-7, "\(family) \(adapter.b.name)")
            }
        }
    }

    /// Merging folds the adapters in: the merged model computes what the adapted one did.
    func testMergedModelMatchesAdaptedModel() throws {
        let batch = try tinyBatch("gemma3")
        let model = try trainableTiny("gemma3", scope: .lora(rank: 2, alpha: 4, targets: LoRATarget.allCases), embeddings: false)
        var g = SeededGenerator(seed: 11)
        for adapter in model.adapters { for i in 0..<adapter.b.count { adapter.b.value.pointer[i] = 0.05 * g.normal() } }
        let adapted = try model.forward(batch, mode: .bidirectional).hidden.array
        let base = try trainableTiny("gemma3", scope: .none, embeddings: false)
        XCTAssertNotEqual(try base.forward(batch, mode: .bidirectional).hidden.array, adapted, "the adapters change the output")
        model.mergeAdapters()
        XCTAssertTrue(model.adapters.isEmpty)
        let merged = try model.forward(batch, mode: .bidirectional).hidden.array
        let worst = zip(adapted, merged).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(worst, 1e-5)
    }

    /// top:K trains the last K layers and the final norm; a cached prefix gives the same pass as the tokens.
    func testTopLayersTrainFromCachedPrefix() throws {
        let batch = try tinyBatch("gemma2")
        let model = try trainableTiny("gemma2", scope: .top(2), embeddings: false)
        XCTAssertEqual(Set(model.trainedParameters.map { $0.name.split(separator: ".").prefix(2).joined(separator: ".") }),
                       ["layers.2", "layers.3", "norm.weight"])
        let prefix = try model.frozenPrefix(batch, mode: .causal)
        let fromTokens = try model.forward(batch, mode: .causal).hidden.array
        let fromPrefix = try model.forward(batch, prefix: prefix, mode: .causal).hidden.array
        XCTAssertEqual(fromTokens, fromPrefix)
    }
}

/// The training forward (f32 master weights, GemmaTraining) and the inference forward (GemmaModel) are two
/// compositions of the same kernels: they must give the same states.
final class TrainingForwardTests: XCTestCase {
    func testTrainingForwardMatchesInferenceForward() throws {
        for family in ["gemma", "gemma2", "gemma3"] {
            let dir = fixturesDirectory.appendingPathComponent("tiny/\(family)")
            let inference = try XCTUnwrap(try ModelRegistry.standard.load(directory: dir) as? GemmaTransformer)
            let training = try trainableTiny(family, scope: .all, embeddings: false)
            let batch = try tinyBatch(family)
            for mode in AttentionMode.allCases {
                let a = try inference.forward(batch, mode: mode, threads: 2).values
                let b = try training.forward(batch, mode: mode, threads: 2).hidden.array
                let worst = zip(a, b).map { abs($0 - $1) }.max()!
                XCTAssertLessThanOrEqual(worst, 1e-5, "\(family) \(mode)")
            }
        }
    }
}
