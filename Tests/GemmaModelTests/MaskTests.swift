import EncoderKernels
import GemmaModel
import ModelFormats
import XCTest

final class MaskTests: XCTestCase {
    func config(_ family: GemmaFamily, window: Int, bidirectionalCheckpoint: Bool? = true) -> GemmaConfig {
        GemmaConfig(family: family, vocabSize: 10, hiddenSize: 8, intermediateSize: 8, numLayers: 2, numHeads: 1,
                    numKVHeads: 1, headDim: 8, rmsNormEps: 1e-6, queryPreAttnScalar: 8, attnLogitSoftcapping: nil,
                    slidingWindow: window, layerTypes: [.sliding, .full], ropeFull: .init(theta: 1e6),
                    ropeSliding: .init(theta: 1e4), useBidirectionalAttention: bidirectionalCheckpoint, hiddenActivation: .geluTanh,
                    maxPositionEmbeddings: 2048)
    }

    /// Which j a query i sees, spelled out as the peers' rules.
    func visible(_ span: AttentionSpan, i: Int, length: Int) -> [Int] { Array(span.keyRange(query: i, length: length)) }

    func testGemma3BidirectionalSlidingSeesHalfWindowEachSide() {
        // EmbeddingGemma: w = 512 → 256 tokens each side.
        let span = config(.gemma3, window: 512).attentionSpan(layer: 0, mode: .bidirectional)
        XCTAssertEqual(span, AttentionSpan(before: 256, after: 256))
        XCTAssertEqual(visible(span, i: 300, length: 1000).first, 44)
        XCTAssertEqual(visible(span, i: 300, length: 1000).last, 556)
    }

    func testGemma2BidirectionalSlidingSeesWholeWindowEachSide() {
        let span = config(.gemma2, window: 4).attentionSpan(layer: 0, mode: .bidirectional)
        XCTAssertEqual(visible(span, i: 5, length: 20), Array(1...9))
    }

    func testCausalRules() {
        // A decoder checkpoint: sliding causal layers see 0 ≤ i − j < w.
        let decoder = config(.gemma3, window: 4, bidirectionalCheckpoint: nil)
        XCTAssertEqual(visible(decoder.attentionSpan(layer: 0, mode: .causal), i: 5, length: 20), [2, 3, 4, 5])
        // A bidirectional checkpoint run causally: transformers has already turned w into w // 2 + 1.
        let c = config(.gemma3, window: 4)
        XCTAssertEqual(visible(c.attentionSpan(layer: 0, mode: .causal), i: 5, length: 20), [3, 4, 5])
        XCTAssertEqual(visible(c.attentionSpan(layer: 1, mode: .causal), i: 5, length: 20), Array(0...5))
        XCTAssertEqual(visible(c.attentionSpan(layer: 1, mode: .bidirectional), i: 5, length: 20), Array(0..<20))
    }
}
