import Foundation
import TestSupport
import XCTest

/// Token-id fixtures in Tests/Fixtures/tokenizer (the real tokenizers come from TestModels).
enum Fixtures {
    static let directory = fixturesDirectory.appendingPathComponent("tokenizer")

    struct Row { let text: String; let ids: [Int32] }

    /// Rows of a `{"text", "ids"}` JSON-lines fixture.
    static func rows(_ name: String) throws -> [Row] {
        let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let ids = try XCTUnwrap(obj["ids"] as? [Int]).map(Int32.init)
            return Row(text: try XCTUnwrap(obj["text"] as? String), ids: ids)
        }
    }
}
