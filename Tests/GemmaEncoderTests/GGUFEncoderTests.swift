import Foundation
import GemmaEncoder
import TestSupport
import XCTest

/// llama.cpp's embeddings of Gemma 3 270M Q4_K_M: 28 texts, mean-pooled bidirectional and last-token causal.
struct LlamaCppRow: Decodable {
    let text: String
    let ids: [Int32]
    let mean_bidirectional: [Float]
    let last_causal: [Float]
}

/// An independent float64 NumPy forward pass over the same GGUF (scripts/reference-gguf-numpy): whole texts.
struct NumPyRow: Decodable {
    let text: String
    let mean_bidirectional: [Float]
    let last_causal: [Float]
}

/// Gemma 3 270M Q4_K_M from GGUF against llama.cpp and against an independent NumPy implementation.
/// llama.cpp computes in reduced precision (8-bit activations in quantized products, f16 in attention), so
/// the bar against it is cosine ≥ 0.998; against NumPy, which computes exactly, it is 0.99999.
///
/// The reference has a flaw this test works around, found by comparison: for the 12 texts that contain line
/// breaks, llama.cpp's embedding tool split the text at "\n" and its embeddings are those of the first line
/// only (the `ids` are of the whole text). Our first-line embeddings match them (causal: ≥ 0.998); an
/// independent NumPy forward pass over the same GGUF (gguf-py's dequantizer) agrees with ours on the whole
/// texts to 1.0. Its bidirectional first-line embeddings are also a little off (0.995–0.9999), as the tool
/// ran a text's lines as one batch and, non-causally, llama.cpp lets sequences in a batch see each other.
final class GGUFEncoderTests: XCTestCase {
    func reference() throws -> [LlamaCppRow] {
        let data = try Data(contentsOf: fixturesDirectory.appendingPathComponent("gguf/gemma3-270m-gguf.jsonl"))
        return try data.split(separator: UInt8(ascii: "\n")).map { try JSONDecoder().decode(LlamaCppRow.self, from: Data($0)) }
    }

    /// Rows where llama.cpp's last-token causal embedding lies a little under 0.998 from both ours and
    /// NumPy's (0.9971–0.9978; NumPy and ours agree to ≥ 0.99999 there): its rounding, not ours.
    static let llamaCppRoundingRows: Set<Int> = [22, 23, 24, 27]

    func testEmbeddingsMatchLlamaCpp() throws {
        let encoder = try TestModels.gemma3GGUF()
        let rows = try reference()
        XCTAssertEqual(rows.count, 28)
        // What llama.cpp embedded: the whole text, or its first line (see above).
        let embedded = rows.map { $0.text.contains("\n") ? String($0.text.prefix { $0 != "\n" }) : $0.text }
        var mean = EmbeddingOptions(pooling: .mean)
        mean.attention = .bidirectional
        var last = EmbeddingOptions(pooling: .last)
        last.attention = .causal
        let means = try encoder.embed(embedded, options: mean), lasts = try encoder.embed(embedded, options: last)
        var worst = (mean: 1.0, last: 1.0)
        for (i, row) in rows.enumerated() {
            XCTAssertEqual(encoder.tokenize([row.text])[0].ids, row.ids, "row \(i) ids")
            let m = cosine(means[i], row.mean_bidirectional), l = cosine(lasts[i], row.last_causal)
            XCTAssertGreaterThanOrEqual(l, Self.llamaCppRoundingRows.contains(i) ? 0.997 : 0.998, "row \(i) last-token causal")
            XCTAssertGreaterThanOrEqual(m, row.text.contains("\n") ? 0.99 : 0.998, "row \(i) mean bidirectional")
            if !row.text.contains("\n") { worst.mean = min(worst.mean, m) }
            worst.last = min(worst.last, l)
        }
        print("gemma3-270m GGUF vs llama.cpp: min cosine mean/bidirectional \(worst.mean) (single-line rows), last/causal \(worst.last)")
    }

    func testEmbeddingsMatchAnIndependentNumPyForwardPass() throws {
        let encoder = try TestModels.gemma3GGUF()
        let data = try Data(contentsOf: fixturesDirectory.appendingPathComponent("gguf/gemma3-270m-numpy.jsonl"))
        let rows = try data.split(separator: UInt8(ascii: "\n")).map { try JSONDecoder().decode(NumPyRow.self, from: Data($0)) }
        XCTAssertEqual(rows.count, 28)
        var mean = EmbeddingOptions(pooling: .mean)
        mean.attention = .bidirectional
        var last = EmbeddingOptions(pooling: .last)
        last.attention = .causal
        let means = try encoder.embed(rows.map(\.text), options: mean), lasts = try encoder.embed(rows.map(\.text), options: last)
        var worst = 1.0
        for (i, row) in rows.enumerated() {
            let m = cosine(means[i], row.mean_bidirectional), l = cosine(lasts[i], row.last_causal)
            XCTAssertGreaterThanOrEqual(m, 0.99999, "row \(i) mean bidirectional")
            XCTAssertGreaterThanOrEqual(l, 0.99999, "row \(i) last-token causal")
            worst = min(worst, m, l)
        }
        print("gemma3-270m GGUF vs NumPy float64: min cosine \(worst)")
    }

    func testBatchInvariance() throws {
        let encoder = try TestModels.gemma3GGUF()
        let texts = try reference().map(\.text)
        for mode in AttentionMode.allCases {
            var options = EmbeddingOptions(pooling: .mean)
            options.attention = mode
            let together = try encoder.embed(texts, options: options)
            for (i, text) in texts.enumerated() {
                XCTAssertGreaterThan(cosine(try encoder.embed([text], options: options)[0], together[i]), 0.999999, "\(mode) row \(i)")
            }
        }
    }

    func testWeightsStayQuantized() throws {
        let bytes = try TestModels.gemma3GGUF().model.weightBytes
        XCTAssertNil(bytes[.f32], "no Linear weight or embedding was expanded to f32")
        XCTAssertEqual(Set(bytes.keys), [.q5_0, .q8_0, .q4_K, .q6_K])
        // 262,144 × 640 Q8_0 embeddings and 18 layers of 4–8-bit weights: under 250 MB (f32 would be 1.1 GB).
        XCTAssertLessThan(bytes.values.reduce(0, +), 250_000_000)
    }
}
