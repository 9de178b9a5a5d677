import Foundation
import GemmaEncoder
import GemmaTokenizer
import TestSupport
import XCTest

/// Values a crafted tokenizer or sentence-transformers file can hold that once sized an allocation or
/// overflowed arithmetic (issue 22's audit of the parsers): each is an error naming the file and field now,
/// or is handled without a trap.
final class CraftedConfigTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try temporaryDirectory("crafted-config") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// The tiny model in a directory of its own, with `edit` applied to its tokenizer.json.
    private func tokenizer(_ name: String, _ edit: (inout [String: Any]) -> Void) throws -> URL {
        let model = try tinyEncoderDirectory(in: dir.appendingPathComponent(name))
        let url = model.appendingPathComponent("tokenizer.json")
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        edit(&json)
        try JSONSerialization.data(withJSONObject: json).write(to: url)
        return url
    }

    private func assertError(_ body: @autoclosure () throws -> Any, mentions words: [String], line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            for word in words { XCTAssertTrue("\(error)".contains(word), "'\(error)' lacks '\(word)'", line: line) }
        }
    }

    /// A token id sizes the id → token table: 2^31 − 648 once asked for a 32 GB array.
    func testTokenIDsFarPastTheVocabularyAreErrors() throws {
        let vocab = try tokenizer("vocab") { json in
            var model = json["model"] as! [String: Any]
            var vocab = model["vocab"] as! [String: Any]
            vocab["zz"] = 2_147_483_000
            model["vocab"] = vocab
            json["model"] = model
        }
        assertError(try GemmaTokenizer.load(tokenizerJSON: vocab), mentions: ["tokenizer.json", "model.vocab[zz]", "far past"])
        let added = try tokenizer("added") { json in
            var list = json["added_tokens"] as! [[String: Any]]
            list.append(["id": 2_000_000_000, "content": "<x>", "special": true])
            json["added_tokens"] = list
        }
        assertError(try GemmaTokenizer.load(tokenizerJSON: added), mentions: ["tokenizer.json", "added_tokens[4].id", "far past"])
    }

    /// Found by scripts/fuzz (tokenizer target): a word no symbol covers — no unknown token, no byte
    /// fallback — once walked an unset link of the merge list and read far out of bounds. It encodes to
    /// nothing, as `tokenizers` does.
    func testAWordWithoutSymbolsEncodesToNothing() throws {
        let url = try tokenizer("no-unknown") { json in
            var model = json["model"] as! [String: Any]
            model["unk_token"] = NSNull()
            model["byte_fallback"] = false
            json["model"] = model
        }
        let tokenizer = try GemmaTokenizer.load(tokenizerJSON: url)
        XCTAssertEqual(tokenizer.encode("漢字", addSpecialTokens: false), [])
        XCTAssertEqual(tokenizer.encode("漢字", addSpecialTokens: true), [2, 1])
    }

    /// A Replace normalizer with a long replacement once reserved text / 4 × replacement bytes up front (a
    /// megabyte text and a megabyte replacement: 2.5e11 bytes); the result is what it was.
    func testLongReplacementsNormalize() throws {
        let long = String(repeating: "ab", count: 50)
        let url = try tokenizer("replace") { json in
            json["normalizer"] = ["type": "Replace", "pattern": ["String": " "], "content": long]
        }
        let tokenizer = try GemmaTokenizer.load(tokenizerJSON: url)
        let ids = tokenizer.encode(String(repeating: "x ", count: 20), addSpecialTokens: false)
        XCTAssertEqual(tokenizer.decode(ids), String(repeating: "x" + long, count: 20))   // every space became the long text
    }

    /// max lengths are compared before subtracting: Int.min keeps the special tokens and nothing else.
    func testMaxLengthNearIntMinKeepsOnlySpecialTokens() throws {
        let tokenizer = try GemmaTokenizer.load(tokenizerJSON: try tokenizer("plain") { _ in })
        let cut = tokenizer.encode("the cat sat", maxLength: Int.min)
        XCTAssertEqual(cut.ids, [2, 1])
        XCTAssertTrue(cut.truncated)
        XCTAssertEqual(tokenizer.encode("the cat sat", addSpecialTokens: false, maxLength: Int.min).ids, [])
    }

    /// A sentence-transformers directory around the tiny model with the given pooling and bert configs.
    private func layout(_ name: String, pooling: String, bert: String) throws -> URL {
        let model = try tinyEncoderDirectory(in: dir.appendingPathComponent(name))
        try Data(#"[{"path": "", "type": "sentence_transformers.models.Transformer"}, {"path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]"#.utf8)
            .write(to: model.appendingPathComponent("modules.json"))
        try FileManager.default.createDirectory(at: model.appendingPathComponent("1_Pooling"), withIntermediateDirectories: true)
        try Data(pooling.utf8).write(to: model.appendingPathComponent("1_Pooling/config.json"))
        try Data(bert.utf8).write(to: model.appendingPathComponent("sentence_bert_config.json"))
        return model
    }

    func testPoolingDimensionsAndMaxSequenceLengthsAreChecked() throws {
        let mean = #"{"word_embedding_dimension": 64, "pooling_mode_mean_tokens": true}"#
        XCTAssertEqual(try SentenceTransformersLayout.load(directory: try layout("good", pooling: mean, bert: #"{"max_seq_length": 8}"#)).maxSequenceLength, 8)
        let huge = #"{"word_embedding_dimension": 4611686018427387904, "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": true}"#
        assertError(try SentenceTransformersLayout.load(directory: try layout("huge", pooling: huge, bert: "{}")),
                    mentions: ["1_Pooling/config.json", "word_embedding_dimension", "not a dimension"])
        assertError(try SentenceTransformersLayout.load(directory: try layout("zero", pooling: mean, bert: #"{"max_seq_length": 0}"#)),
                    mentions: ["sentence_bert_config.json", "max_seq_length", "not a length"])
    }
}
