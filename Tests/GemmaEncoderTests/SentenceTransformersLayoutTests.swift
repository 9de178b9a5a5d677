import EncoderKernels
import Foundation
import GemmaEncoder
import GemmaModel
import TestSupport
import XCTest

/// A sentence-transformers directory built around the tiny Gemma 3 checkpoint, with the newer pooling
/// schema and a Dense layer with bias and Tanh: checks the pipeline against the same steps done by hand.
final class SentenceTransformersLayoutTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = try temporaryDirectory("st-layout")
        let fm = FileManager.default
        let tiny = fixturesDirectory.appendingPathComponent("tiny/gemma3")
        for name in ["config.json", "model.safetensors"] {
            try fm.copyItem(at: tiny.appendingPathComponent(name), to: dir.appendingPathComponent(name))
        }
        // The tokenizer is needed to load, not used: the inputs below are ids inside the tiny vocabulary.
        let tokenizer = try TestModels.path(KnownModel.embeddingGemma300M.name).appendingPathComponent("tokenizer.json")
        try fm.createSymbolicLink(at: dir.appendingPathComponent("tokenizer.json"), withDestinationURL: tokenizer)
        try """
        [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
         {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
         {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
         {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}]
        """.write(to: dir.appendingPathComponent("modules.json"), atomically: true, encoding: .utf8)
        try #"{"max_seq_length": 6, "do_lower_case": false}"#.write(to: dir.appendingPathComponent("sentence_bert_config.json"), atomically: true, encoding: .utf8)
        try #"{"prompts": {"query": "q: "}, "default_prompt_name": null}"#.write(to: dir.appendingPathComponent("config_sentence_transformers.json"), atomically: true, encoding: .utf8)
        for sub in ["1_Pooling", "2_Dense"] {
            try fm.createDirectory(at: dir.appendingPathComponent(sub), withIntermediateDirectories: true)
        }
        try #"{"embedding_dimension": 64, "pooling_mode": "mean", "include_prompt": true}"#
            .write(to: dir.appendingPathComponent("1_Pooling/config.json"), atomically: true, encoding: .utf8)
        try #"{"in_features": 64, "out_features": 8, "bias": true, "activation_function": "torch.nn.modules.activation.Tanh"}"#
            .write(to: dir.appendingPathComponent("2_Dense/config.json"), atomically: true, encoding: .utf8)
        try writeSafetensors(dir.appendingPathComponent("2_Dense/model.safetensors"), [
            ("linear.weight", "F32", [8, 64], f32Bytes(denseWeight)),
            ("linear.bias", "F32", [8], f32Bytes(denseBias)),
        ])
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    let denseWeight: [Float] = (0..<(8 * 64)).map { Float(($0 * 37) % 17 - 8) / 40 }
    let denseBias: [Float] = (0..<8).map { Float($0) / 10 - 0.3 }

    /// tanh(W·x + b), spelled out.
    func dense(_ x: [Float]) -> [Float] {
        var y = [Float](repeating: 0, count: 8)
        for o in 0..<8 {
            var sum: Float = denseBias[o]
            for i in 0..<64 { sum += denseWeight[o * 64 + i] * x[i] }
            y[o] = tanhf(sum)
        }
        return y
    }

    func normalized(_ v: [Float]) -> [Float] {
        var sum: Float = 0
        for x in v { sum += x * x }
        return v.map { $0 / sum.squareRoot() }
    }

    func mean(_ states: [Float], tokens: Int) -> [Float] {
        var m = [Float](repeating: 0, count: 64)
        for t in 0..<tokens { for d in 0..<64 { m[d] += states[t * 64 + d] } }
        return m.map { $0 / Float(tokens) }
    }

    func testPipelineMatchesStepByStep() throws {
        let encoder = try TextEncoder(directory: dir)
        XCTAssertTrue(encoder.isSentenceTransformer)
        XCTAssertEqual(encoder.maxSequenceLength, 6)
        XCTAssertEqual(encoder.pipeline.outputDimension, 8)
        XCTAssertEqual(try encoder.prompt(named: "query"), "q: ")

        let ids: [[Int32]] = [[2, 17, 45, 99, 1], [2, 300, 1]]
        let got = try encoder.embed(ids.map { EncoderInput(ids: $0) })
        let states = try encoder.model.forward(ids, mode: .bidirectional)
        for (i, seq) in ids.enumerated() {
            let y = normalized(dense(mean(Array(states.sequence(i)), tokens: seq.count)))
            XCTAssertLessThanOrEqual(maxAbsDiff(got[i], y), 1e-5, "sequence \(i)")
        }
    }

    func testPoolingOverrideAndNoNormalize() throws {
        let encoder = try TextEncoder(directory: dir)
        let ids: [Int32] = [2, 17, 45, 99, 1]
        let states = try encoder.model.forward([ids], mode: .causal)
        let last = Array(states.sequence(0).suffix(64))
        let got = try encoder.embed([EncoderInput(ids: ids)],
                                    options: EmbeddingOptions(attention: .causal, pooling: .last, normalize: false))[0]
        XCTAssertLessThanOrEqual(maxAbsDiff(got, dense(last)), 1e-5)
    }

    func testDenseInputMismatchIsAnError() throws {
        try #"{"in_features": 32, "out_features": 8, "bias": true}"#
            .write(to: dir.appendingPathComponent("2_Dense/config.json"), atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try TextEncoder(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("linear.weight") || "\(error)".contains("Dense"), "\(error)")
        }
    }

    func testPlainDirectoryUsesChosenPooling() throws {
        for name in ["modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"] {
            try FileManager.default.removeItem(at: dir.appendingPathComponent(name))
        }
        let encoder = try TextEncoder(directory: dir)
        XCTAssertFalse(encoder.isSentenceTransformer)
        XCTAssertEqual(encoder.pipeline.outputDimension, 64)
        let ids: [Int32] = [2, 11, 12, 13, 1]
        let states = try encoder.model.forward([ids], mode: .bidirectional)
        let first = normalized(Array(states.sequence(0).prefix(64)))
        let got = try encoder.embed([EncoderInput(ids: ids)], options: EmbeddingOptions(pooling: .first))[0]
        XCTAssertLessThanOrEqual(maxAbsDiff(got, first), 1e-6)
    }

    /// An unreadable modules.json is an EncoderError naming the file, not a raw Foundation error.
    func testUnreadableModulesFileIsAnEncoderErrorNamingIt() throws {
        let modules = dir.appendingPathComponent("modules.json")
        try FileManager.default.removeItem(at: modules)
        try FileManager.default.createDirectory(at: modules, withIntermediateDirectories: false)
        XCTAssertThrowsError(try SentenceTransformersLayout.load(directory: dir)) { error in
            guard case let .invalidConfig(file, _, message)? = error as? EncoderError else {
                return XCTFail("\(type(of: error)): \(error)")
            }
            XCTAssertEqual(file, modules.path)
            XCTAssertTrue(message.hasPrefix("cannot read"), message)
        }
    }
}
