import Foundation
import TestSupport
import XCTest

extension CLITests {
    /// The library says what is wrong in its own terms; the CLI names the flag that fixes it.
    func testLibraryErrorsNameTheFlag() throws {
        let model = try tinyModel()
        let dim = try Tool.run(["embed", "--model", model, "--text", "x", "--dim", "9999"])
        XCTAssertNotEqual(dim.status, 0)
        XCTAssertTrue(dim.stderr.contains("--dim 9999 must be between 1 and the model's 64"), dim.stderr)

        let one = try write("one.jsonl", #"{"text": "a", "label": "x"}"# + "\n")
        let t = try Tool.run(["train", "--task", "classification", "--data", one, "--model", model, "--no-cache",
                              "--out", dir.appendingPathComponent("never").path])
        XCTAssertNotEqual(t.status, 0)
        XCTAssertTrue(t.stderr.contains("\(one): 1 row(s): too few to hold out a validation split (give --valid FILE)"), t.stderr)

        let pairs = try write("pairs.jsonl", #"{"query": "q", "positive": "p", "negatives": ["n"]}"# + "\n")
        let r = try Tool.run(["train", "--task", "rerank", "--data", pairs, "--model", model, "--no-cache",
                              "--out", dir.appendingPathComponent("never").path])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("\(pairs):1: 1 negatives, --negatives asks for 3"), r.stderr)

        let mine = try Tool.run(["mine-negatives", "--index", dir.path, "--queries", pairs, "--output", pairs, "--negatives", "0"])
        XCTAssertNotEqual(mine.status, 0)
        XCTAssertTrue(mine.stderr.contains("--negatives must be positive"), mine.stderr)

        // An index opened with another model: the error names the --model that opens it.
        let corpus = try write("corpus.jsonl", #"{"id": "a", "text": "a text editor"}"# + "\n" + #"{"id": "b", "text": "a game"}"#)
        let index = dir.appendingPathComponent("index").path
        let indexModel = try tinyEncoderDirectory(in: dir).path
        let built = try Tool.run(["index", "build", "--index", index, "--corpus", corpus, "--model", indexModel])
        XCTAssertEqual(built.status, 0, built.stderr)
        // The same weights with one more config file: another digest, so another model.
        let other = try tinyEncoderDirectory(in: dir.appendingPathComponent("other"))
        try "{}".write(to: other.appendingPathComponent("extra.json"), atomically: true, encoding: .utf8)
        let s = try Tool.run(["search", "--index", index, "--model", other.path, "editor"])
        XCTAssertNotEqual(s.status, 0)
        XCTAssertTrue(s.stderr.contains("was built with model") && s.stderr.contains("; use --model \(indexModel)"), s.stderr)

        // A known model not fetched yet: the command that fetches it.
        let empty = try Tool.run(["embed", "--model", "embeddinggemma-300m", "--text", "x"],
                                 environment: ["GEMMA_ENCODER_CACHE": dir.appendingPathComponent("empty-cache").path])
        XCTAssertNotEqual(empty.status, 0)
        XCTAssertTrue(empty.stderr.contains("is not in the cache") && empty.stderr.contains("run gemma-encoder models fetch embeddinggemma-300m"),
                      empty.stderr)
    }
}
