import EncoderKernels
import Foundation
import GemmaModel
import GemmaTraining
import ModelFormats
import TestSupport
import XCTest

/// RankT5-style pair scores of the tiny T5Gemma checkpoints (the first decoder step's logit of token 5) and their
/// gradients against scripts/make-t5gemma-gradient-fixtures (transformers + PyTorch, checked there against float64
/// autograd and finite differences; Tests/Fixtures/gradients/t5gemma-README.md).
final class T5GemmaGradientTests: XCTestCase {
    struct Result {
        var scores: [Float]
        var loss: Double
        var gradients: [String: [Float]]
    }

    /// Our scores, loss and gradients for one fixture: every encoder and decoder parameter trained (the embedding
    /// tables frozen, as training keeps them: their gradient reaches us as the input embeddings').
    func ours(_ variant: String, loss: String, threads: Int = 1) throws -> Result {
        let dir = fixturesDirectory.appendingPathComponent("tiny/\(variant)")
        let config = try T5GemmaConfig.load(dir.appendingPathComponent("config.json"))
        let stack = try T5GemmaStackWeights(SafetensorsCheckpoint(url: dir), stack: .encoder)
        let encoder = try TrainableGemma(config: config.encoder, weights: stack)
        try encoder.prepare(.all)
        let decoder = try TrainableT5GemmaDecoder(directory: dir, token: 5)
        decoder.setTrained(true)
        let pass = try encoder.forward(try tinyBatch(variant), mode: .bidirectional, threads: threads)
        let scored = decoder.forward(states: pass.hidden, batch: pass.batch, threads: threads)
        let s = scored.scores.map(Double.init)
        let value: Double, gradScores: [Float]
        switch loss {
        case "listwise":
            // One group, the positive second: L = logsumexp(s) − s₁.
            let m = s.max()!, z = s.reduce(0) { $0 + exp($1 - m) }
            value = m + log(z) - s[1]
            gradScores = s.indices.map { Float(exp(s[$0] - m) / z - ($0 == 1 ? 1 : 0)) }
        default:
            let y: [Double] = [0, 1, 0, 1]
            value = s.indices.reduce(0) { $0 + max(s[$1], 0) - s[$1] * y[$1] + log(1 + exp(-abs(s[$1]))) } / 4
            gradScores = s.indices.map { Float((1 / (1 + exp(-s[$0])) - y[$0]) / 4) }
        }
        let gradStates = decoder.backward(scored, gradScores: gradScores)
        let gradInput = encoder.backward(pass, gradHidden: gradStates.pointer)
        var gradients: [String: [Float]] = ["input_embeddings": gradInput.array]
        for p in encoder.trainedParameters {
            for (name, values) in p.gradientTensors() { gradients["model.encoder." + T5GemmaStackWeights.checkpointName(name)] = values }
        }
        for p in decoder.trainedParameters { for (name, values) in p.gradientTensors() { gradients["model." + name] = values } }
        return Result(scores: scored.scores, loss: value, gradients: gradients)
    }

    /// The fine-tuning issue's tolerance, per tensor: max |ours − ref| ≤ 1e-4 · max |ref| + 1e-6 (the fixtures agree
    /// with float64 autograd to ≤ 3e-6 of max |ref|).
    func check(_ variant: String, loss: String) throws {
        let fixture = try GradientFixture(family: variant, name: loss)
        let result = try ours(variant, loss: loss)
        let label = "\(variant) \(loss)"
        for (a, b) in zip(result.scores, fixture["scores"]!) { XCTAssertEqual(a, b, accuracy: 1e-5, "\(label): score") }
        XCTAssertEqual(result.loss, Double(fixture["loss"]![0]), accuracy: 1e-5, "\(label): loss")
        var compared = 0, worstRatio: Float = 0
        for (key, tensor) in fixture.tensors where key.hasPrefix("grad.") && !key.contains("embed_tokens") {
            let name = String(key.dropFirst(5))
            guard let mine = result.gradients[name] else { XCTFail("\(label): no gradient for \(name)"); continue }
            XCTAssertEqual(mine.count, tensor.values.count, "\(label): \(name)")
            let scale = tensor.values.map(abs).max() ?? 0
            let worst = zip(mine, tensor.values).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-4 * scale + 1e-6, "\(label): \(name): max |ours − ref| \(worst), max |ref| \(scale)")
            if scale > 0 { worstRatio = max(worstRatio, worst / scale) }
            if scale == 0 { XCTAssertEqual(mine.map(abs).max(), 0, "\(label): \(name) must get exactly zero gradient") }
            compared += 1
        }
        XCTAssertEqual(compared, result.gradients.count, "\(label): gradient sets differ: ours \(result.gradients.keys.sorted())")
        print("\(label): \(compared) gradients, worst max |ours − ref| / max |ref| \(worstRatio)")
    }

    func testT5GemmaListwiseGradientsMatchPyTorch() throws { try check("t5gemma", loss: "listwise") }
    func testT5GemmaBCEGradientsMatchPyTorch() throws { try check("t5gemma", loss: "bce") }
    func testT5Gemma2ListwiseGradientsMatchPyTorch() throws { try check("t5gemma2", loss: "listwise") }
    func testT5Gemma2BCEGradientsMatchPyTorch() throws { try check("t5gemma2", loss: "bce") }

    /// t5gemma's decoder self-attention has one key at the first step: its Q and K get exactly zero gradient.
    func testSingleKeySelfAttentionGetsNoQueryKeyGradient() throws {
        let result = try ours("t5gemma", loss: "listwise")
        for l in 0..<2 {
            for part in ["q_proj", "k_proj"] {
                XCTAssertEqual(result.gradients["model.decoder.layers.\(l).self_attn.\(part).weight"]?.contains { $0 != 0 }, false)
            }
            XCTAssertEqual(result.gradients["model.decoder.layers.\(l).self_attn.v_proj.weight"]?.contains { $0 != 0 }, true)
        }
    }

    /// Two cores (products split by columns) give the same gradients as one, to rounding.
    func testThreadsDoNotChangeGradients() throws {
        let one = try ours("t5gemma2", loss: "listwise"), two = try ours("t5gemma2", loss: "listwise", threads: 2)
        XCTAssertEqual(one.scores, two.scores)
        for (name, values) in one.gradients {
            let scale = values.map(abs).max() ?? 0
            let worst = zip(values, two.gradients[name]!).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThanOrEqual(worst, 1e-5 * scale + 1e-7, name)
        }
    }
}
