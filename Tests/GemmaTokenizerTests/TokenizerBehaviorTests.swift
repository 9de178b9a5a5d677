import Foundation
import TestSupport
import XCTest
import GemmaTokenizer
import ModelFormats

final class TokenizerBehaviorTests: XCTestCase {
    func testTruncationKeepsSpecialTokens() throws {
        let tokenizer = try TestModels.embeddingGemmaTokenizer()
        let text = "The quick brown fox jumps over the lazy dog, again and again and again."
        let full = tokenizer.encode(text)
        XCTAssertGreaterThan(full.count, 8)

        let cut = tokenizer.encode(text, maxLength: 8)
        XCTAssertEqual(cut.ids.count, 8)
        XCTAssertEqual(cut.ids.first, 2)
        XCTAssertEqual(cut.ids.last, 1)
        XCTAssertEqual(Array(cut.ids[1..<7]), Array(full[1..<7]))
        XCTAssertTrue(cut.truncated)
        XCTAssertEqual(cut.originalLength, full.count)

        let fits = tokenizer.encode(text, maxLength: full.count)
        XCTAssertEqual(fits, TokenizedText(ids: full, truncated: false, originalLength: full.count))
        XCTAssertEqual(tokenizer.encode(text, maxLength: nil).ids, full)

        let plain = tokenizer.encode(text, addSpecialTokens: false, maxLength: 5)
        XCTAssertEqual(plain.ids, Array(full[1..<6]))
        XCTAssertEqual(plain.originalLength, full.count - 2)

        // Degenerate limits keep the special tokens and drop all content, like HF with max_length=2.
        XCTAssertEqual(tokenizer.encode(text, maxLength: 2).ids, [2, 1])
    }

    func testWithoutSpecialTokens() throws {
        let tokenizer = try TestModels.embeddingGemmaTokenizer()
        XCTAssertEqual(tokenizer.encode("hello world", addSpecialTokens: false), [23391, 1902])
        XCTAssertEqual(tokenizer.encode("hello world"), [2, 23391, 1902, 1])
        XCTAssertEqual(tokenizer.encode(""), [2, 1])
    }

    /// Expected strings are HF `Tokenizer.decode` results.
    func testDecodeMatchesHuggingFace() throws {
        let tokenizer = try TestModels.embeddingGemmaTokenizer()
        let ids = tokenizer.encode("Hello world, <bos> x")
        XCTAssertEqual(ids, [2, 9259, 1902, 236764, 236743, 2, 1123, 1])
        XCTAssertEqual(tokenizer.decode(ids), "<bos>Hello world, <bos> x<eos>")
        XCTAssertEqual(tokenizer.decode(ids, skipSpecialTokens: true), "Hello world,  x")
        let turn = tokenizer.encode("<start_of_turn>user\nhi<end_of_turn>")
        XCTAssertEqual(tokenizer.decode(turn, skipSpecialTokens: true), "user\nhi")
        // <unused3> and [multimodal] are added but not special: kept when skipping specials.
        XCTAssertEqual(tokenizer.decode(tokenizer.encode("<unused3> [multimodal]"), skipSpecialTokens: true),
                       "<unused3> [multimodal]")
        XCTAssertEqual(tokenizer.decode([236743, 239, 240, 241]), " \u{1}\u{2}\u{3}")
        // A byte run that is not valid UTF-8 decodes to one U+FFFD per byte.
        XCTAssertEqual(tokenizer.token(for: 464), "<0xE2>")
        XCTAssertEqual(tokenizer.decode([464, 464, 1123]), "\u{FFFD}\u{FFFD} x")
    }

    func testDecodeRoundTrip() throws {
        let tokenizer = try TestModels.embeddingGemmaTokenizer()
        for text in ["naïve café 日本語 😀 👩‍👩‍👧", "  two  spaces\n\nnew\tline\r\n", "bytes \u{1}\u{E000} end",
                     "fn main() { println!(\"hi\"); }", String(repeating: "a", count: 3000)] {
            XCTAssertEqual(tokenizer.decode(tokenizer.encode(text), skipSpecialTokens: true), text)
            XCTAssertEqual(tokenizer.decode(tokenizer.encode(text, addSpecialTokens: false)), text)
        }
    }

    /// One 200,000-character word (no spaces, so a single BPE word) encodes and decodes back whole. How long
    /// it takes is a benchmark's figure, not a test's: `gemma-encoder bench --tokenizer-only` reports it
    /// (tokenizer_long_word_s).
    func testVeryLongWord() throws {
        let tokenizer = try TestModels.embeddingGemmaTokenizer()
        let text = String(repeating: "ab", count: 50_000) + String(repeating: "日本", count: 50_000)
        let ids = tokenizer.encode(text)
        XCTAssertEqual(ids.first, 2)
        XCTAssertEqual(ids.last, 1)
        XCTAssertLessThan(ids.count, text.unicodeScalars.count, "merges happened inside the word")
        XCTAssertEqual(tokenizer.decode(ids, skipSpecialTokens: true), text)
    }

    func testGGUFDecodeRoundTrip() throws {
        let tokenizer = try TestModels.gemma3GGUFTokenizer()
        for text in ["Ünïcödé àccents", "hello world", "日本語のテキスト", "a  b\n\tc"] {
            XCTAssertEqual(tokenizer.decode(tokenizer.encode(text), skipSpecialTokens: true), text)
        }
    }

    func testLoadFromDirectoryAndGGUF() throws {
        let fromDir = try GemmaTokenizer.load(directory: try TestModels.path(TestModels.embeddingGemmaName))
        XCTAssertEqual(fromDir.encode("hello world"), [2, 23391, 1902, 1])
        let fromGGUF = try GemmaTokenizer.load(gguf: try GGUFFile(url: try TestModels.path(TestModels.gemma3GGUFName)))
        XCTAssertEqual(fromGGUF.encode("hello world"), [2, 23391, 1902])
    }
}
