import Foundation
import ModelFormats
import XCTest

final class SHA256Tests: XCTestCase {
    func digest(_ s: String) -> String {
        var h = SHA256()
        h.update(s)
        return h.hexDigest()
    }

    /// FIPS 180-4 examples, and a message that crosses the 56-byte padding boundary.
    func testKnownVectors() {
        XCTAssertEqual(digest(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        XCTAssertEqual(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        XCTAssertEqual(digest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
                       "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        XCTAssertEqual(digest(String(repeating: "a", count: 1000)),
                       "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3")
    }

    /// Updates of any split give the digest of the whole; the file digest reads through the mapping.
    func testSplitUpdatesAndFiles() throws {
        let bytes = (0..<200_003).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 7) }
        var whole = SHA256()
        whole.update(bytes)
        let expected = whole.hexDigest()
        for split in [1, 63, 64, 65, 4096, 100_001] {
            var h = SHA256()
            var start = 0
            while start < bytes.count {
                let end = min(bytes.count, start + split)
                h.update(bytes[start..<end])
                start = end
            }
            XCTAssertEqual(h.hexDigest(), expected, "split \(split)")
        }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sha-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: url) }
        try Data(bytes).write(to: url)
        XCTAssertEqual(try SHA256.hexDigest(ofFile: url), expected)
    }
}
