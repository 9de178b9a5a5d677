import Foundation
import ModelFormats
import TestSupport
import XCTest

/// Headers crafted to overflow the size arithmetic (a length of 2^64 − 1, a shape whose element count
/// overflows, offsets near Int.max, a tensor count the file cannot hold, arrays nested past any real
/// file): each is a FormatError naming the file, never a trap or a huge allocation.
final class CraftedHeaderTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory("crafted") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func le<T: FixedWidthInteger>(_ v: T) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }

    private func safetensors(length: UInt64? = nil, header: String, data: Int = 0) throws -> URL {
        let url = dir.appendingPathComponent("model-\(UUID().uuidString).safetensors")
        var d = le(length ?? UInt64(header.utf8.count))
        d.append(Data(header.utf8))
        d.append(Data(count: data))
        try d.write(to: url)
        return url
    }

    private func assertFormatError(_ body: @autoclosure () throws -> Any, _ url: URL, _ words: String, line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { error in
            guard let e = error as? FormatError else { return XCTFail("\(error)", line: line) }
            XCTAssertEqual(e.file, url.path, line: line)
            XCTAssertTrue("\(e)".contains(words), "\(e)", line: line)
        }
    }

    func testSafetensorsSizesThatOverflow() throws {
        var url = try safetensors(length: UInt64.max, header: "{}")
        assertFormatError(try SafetensorsFile(url: url), url, "corrupt header")
        url = try safetensors(length: 1 << 63, header: "{}")
        assertFormatError(try SafetensorsFile(url: url), url, "corrupt header")
        // Element counts whose product overflows Int, with offsets that agree with nothing.
        url = try safetensors(header: #"{"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 16]}}"#, data: 16)
        assertFormatError(try SafetensorsFile(url: url), url, "does not match shape")
        url = try safetensors(header: #"{"w": {"dtype": "F32", "shape": [2305843009213693952], "data_offsets": [0, 8]}}"#, data: 8)
        assertFormatError(try SafetensorsFile(url: url), url, "does not match shape")
        // Two tensors over the same bytes.
        url = try safetensors(header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}"#, data: 12)
        assertFormatError(try SafetensorsFile(url: url), url, "b: corrupt header: its data overlaps that of a")
        url = try safetensors(header: #"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}, "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}}"#, data: 12)
        XCTAssertEqual(try SafetensorsFile(url: url).tensors.count, 3, "adjacent tensors and an empty one are fine")
        // An end offset near Int.max: the addition to the header's end would overflow.
        url = try safetensors(header: #"{"w": {"dtype": "U8", "shape": [9223372036854775807], "data_offsets": [0, 9223372036854775807]}}"#, data: 8)
        XCTAssertThrowsError(try SafetensorsFile(url: url)) { error in
            XCTAssertEqual((error as? FormatError)?.file, url.path, "\(error)")
        }
    }

    /// A GGUF file: magic, version 3, tensor count, metadata count, then `rest`.
    private func gguf(tensors: UInt64, metadata: UInt64, _ rest: Data = Data()) throws -> URL {
        let url = dir.appendingPathComponent("model-\(UUID().uuidString).gguf")
        var d = le(UInt32(0x4655_4747))
        d.append(le(UInt32(3)))
        d.append(le(tensors))
        d.append(le(metadata))
        d.append(rest)
        try d.write(to: url)
        return url
    }

    func testGGUFCountsAndNestingThatCannotBeReal() throws {
        // 2^47 tensors in a 24-byte file: nothing is reserved for them; the first missing info is named.
        var url = try gguf(tensors: 1 << 47, metadata: 0)
        assertFormatError(try GGUFFile(url: url), url, "truncated")
        // An array of one array of one array … 5,000 levels deep (12 bytes a level).
        var nested = le(UInt64(3)) + Data("key".utf8) + le(UInt32(9))
        for _ in 0..<5_000 { nested += le(UInt32(9)) + le(UInt64(1)) }
        nested += le(UInt32(4)) + le(UInt64(1)) + le(UInt32(7))
        url = try gguf(tensors: 0, metadata: 1, nested)
        assertFormatError(try GGUFFile(url: url), url, "nested deeper")
    }
}
