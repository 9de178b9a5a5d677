import Foundation
import TestSupport
import XCTest
import GemmaTokenizer

/// Broken or unsupported tokenizer.json files give typed errors naming the file and field.
final class MalformedTokenizerTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws {
        directory = try temporaryDirectory("tok")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    private func load(_ json: String) throws -> GemmaTokenizer {
        let url = directory.appendingPathComponent("tokenizer.json")
        try Data(json.utf8).write(to: url)
        return try GemmaTokenizer.load(tokenizerJSON: url)
    }

    private func assertError(_ json: String, _ expected: (String) -> TokenizerError,
                             file: StaticString = #filePath, line: UInt = #line) {
        let path = directory.appendingPathComponent("tokenizer.json").path
        XCTAssertThrowsError(try load(json), file: file, line: line) { error in
            XCTAssertEqual(error as? TokenizerError, expected(path), file: file, line: line)
        }
    }

    private let tinyModel = """
        "model": {"type": "BPE", "byte_fallback": false, "fuse_unk": true, "unk_token": "<unk>",
                  "vocab": {"<unk>": 0, "a": 1, "b": 2, "ab": 3, "▁": 4}, "merges": [["a", "b"]]}
        """

    func testTinyValidTokenizer() throws {
        let t = try load("""
            {"normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}, \(tinyModel)}
            """)
        XCTAssertEqual(t.encode("ab ba c"), [3, 4, 2, 1, 4, 0])
        // No decoder: HF joins the tokens with spaces.
        XCTAssertEqual(t.decode([3, 4, 2]), "ab ▁ b")
    }

    func testSyntaxError() {
        let json = #"{"model": {"type": "BPE", "vocab": {"a": 1,}}}"#
        let offset = json.utf8.firstIndex(of: UInt8(ascii: "}")).map { json.utf8.distance(from: json.utf8.startIndex, to: $0) }!
        assertError(json) { .invalidJSON(file: $0, offset: offset, message: "expected object key") }
        assertError(#"{"model": "#) { .invalidJSON(file: $0, offset: 10, message: "unexpected end of input") }
    }

    /// Ids past 32 bits (added tokens, post-processor special tokens) are errors, not traps.
    func testTokenIDsPast32Bits() {
        assertError(#"{"added_tokens": [{"id": 3000000000, "content": "<x>"}], \#(tinyModel)}"#) {
            .invalidValue(file: $0, field: "added_tokens[0].id", message: "token id 3000000000 is outside 0..<2^31")
        }
    }

    func testMissingModel() {
        assertError(#"{"normalizer": null}"#) { .missingField(file: $0, field: "model") }
    }

    func testUnknownStageType() {
        assertError(#"{"normalizer": {"type": "NFKC"}, \#(tinyModel)}"#) {
            .unsupportedType(file: $0, field: "normalizer.type", type: "NFKC")
        }
        assertError(#"{"decoder": {"type": "Sequence", "decoders": [{"type": "Fuse"}, {"type": "WordPiece"}]}, \#(tinyModel)}"#) {
            .unsupportedType(file: $0, field: "decoder.decoders[1].type", type: "WordPiece")
        }
        assertError(#"{"model": {"type": "Unigram", "vocab": []}}"#) {
            .unsupportedType(file: $0, field: "model.type", type: "Unigram")
        }
    }

    func testMergeOutsideVocabulary() {
        assertError(#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": [["a", "b"]]}}"#) {
            .invalidValue(file: $0, field: "model.merges[0]", message: "merge a + b uses or produces a token outside the vocabulary")
        }
    }

    func testMissingFile() {
        let url = directory.appendingPathComponent("nope/tokenizer.json")
        XCTAssertThrowsError(try GemmaTokenizer.load(tokenizerJSON: url)) { error in
            guard case .unreadable(let file, _)? = error as? TokenizerError else { return XCTFail("\(error)") }
            XCTAssertEqual(file, url.path)
        }
    }
}
