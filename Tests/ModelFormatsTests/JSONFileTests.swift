import Foundation
import ModelFormats
import XCTest

/// Config files and request bodies name a bad field by its coding path, the same way everywhere.
final class JSONFileTests: XCTestCase {
    struct Item: Decodable { var name: String }
    struct Root: Decodable { var items: [Item]; var size: Int }

    func item(_ json: String) -> String? {
        do {
            _ = try JSONFile.decode(Root.self, from: Data(json.utf8), file: "x.json")
            return nil
        } catch {
            XCTAssertEqual(error.file, "x.json")
            return error.item ?? "(no item: \(error.message))"
        }
    }

    func testCodingPaths() {
        XCTAssertEqual(item(#"{"items": [{"name": "a"}, {"name": 3}], "size": 1}"#), "items[1].name")
        XCTAssertEqual(item(#"{"items": [{"name": "a"}, {}], "size": 1}"#), "items[1].name")
        XCTAssertEqual(item(#"{"items": []}"#), "size")
        XCTAssertEqual(item(#"{"items": [], "size": null}"#), "size")
        XCTAssertNil(item(#"{"items": [], "size": 2}"#))
    }

    func testNotJSONNamesTheFile() {
        XCTAssertThrowsError(try JSONFile.decode(Root.self, from: Data("{".utf8), file: "x.json")) { error in
            let e = error as! FormatError
            XCTAssertNil(e.item)
            XCTAssertTrue(e.message.hasPrefix("not valid JSON"), e.message)
        }
        XCTAssertThrowsError(try JSONFile.decode(Root.self, from: URL(fileURLWithPath: "/nonexistent/x.json"))) { error in
            XCTAssertTrue((error as! FormatError).message.hasPrefix("cannot read"), "\(error)")
        }
    }
}
