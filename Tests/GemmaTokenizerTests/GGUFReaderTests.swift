import Foundation
import TestSupport
import XCTest
import ModelFormats
import GemmaTokenizer

final class GGUFReaderTests: XCTestCase {
    func testGemma3Metadata() throws {
        let gguf = try GGUFFile(url: try TestModels.path(TestModels.gemma3GGUFName))
        XCTAssertEqual(gguf.version, 3)
        XCTAssertEqual(gguf["general.architecture"]?.stringValue, "gemma3")
        XCTAssertEqual(gguf["gemma3.embedding_length"]?.intValue, 640)
        XCTAssertEqual(gguf["gemma3.block_count"]?.intValue, 18)
        XCTAssertEqual(gguf["gemma3.attention.sliding_window"]?.intValue, 512)
        XCTAssertEqual(gguf["gemma3.rope.freq_base"]?.doubleValue, 1_000_000)
        XCTAssertEqual(gguf["tokenizer.ggml.model"]?.stringValue, "llama")
        XCTAssertEqual(gguf["tokenizer.ggml.add_bos_token"]?.boolValue, true)
        XCTAssertEqual(gguf.metadataKeys.count, 33)
        XCTAssertEqual(try gguf["general.tags"]?.arrayValue?.strings(), ["gemma3", "gemma", "google", "text-generation"])

        let tokens = try XCTUnwrap(gguf["tokenizer.ggml.tokens"]?.arrayValue)
        XCTAssertEqual(tokens.elementType, .string)
        XCTAssertEqual(tokens.count, 262_144)
        XCTAssertEqual(Array(try tokens.strings().prefix(3)), ["<pad>", "<eos>", "<bos>"])
        XCTAssertEqual(try gguf["tokenizer.ggml.scores"]?.arrayValue?.floats().count, 262_144)
        XCTAssertEqual(Array(try XCTUnwrap(gguf["tokenizer.ggml.token_type"]?.arrayValue).integers().prefix(6)), [3, 3, 3, 3, 3, 4])
        XCTAssertThrowsError(try tokens.floats())

        XCTAssertEqual(gguf.tensors.count, 236)
        XCTAssertEqual(gguf.alignment, 32)
        XCTAssertEqual(gguf.dataOffset % 32, 0)
        let embd = try XCTUnwrap(gguf.tensor(named: "token_embd.weight"))
        XCTAssertEqual(embd.dimensions, [640, 262_144])
        XCTAssertEqual(embd.ggmlType, 8) // Q8_0
        XCTAssertEqual(embd.offset, 2560)
        let norm = try XCTUnwrap(gguf.tensor(named: "output_norm.weight"))
        XCTAssertEqual(norm, GGUFTensorInfo(name: "output_norm.weight", dimensions: [640], ggmlType: 0, offset: 0))
    }

    // MARK: Broken files

    private var directory: URL!

    override func setUpWithError() throws {
        directory = try temporaryDirectory("gguf")
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(at: directory)
    }

    /// A small valid GGUF v3: two metadata entries (a string, an array of arrays) and one f32 tensor.
    private func tinyGGUF() -> Data {
        var d = Data()
        func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { d.append(contentsOf: $0) } }
        func str(_ s: String) { u64(UInt64(s.utf8.count)); d.append(contentsOf: Array(s.utf8)) }
        d.append(contentsOf: Array("GGUF".utf8))
        u32(3); u64(1); u64(2)
        str("general.architecture"); u32(8); str("tiny")
        str("tiny.nested"); u32(9); u32(9); u64(2)       // array of 2 arrays
        u32(5); u64(2); u32(7); u32(UInt32(bitPattern: -8)) // [7, -8] int32
        u32(8); u64(1); str("x")                           // ["x"]
        str("w"); u32(2); u64(2); u64(3); u32(0); u64(0)  // f32 [2, 3] at 0
        while d.count % 32 != 0 { d.append(0) }
        d.append(Data(count: 24))
        return d
    }

    private func write(_ data: Data, _ name: String) throws -> URL {
        let url = directory.appendingPathComponent(name)
        try data.write(to: url)
        return url
    }

    func testTinyFile() throws {
        let gguf = try GGUFFile(url: try write(tinyGGUF(), "tiny.gguf"))
        XCTAssertEqual(gguf["general.architecture"]?.stringValue, "tiny")
        let nested = try XCTUnwrap(gguf["tiny.nested"]?.arrayValue).values()
        XCTAssertEqual(nested.count, 2)
        XCTAssertEqual(try nested[0].arrayValue?.integers(), [7, -8])
        XCTAssertEqual(try nested[1].arrayValue?.strings(), ["x"])
        XCTAssertEqual(gguf.tensors, [GGUFTensorInfo(name: "w", dimensions: [2, 3], ggmlType: 0, offset: 0)])
        XCTAssertEqual(gguf.dataOffset % 32, 0)
    }

    func testBadMagic() throws {
        var data = tinyGGUF()
        data[0] = UInt8(ascii: "X")
        let url = try write(data, "bad.gguf")
        XCTAssertThrowsError(try GGUFFile(url: url)) { error in
            let e = error as? FormatError
            XCTAssertEqual(e?.file, url.path)
            XCTAssertEqual(e?.item, "header.magic")
        }
    }

    func testUnsupportedVersion() throws {
        var data = tinyGGUF()
        data[4] = 9
        XCTAssertThrowsError(try GGUFFile(url: try write(data, "v9.gguf"))) { error in
            XCTAssertEqual((error as? FormatError)?.item, "header.version")
        }
    }

    /// Cutting the file anywhere in the header names what was being read there.
    func testTruncatedFiles() throws {
        let data = tinyGGUF()
        let cases: [(Int, String)] = [(0, "header.magic"), (6, "header.version"), (30, "metadata[0].key"),
                                      (60, "general.architecture"), (100, "tiny.nested"), (162, "w"),
                                      (186, "tensor data")]
        for (length, item) in cases {
            let url = try write(data.prefix(length), "cut\(length).gguf")
            XCTAssertThrowsError(try GGUFFile(url: url), "cut at \(length)") { error in
                let e = error as? FormatError
                XCTAssertEqual(e?.file, url.path)
                XCTAssertEqual(e?.item, item, "cut at \(length): \(error)")
                XCTAssertTrue(e?.message.contains("truncated") ?? false, "\(error)")
            }
        }
    }

    /// The real file cut after its vocabulary: the tensor infos are missing.
    func testTruncatedRealFile() throws {
        let source = try TestModels.path(TestModels.gemma3GGUFName)
        let handle = try FileHandle(forReadingFrom: source)
        let head = try XCTUnwrap(try handle.read(upToCount: 6_000_000))
        try handle.close()
        let url = try write(head, "head.gguf")
        XCTAssertThrowsError(try GGUFFile(url: url)) { error in
            let e = error as? FormatError
            XCTAssertEqual(e?.file, url.path)
            XCTAssertNotNil(e?.item)
        }
    }

    func testTokenizerFromBrokenVocabulary() throws {
        // A valid GGUF without tokenizer metadata: a typed error naming the key.
        let url = try write(tinyGGUF(), "novocab.gguf")
        XCTAssertThrowsError(try GemmaTokenizer.load(gguf: try GGUFFile(url: url))) { error in
            XCTAssertEqual(error as? TokenizerError,
                           .invalidValue(file: url.path, field: "tokenizer.ggml.model", message: "missing metadata key"))
        }
    }
}
