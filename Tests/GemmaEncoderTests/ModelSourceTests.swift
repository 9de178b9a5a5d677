import Foundation
import GemmaEncoder
import TestSupport
import XCTest

/// What a path holds is decided from its contents, once.
final class ModelSourceTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory("model-source") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ text: String, _ name: String) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url
    }

    func testKindsByContent() throws {
        _ = try write("{}", "hf/config.json")
        XCTAssertEqual(try ModelSource(at: dir.appendingPathComponent("hf")), .huggingFace(dir.appendingPathComponent("hf")))
        _ = try write("[]", "st/modules.json")
        _ = try write("{}", "st/config.json")
        XCTAssertEqual(try ModelSource(at: dir.appendingPathComponent("st")), .sentenceTransformers(dir.appendingPathComponent("st")))
        // A GGUF file is recognised by its magic, whatever its name; a directory holding exactly one is that file.
        let gguf = try write("GGUF\u{3}\0\0\0", "cache/weights.bin")
        XCTAssertEqual(try ModelSource(at: gguf), .gguf(gguf))
        XCTAssertEqual(try ModelSource(at: dir.appendingPathComponent("cache")), .gguf(gguf))
    }

    func testWhatIsNotAModelIsAnError() throws {
        let text = try write("hello", "notes.gguf")
        XCTAssertThrowsError(try ModelSource(at: text)) { XCTAssertTrue("\($0)".contains("not a model"), "\($0)") }
        let empty = dir.appendingPathComponent("empty")
        try FileManager.default.createDirectory(at: empty, withIntermediateDirectories: true)
        XCTAssertThrowsError(try ModelSource(at: empty)) { XCTAssertTrue("\($0)".contains("no modules.json or config.json"), "\($0)") }
        XCTAssertThrowsError(try ModelSource(at: dir.appendingPathComponent("missing"))) {
            XCTAssertTrue("\($0)".contains("no such file"), "\($0)")
        }
    }

    /// The tiny encoder directory opens through the source, and its tokenizer comes from the same place.
    func testEncoderAndTokenizerFromOneSource() throws {
        let tiny = try tinyEncoderDirectory(in: dir)
        let source = try ModelSource(at: tiny)
        let encoder = try TextEncoder(source: source)
        XCTAssertEqual(encoder.source, source)
        XCTAssertEqual(encoder.hiddenSize, 64)
        XCTAssertEqual(try source.loadTokenizer().encode("hello world"), encoder.tokenizer.encode("hello world"))
    }
}
