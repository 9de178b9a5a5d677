import EncoderKernels
import Foundation
import GemmaModel
import ModelFormats
import TestSupport
import XCTest

/// The blocks keep what a backward pass needs only when asked, without changing the forward pass, and what
/// they keep is what its name says; a lone batch split across cores gives the states of one core.
final class ActivationsTests: XCTestCase {
    /// A longer input than the reference batch, so attention heads are split across cores (≥ 64 tokens).
    let long: [Int32] = [2] + (0..<90).map { (i: Int) -> Int32 in Int32((i * 37 + 11) % 300 + 3) } + [1]

    func testSavingLeavesTheForwardUnchanged() throws {
        for family in ["gemma", "gemma2", "gemma3"] {
            let (model, ref) = try tinyModel(family)
            for mode in AttentionMode.allCases {
                let plain = try model.forward(ref.input_ids, mode: mode)
                let saving = ForwardActivations(layers: model.config.numLayers)
                let saved = try model.forward(ref.input_ids, mode: mode, saving: saving)
                XCTAssertEqual(plain.values, saved.values, "\(family) \(mode): saving activations changed the output")
                for (l, layer) in saving.layers.enumerated() {
                    for slot in LayerActivations.Slot.allCases where slot != .projectedQKV || model.config.usesQueryKeyNorm {
                        XCTAssertNotNil(layer[slot], "\(family) layer \(l) did not keep \(slot)")
                    }
                }
            }
        }
    }

    /// Each kept tensor checked against the operation that produced it, recomputed from the checkpoint.
    func testKeptTensorsAreWhatTheirNamesSay() throws {
        for family in ["gemma", "gemma2", "gemma3"] {
            let (model, ref) = try tinyModel(family)
            let c = model.config, h = c.hiddenSize
            let checkpoint = try SafetensorsCheckpoint(url: fixturesDirectory.appendingPathComponent("tiny/\(family)/model.safetensors"))
            func scale(_ name: String) throws -> [Float] { try checkpoint.tensor(name, shape: [h]).floats().array.map { 1 + $0 } }
            func norm(_ x: [Float], _ scale: [Float]) -> [Float] {
                var out = [Float](repeating: 0, count: x.count)
                x.withUnsafeBufferPointer { xb in scale.withUnsafeBufferPointer { s in out.withUnsafeMutableBufferPointer { o in
                    rmsNorm(xb.baseAddress!, rows: x.count / h, dim: h, scale: s.baseAddress!, eps: c.rmsNormEps, out: o.baseAddress!)
                } } }
                return out
            }
            let saving = ForwardActivations(layers: c.numLayers)
            let out = try model.forward(ref.input_ids, mode: .bidirectional, saving: saving)

            // Layer 0's input: the embedding rows × √hidden.
            let table = try checkpoint.tensor("embed_tokens.weight", shape: [c.vocabSize, h]).floats().array
            let normalizer = Float(Double(h).squareRoot())
            let embedded = ref.input_ids.flatMap { $0 }.flatMap { id in table[(Int(id) * h)..<((Int(id) + 1) * h)].map { $0 * normalizer } }
            XCTAssertEqual(saving.layers[0][.input], embedded, "\(family): layer 0 input")
            for l in 0..<c.numLayers {
                let layer = saving.layers[l]
                XCTAssertEqual(layer[.attentionInput]!, norm(layer[.input]!, try scale("layers.\(l).input_layernorm.weight")), "\(family) layer \(l)")
                let mlpNorm = c.usesSandwichNorms ? "pre_feedforward_layernorm" : "post_attention_layernorm"
                XCTAssertEqual(layer[.mlpInput]!, norm(layer[.midResidual]!, try scale("layers.\(l).\(mlpNorm).weight")), "\(family) layer \(l)")
                if l + 1 < c.numLayers {
                    // The next layer's input is this layer's output: mid-residual + (normed) MLP branch.
                    let branch = c.usesSandwichNorms
                        ? norm(layer[.mlpBranch]!, try scale("layers.\(l).post_feedforward_layernorm.weight")) : layer[.mlpBranch]!
                    XCTAssertEqual(saving.layers[l + 1][.input]!, zip(layer[.midResidual]!, branch).map(+), "\(family) layer \(l) output")
                }
            }
            XCTAssertEqual(out.values, norm(saving.finalInput, try scale("norm.weight")), "\(family): final norm input")
        }
    }

    func testLoneBatchAcrossCoresMatchesOneCore() throws {
        for family in ["gemma", "gemma2", "gemma3"] {
            let (model, ref) = try tinyModel(family)
            let batch = ref.input_ids + [long]
            for mode in AttentionMode.allCases {
                let one = try model.forward(batch, mode: mode, threads: 1)
                let two = try model.forward(batch, mode: mode, threads: 2)
                XCTAssertLessThanOrEqual(maxAbsDiff(one.values, two.values), 1e-5, "\(family) \(mode)")
            }
        }
    }

    func testActivationsForTheWrongModelAreAnError() throws {
        let (model, ref) = try tinyModel("gemma")
        XCTAssertThrowsError(try model.forward(ref.input_ids, mode: .causal, saving: ForwardActivations(layers: 1))) { error in
            XCTAssertTrue("\(error)".contains("activations for 1 layers"), "\(error)")
        }
    }
}

/// The registry picks the architecture by the checkpoint's own type name and names what it does not know.
final class ModelRegistryTests: XCTestCase {
    func testEveryTinyFamilyLoadsByModelType() throws {
        for (family, type) in [("gemma", "gemma"), ("gemma2", "gemma2"), ("gemma3", "gemma3_text")] {
            let model = try ModelRegistry.standard.load(directory: fixturesDirectory.appendingPathComponent("tiny/\(family)"))
            XCTAssertEqual(model.hiddenSize, 64)
            XCTAssertEqual((model as? GemmaTransformer)?.config.family.rawValue, family, type)
        }
    }

    func testUnknownModelTypeNamesTheFileAndTheSupportedTypes() throws {
        let dir = try temporaryDirectory("registry")
        defer { try? FileManager.default.removeItem(at: dir) }
        try #"{"model_type": "llama", "hidden_size": 64}"#.write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ModelRegistry.standard.load(directory: dir)) { error in
            let e = error as! FormatError
            XCTAssertEqual(e.item, "model_type")
            XCTAssertTrue(e.file.hasSuffix("config.json"), e.file)
            XCTAssertTrue(e.message.contains("'llama'") && e.message.contains("gemma3_text"), e.message)
        }
        try #"{"hidden_size": 64}"#.write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ModelRegistry.standard.load(directory: dir)) { XCTAssertEqual(($0 as! FormatError).item, "model_type") }
        try #"{"model_type": 3}"#.write(to: dir.appendingPathComponent("config.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ModelRegistry.standard.load(directory: dir)) { XCTAssertEqual(($0 as! FormatError).item, "model_type") }
    }
}
