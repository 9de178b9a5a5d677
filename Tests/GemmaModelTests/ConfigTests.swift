import Foundation
import GemmaModel
import ModelFormats
import TestSupport
import XCTest


final class ConfigTests: XCTestCase {
    func decode(_ json: String) throws -> GemmaConfig { try GemmaConfig.decode(Data(json.utf8)) }

    /// transformers 4.x as EmbeddingGemma ships it: rope_theta + rope_local_base_freq, a window pattern.
    let embeddingGemma4x = """
    {"model_type": "gemma3_text", "_sliding_window_pattern": 6, "head_dim": 256, "hidden_size": 768,
     "intermediate_size": 1152, "num_attention_heads": 3, "num_hidden_layers": 12, "num_key_value_heads": 1,
     "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-06, "rope_local_base_freq": 10000.0, "rope_scaling": null,
     "rope_theta": 1000000.0, "sliding_window": 512, "use_bidirectional_attention": true, "vocab_size": 262144,
     "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 2048, "attn_logit_softcapping": null}
    """

    /// Sizes crafted to overflow what the model computes from them, a layer count that would size huge tables,
    /// a zero window period and a negative window: FormatErrors, never traps.
    func testCraftedSizesAreErrors() throws {
        func replacing(_ field: String, _ value: String) -> String {
            embeddingGemma4x.replacingOccurrences(of: #""\#(field)": "#, with: #""\#(field)": \#(value), "_was_\#(field)": "#)
        }
        for (field, value, words) in [("head_dim", "4611686018427387904", "too large"), ("num_attention_heads", "1099511627776", "too large"),
                                      ("vocab_size", "4611686018427387904", "too large"),
                                      ("intermediate_size", "4611686018427387904", "too large"),
                                      ("num_hidden_layers", "1099511627776", "layers"), ("sliding_window", "-4", "must be positive"),
                                      ("_sliding_window_pattern", "0", "must be positive")] {
            XCTAssertThrowsError(try decode(replacing(field, value)), field) { error in
                XCTAssertTrue(error is FormatError && "\(error)".contains(words), "\(field): \(error)")
            }
        }
    }

    func testGemma3TransformersV4() throws {
        let c = try decode(embeddingGemma4x)
        XCTAssertEqual(c.family, .gemma3)
        XCTAssertEqual(c.layerTypes.filter { $0 == .full }.count, 2)
        XCTAssertEqual(c.layerTypes[5], .full)
        XCTAssertEqual(c.layerTypes[4], .sliding)
        XCTAssertEqual(c.ropeFull, RopeParameters(theta: 1_000_000))
        XCTAssertEqual(c.ropeSliding, RopeParameters(theta: 10_000))
        XCTAssertEqual(c.numKVHeads, 1)
        XCTAssertEqual(c.headDim, 256)
        XCTAssertEqual(c.queryPreAttnScalar, 256)
        XCTAssertEqual(c.slidingWindow, 512)
        XCTAssertEqual(c.useBidirectionalAttention, true)
        XCTAssertEqual(c.hiddenActivation, .geluTanh)
        XCTAssertNil(c.attnLogitSoftcapping)
    }

    func testSlidingWindowPatternWithoutUnderscoreAndLinearScaling() throws {
        let json = embeddingGemma4x.replacingOccurrences(of: "\"_sliding_window_pattern\": 6", with: "\"sliding_window_pattern\": 3")
            .replacingOccurrences(of: "\"rope_scaling\": null", with: "\"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 8.0}")
        let c = try decode(json)
        XCTAssertEqual(c.layerTypes.prefix(6), [.sliding, .sliding, .full, .sliding, .sliding, .full])
        XCTAssertEqual(c.ropeFull, RopeParameters(theta: 1_000_000, linearFactor: 8))
        XCTAssertEqual(c.ropeSliding, RopeParameters(theta: 10_000))
    }

    func testTransformersV5PerLayerTypeRope() throws {
        let c = try GemmaConfig.load(fixturesDirectory.appendingPathComponent("tiny/gemma3/config.json"))
        XCTAssertEqual(c.layerTypes, [.sliding, .sliding, .sliding, .full])
        XCTAssertEqual(c.ropeFull.theta, 1_000_000)
        XCTAssertEqual(c.ropeSliding.theta, 10_000)
        XCTAssertEqual(c.slidingWindow, 4)
    }

    func testGemma2AndGemma() throws {
        let g2 = try GemmaConfig.load(fixturesDirectory.appendingPathComponent("tiny/gemma2/config.json"))
        XCTAssertEqual(g2.family, .gemma2)
        XCTAssertEqual(g2.attnLogitSoftcapping, 2.0)
        XCTAssertEqual(g2.layerTypes, [.sliding, .full, .sliding, .full])
        XCTAssertEqual(g2.ropeFull.theta, 10_000)
        XCTAssertEqual(g2.ropeSliding.theta, 10_000)
        let g1 = try GemmaConfig.load(fixturesDirectory.appendingPathComponent("tiny/gemma/config.json"))
        XCTAssertEqual(g1.family, .gemma)
        XCTAssertEqual(g1.layerTypes, Array(repeating: .full, count: 4))
        XCTAssertNil(g1.slidingWindow)
        XCTAssertEqual(g1.queryPreAttnScalar, 16, "Gemma 1 scales by head_dim")
    }

    func testGemma2TransformersV4AlternatesFromSliding() throws {
        let c = try decode("""
        {"model_type": "gemma2", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 4,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 320,
         "rope_theta": 10000.0, "sliding_window": 4096, "attn_logit_softcapping": 50.0, "query_pre_attn_scalar": 256}
        """)
        XCTAssertEqual(c.layerTypes, [.sliding, .full, .sliding, .full])
        XCTAssertEqual(c.attnLogitSoftcapping, 50)
    }

    func testGemma3MultimodalTextConfig() throws {
        let inner = embeddingGemma4x.replacingOccurrences(of: "\"model_type\": \"gemma3_text\",", with: "")
        let c = try decode(#"{"model_type": "gemma3", "text_config": \#(inner)}"#)
        XCTAssertEqual(c.family, .gemma3)
        XCTAssertEqual(c.hiddenSize, 768)
    }

    func testErrorsNameTheField() {
        XCTAssertThrowsError(try decode(#"{"model_type": "llama"}"#)) { error in
            let e = error as! FormatError
            XCTAssertEqual(e.item, "model_type")
            XCTAssertTrue(e.message.contains("llama"))
        }
        XCTAssertThrowsError(try decode(embeddingGemma4x.replacingOccurrences(of: "\"hidden_size\": 768,", with: ""))) { error in
            XCTAssertEqual((error as! FormatError).item, "hidden_size")
        }
        XCTAssertThrowsError(try decode(embeddingGemma4x.replacingOccurrences(of: "\"sliding_window\": 512,", with: ""))) { error in
            XCTAssertEqual((error as! FormatError).item, "sliding_window")
        }
        XCTAssertThrowsError(try decode(embeddingGemma4x.replacingOccurrences(of: "\"head_dim\": 256", with: "\"head_dim\": \"x\""))) { error in
            XCTAssertEqual((error as! FormatError).item, "head_dim")
        }
        XCTAssertThrowsError(try decode(#"{"hidden_size": 1}"#)) { error in
            XCTAssertEqual((error as! FormatError).item, "model_type")
        }
        let v5 = """
        {"model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 96, "num_hidden_layers": 2,
         "num_attention_heads": 4, "head_dim": 16, "vocab_size": 320, "sliding_window": 4,
         "layer_types": ["sliding_attention", "full_attention"],
         "rope_parameters": {"sliding_attention": {"rope_theta": 10000.0, "rope_type": "default"}}}
        """
        XCTAssertThrowsError(try decode(v5)) { error in
            XCTAssertEqual((error as! FormatError).item, "rope_parameters.full_attention")
        }
        XCTAssertThrowsError(try decode(v5.replacingOccurrences(of: "\"full_attention\"]", with: "\"global\"]"))) { error in
            XCTAssertEqual((error as! FormatError).item, "layer_types[1]")
        }
    }
}
