import Foundation
import TestSupport
import XCTest
import GemmaTokenizer

/// Ids must be identical to the reference implementations on every fixture row.
final class TokenizerParityTests: XCTestCase {
    /// HF `tokenizers` with add_special_tokens=True on EmbeddingGemma's tokenizer.json.
    func testMatchesHuggingFaceOnAllRows() throws {
        let tokenizer = try TestModels.embeddingGemmaTokenizer()
        let rows = try Fixtures.rows("tokenizer.jsonl")
        XCTAssertEqual(rows.count, 2038)
        try assertAllRowsMatch(rows) { tokenizer.encode($0) }
    }

    /// llama.cpp's tokenization (`<bos>` first, no `<eos>`) from the Gemma 3 270M GGUF vocabulary.
    func testMatchesLlamaCppFromGGUF() throws {
        let tokenizer = try TestModels.gemma3GGUFTokenizer()
        let rows = try Fixtures.rows("gemma3-270m-gguf-ids.jsonl")
        XCTAssertEqual(rows.count, 28)
        try assertAllRowsMatch(rows) { tokenizer.encode($0) }
    }

    func testSpecialTokenIds() throws {
        let hf = try TestModels.embeddingGemmaTokenizer()
        XCTAssertEqual(hf.bosTokenId, 2)
        XCTAssertEqual(hf.eosTokenId, 1)
        XCTAssertEqual(hf.padTokenId, 0)
        XCTAssertEqual(hf.vocabularySize, 262_145)  // 262,144 + <image_soft_token>
        let gguf = try TestModels.gemma3GGUFTokenizer()
        XCTAssertEqual(gguf.bosTokenId, 2)
        XCTAssertEqual(gguf.eosTokenId, 1)
        XCTAssertEqual(gguf.padTokenId, 0)
        XCTAssertEqual(gguf.vocabularySize, 262_144)
    }

    /// Reports the first mismatching row with its text and both id lists, plus the total count.
    private func assertAllRowsMatch(_ rows: [Fixtures.Row], file: StaticString = #filePath, line: UInt = #line,
                                    encode: (String) -> [Int32]) throws {
        var mismatches = 0
        var first: String?
        for (i, row) in rows.enumerated() {
            let got = encode(row.text)
            if got != row.ids {
                mismatches += 1
                if first == nil {
                    first = "row \(i) \(row.text.prefix(200).debugDescription):\n expected \(row.ids)\n got      \(got)"
                }
            }
        }
        if let first {
            XCTFail("\(mismatches) of \(rows.count) rows differ; first: \(first)", file: file, line: line)
        }
    }
}
