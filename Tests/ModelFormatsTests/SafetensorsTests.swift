import Foundation
import ModelFormats
import TestSupport
import XCTest

final class SafetensorsTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = try temporaryDirectory("st")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testReadsF32BF16AndF16() throws {
        let url = dir.appendingPathComponent("model.safetensors")
        // F16 bit patterns: 1.0 = 0x3C00, -2.5 = 0xC100, 65504 = 0x7BFF, smallest subnormal 2^-24 = 0x0001.
        let f16: [UInt8] = [0x00, 0x3C, 0x00, 0xC1, 0xFF, 0x7B, 0x01, 0x00]
        try writeSafetensors(url, [("a", "F32", [2, 2], f32Bytes([1, -2, 3.5, 0.25])),
                                   ("b", "BF16", [3], bf16Bytes([1, -0.5, 256])),
                                   ("c", "F16", [4], f16)])
        let file = try SafetensorsFile(url: url)
        XCTAssertEqual(file.tensors["a"]?.floats().array, [1, -2, 3.5, 0.25])
        XCTAssertEqual(file.tensors["b"]?.floats().array, [1, -0.5, 256])
        XCTAssertEqual(file.tensors["c"]?.floats().array, [1, -2.5, 65504, 5.9604645e-08])
        XCTAssertEqual(file.tensors["a"]?.shape, [2, 2])
    }

    func testShardedCheckpointWithIndex() throws {
        try writeSafetensors(dir.appendingPathComponent("model-00001-of-00002.safetensors"), [("x", "F32", [1], f32Bytes([7]))])
        try writeSafetensors(dir.appendingPathComponent("model-00002-of-00002.safetensors"), [("y", "F32", [2], f32Bytes([8, 9]))])
        let index = #"{"metadata": {}, "weight_map": {"x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}}"#
        try index.write(to: dir.appendingPathComponent("model.safetensors.index.json"), atomically: true, encoding: .utf8)
        let checkpoint = try SafetensorsCheckpoint(url: dir)
        XCTAssertEqual(checkpoint.files.count, 2)
        XCTAssertEqual(try checkpoint.tensor("x").floats().array, [7])
        XCTAssertEqual(try checkpoint.tensor("y", shape: [2]).floats().array, [8, 9])
    }

    func testTruncatedFileNamesFileAndTensor() throws {
        let url = dir.appendingPathComponent("model.safetensors")
        try writeSafetensors(url, [("w", "F32", [4], f32Bytes([1, 2, 3, 4]))])
        let full = try Data(contentsOf: url)
        try full.prefix(full.count - 4).write(to: url)
        XCTAssertThrowsError(try SafetensorsFile(url: url)) { error in
            let e = error as! FormatError
            XCTAssertEqual(e.file, url.path)
            XCTAssertEqual(e.item, "w")
            XCTAssertTrue(e.message.contains("truncated"), e.description)
        }
        try Data([1, 2, 3]).write(to: url)
        XCTAssertThrowsError(try SafetensorsFile(url: url)) { error in
            XCTAssertTrue((error as! FormatError).message.contains("truncated"))
        }
    }

    func testCorruptHeader() throws {
        let url = dir.appendingPathComponent("model.safetensors")
        try writeSafetensors(url, [], headerOverride: "{not json")
        XCTAssertThrowsError(try SafetensorsFile(url: url)) { error in
            XCTAssertTrue((error as! FormatError).message.contains("corrupt header"))
        }
        // A declared header length beyond the end of the file.
        var d = withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Data($0) }
        d.append(contentsOf: [0x7B, 0x7D])
        try d.write(to: url)
        XCTAssertThrowsError(try SafetensorsFile(url: url)) { error in
            XCTAssertTrue((error as! FormatError).message.contains("corrupt header"))
        }
        try writeSafetensors(url, [("w", "I64", [1], [0, 0, 0, 0, 0, 0, 0, 0])])
        XCTAssertThrowsError(try SafetensorsFile(url: url)) { error in
            XCTAssertEqual((error as! FormatError).item, "w")
        }
    }

    func testMissingTensorAndWrongShape() throws {
        let url = dir.appendingPathComponent("model.safetensors")
        try writeSafetensors(url, [("w", "F32", [2], f32Bytes([1, 2]))])
        let checkpoint = try SafetensorsCheckpoint(url: url)
        XCTAssertThrowsError(try checkpoint.tensor("v")) { error in
            XCTAssertEqual(error as? FormatError, FormatError(file: url.path, item: "v", message: "missing tensor"))
        }
        XCTAssertThrowsError(try checkpoint.tensor("w", shape: [3])) { error in
            let e = error as! FormatError
            XCTAssertEqual(e.item, "w")
            XCTAssertTrue(e.message.contains("does not match"), e.description)
        }
    }

    func testMissingFile() {
        XCTAssertThrowsError(try SafetensorsCheckpoint(url: dir.appendingPathComponent("nope")))
        XCTAssertThrowsError(try SafetensorsCheckpoint(url: dir)) { error in
            XCTAssertTrue((error as! FormatError).message.contains("no model.safetensors"))
        }
    }
}
