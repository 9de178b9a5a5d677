import EncoderKernels
import Foundation
import GemmaModel
import GemmaTraining
import ModelFormats
import TestSupport
import XCTest

/// transformers' reference.json for a tiny T5Gemma checkpoint (`scripts/make-t5gemma-fixtures`): a batch of
/// encoder inputs and every real token's encoder output, then per sequence three decoder tokens with the
/// decoder's final hidden states and logits, from one forward and from three cached steps.
private struct T5Reference: Decodable {
    let input_ids: [[Int32]]
    let encoder_hidden: [[[Float]]]
    let decoder_input_ids: [[Int32]]
    let decoder_hidden: [[[Float]]]
    let logits: [[[Float]]]
    let logits_cached: [[[Float]]]
}

final class T5GemmaTests: XCTestCase {
    /// The issue's bar: hidden states and logits within 1e-4 (max abs) of transformers.
    let tolerance: Float = 1e-4

    private func fixture(_ variant: String) throws -> (URL, T5Reference) {
        let dir = fixturesDirectory.appendingPathComponent("tiny/\(variant)")
        let data = try Data(contentsOf: dir.appendingPathComponent("reference.json"))
        return (dir, try JSONDecoder().decode(T5Reference.self, from: data))
    }

    private func worst(_ got: some Collection<Float>, _ expected: [Float]) -> Float {
        XCTAssertEqual(got.count, expected.count)
        return zip(got, expected).map { abs($0 - $1) }.max() ?? 0
    }

    private func checkEncoder(_ variant: String) throws {
        let (dir, ref) = try fixture(variant)
        let model = try ModelRegistry.standard.load(directory: dir)
        XCTAssertEqual(model.hiddenSize, 64)
        let out = try model.forward(ref.input_ids, mode: .bidirectional, threads: 2)
        var largest: Float = 0
        for s in ref.input_ids.indices {
            let d = worst(out.sequence(s), ref.encoder_hidden[s].flatMap { $0 })
            XCTAssertLessThanOrEqual(d, tolerance, "\(variant) sequence \(s)")
            largest = max(largest, d)
        }
        print("parity \(variant) encoder: max abs diff \(largest)")
    }

    /// The training forward (f32 master weights) of each encoder gives transformers' states too: the same mask
    /// rule, names and eoi embedding reach the model `train --finetune` runs.
    func testTrainableEncodersMatchTransformers() throws {
        for variant in ["t5gemma", "t5gemma2"] {
            let (dir, ref) = try fixture(variant)
            let config = try T5GemmaConfig.load(dir.appendingPathComponent("config.json"))
            let model = try TrainableGemma(config: config.encoder,
                                           weights: T5GemmaStackWeights(SafetensorsCheckpoint(url: dir), stack: .encoder))
            let pass = try model.forward(ref.input_ids, mode: .bidirectional, keepTape: false)
            let h = config.encoder.hiddenSize
            for s in ref.input_ids.indices {
                let rows = (pass.batch.offsets[s] * h)..<(pass.batch.offsets[s + 1] * h)
                let got = (0..<rows.count).map { pass.hidden.pointer[rows.lowerBound + $0] }
                XCTAssertLessThanOrEqual(worst(got, ref.encoder_hidden[s].flatMap { $0 }), tolerance, "\(variant) sequence \(s)")
            }
        }
    }

    func testT5GemmaEncoderMatchesTransformers() throws { try checkEncoder("t5gemma") }
    func testT5Gemma2EncoderMatchesTransformers() throws { try checkEncoder("t5gemma2") }

    /// The decoder over each sequence's encoder states: hidden states and logits of the three decoder tokens in
    /// one call, and the logits again one token at a time through the cache.
    private func checkDecoder(_ variant: String) throws {
        let (dir, ref) = try fixture(variant)
        let encoder = try ModelRegistry.standard.load(directory: dir)
        let decoder = try T5GemmaDecoder(directory: dir)
        XCTAssertEqual(decoder.config.decoderStartTokenId, 2)
        let states = try encoder.forward(ref.input_ids, mode: .bidirectional)
        var largest: Float = 0
        for s in ref.input_ids.indices {
            let ids = ref.decoder_input_ids[s]
            let whole = decoder.start(encoderStates: states.sequence(s), length: states.length(s))
            let hidden = try decoder.hidden(ids, cache: whole)
            XCTAssertEqual(whole.length, ids.count)
            let dh = worst(hidden, ref.decoder_hidden[s].flatMap { $0 })
            let dl = worst(decoder.logits(hidden), ref.logits[s].flatMap { $0 })
            XCTAssertLessThanOrEqual(dh, tolerance, "\(variant) sequence \(s) decoder hidden")
            XCTAssertLessThanOrEqual(dl, tolerance, "\(variant) sequence \(s) logits")
            let stepped = decoder.start(encoderStates: states.sequence(s), length: states.length(s))
            for (p, id) in ids.enumerated() {
                let row = try decoder.hidden([id], cache: stepped)
                let logits = decoder.logits(row)
                let dc = worst(logits, ref.logits_cached[s][p])
                XCTAssertLessThanOrEqual(dc, tolerance, "\(variant) sequence \(s) cached step \(p)")
                // One row of the head gives the same logit as the whole head.
                let token = Int(ids[(p + 1) % ids.count])
                XCTAssertEqual(decoder.logit(of: token, hidden: row[...]), logits[token], accuracy: 1e-5)
                largest = max(largest, dc)
            }
            largest = max(largest, dh, dl)
        }
        // All sequences at once, one token each per call (what scoring a batch of pairs does): every step's logits
        // are each sequence's own.
        let caches = ref.input_ids.indices.map { s in decoder.start(encoderStates: states.sequence(s), length: states.length(s)) }
        for p in 0..<3 {
            let rows = try decoder.hidden(next: ref.decoder_input_ids.map { $0[p] }, caches: caches, threads: 2)
            let logits = decoder.logits(rows), v = decoder.vocabularySize
            for s in ref.input_ids.indices {
                let d = worst(logits[(s * v)..<((s + 1) * v)], ref.logits_cached[s][p])
                XCTAssertLessThanOrEqual(d, tolerance, "\(variant) batched step \(p), sequence \(s)")
                largest = max(largest, d)
            }
        }
        print("parity \(variant) decoder: max abs diff \(largest)")
    }

    func testT5GemmaDecoderMatchesTransformers() throws { try checkDecoder("t5gemma") }
    func testT5Gemma2DecoderMatchesTransformers() throws { try checkDecoder("t5gemma2") }

    func testConfigsResolveEachStack() throws {
        let one = try T5GemmaConfig.load(fixturesDirectory.appendingPathComponent("tiny/t5gemma/config.json"))
        XCTAssertEqual(one.variant, .t5gemma)
        XCTAssertEqual(one.encoder.family, .gemma2)
        XCTAssertEqual(one.encoder.numLayers, 3)
        XCTAssertEqual(one.decoder.numLayers, 2)
        XCTAssertEqual(one.encoder.slidingWindow, 4)
        XCTAssertEqual(one.decoder.slidingWindow, 2)
        XCTAssertEqual(one.encoder.queryPreAttnScalar, 24)
        XCTAssertEqual(one.encoder.attnLogitSoftcapping, 2)
        XCTAssertEqual(one.finalLogitSoftcapping, 3)
        let two = try T5GemmaConfig.load(fixturesDirectory.appendingPathComponent("tiny/t5gemma2/config.json"))
        XCTAssertEqual(two.variant, .t5gemma2)
        XCTAssertEqual(two.encoder.family, .gemma3)
        XCTAssertEqual(two.encoder.eoiTokenIndex, 300)
        XCTAssertNil(two.encoder.attnLogitSoftcapping)
        XCTAssertEqual(two.encoder.ropeFull, RopeParameters(theta: 1e6, linearFactor: 8))
        XCTAssertEqual(two.encoder.ropeSliding, RopeParameters(theta: 1e4))
        XCTAssertNil(two.finalLogitSoftcapping)
    }

    /// Keys a file leaves out mean transformers' T5Gemma defaults (not Gemma's); a bad stack names its field.
    func testMissingKeysTakeTransformersDefaults() throws {
        let minimal = #"{"model_type": "t5gemma", "encoder": {"vocab_size": 320, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}, "decoder": {"vocab_size": 320, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}}"#
        let config = try T5GemmaConfig.decode(Data(minimal.utf8))
        XCTAssertEqual(config.encoder.headDim, 256)
        XCTAssertEqual(config.encoder.queryPreAttnScalar, 256)
        XCTAssertEqual(config.encoder.attnLogitSoftcapping, 50)
        XCTAssertEqual(config.finalLogitSoftcapping, 30)
        XCTAssertEqual(config.encoder.slidingWindow, 4096)
        XCTAssertEqual(config.encoder.layerTypes, [.sliding, .full])
        let nulls = minimal.replacingOccurrences(of: #""num_key_value_heads": 2}"#, with: #""num_key_value_heads": 2, "attn_logit_softcapping": null, "final_logit_softcapping": null}"#)
        let uncapped = try T5GemmaConfig.decode(Data(nulls.utf8))
        XCTAssertNil(uncapped.encoder.attnLogitSoftcapping, "null switches the soft-cap off")
        XCTAssertNil(uncapped.finalLogitSoftcapping)
        let biased = minimal.replacingOccurrences(of: #""model_type": "t5gemma", "encoder": {"#, with: #""model_type": "t5gemma", "encoder": {"attention_bias": true, "#)
        XCTAssertThrowsError(try T5GemmaConfig.decode(Data(biased.utf8), file: "x/config.json")) { error in
            XCTAssertTrue("\(error)".contains("encoder.attention_bias"), "\(error)")
        }
    }

    /// T5Gemma's encoder sees |i − j| ≤ w on sliding layers; T5Gemma 2's sees w keys, one more to the right.
    func testEncoderSlidingRules() throws {
        let one = try T5GemmaConfig.load(fixturesDirectory.appendingPathComponent("tiny/t5gemma/config.json"))
        XCTAssertEqual(Array(one.encoder.attentionSpan(layer: 0, mode: .bidirectional).keyRange(query: 5, length: 20)), Array(1...9))
        XCTAssertEqual(Array(one.decoder.attentionSpan(layer: 0, mode: .causal).keyRange(query: 5, length: 20)), [4, 5])
        var two = try T5GemmaConfig.load(fixturesDirectory.appendingPathComponent("tiny/t5gemma2/config.json")).encoder
        XCTAssertEqual(Array(two.attentionSpan(layer: 0, mode: .bidirectional).keyRange(query: 5, length: 20)), Array(4...7))
        two.slidingWindow = 512
        XCTAssertEqual(two.attentionSpan(layer: 0, mode: .bidirectional), AttentionSpan(before: 255, after: 256))
        two.slidingWindow = 5
        XCTAssertEqual(two.attentionSpan(layer: 0, mode: .bidirectional), AttentionSpan(before: 2, after: 2))
    }
}
