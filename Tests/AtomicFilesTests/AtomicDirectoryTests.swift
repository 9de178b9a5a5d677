import AtomicFiles
import Foundation
import TestSupport
import XCTest

final class AtomicDirectoryTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory("atomic-directory") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ destination: URL, _ files: [String: String], swap: AtomicDirectory.Swap = .exchange) throws {
        try AtomicDirectory.replace(destination, swap: swap) { temporary in
            for (name, content) in files { try Data(content.utf8).write(to: temporary.appendingPathComponent(name)) }
        }
    }

    func contents(_ directory: URL) throws -> [String: String] {
        var result: [String: String] = [:]
        for name in try entries(directory) {
            result[name] = String(decoding: try Data(contentsOf: directory.appendingPathComponent(name)), as: UTF8.self)
        }
        return result
    }

    func testReplaceSwapsAWholeNonEmptyDirectory() throws {
        for swap in [AtomicDirectory.Swap.exchange, .moveAside] {
            let head = dir.appendingPathComponent("head-\(swap)")
            try write(head, ["head.json": "1", "old-only.bin": "1"], swap: swap)
            try write(head, ["head.json": "2", "head.safetensors": "2"], swap: swap)
            XCTAssertEqual(try contents(head), ["head.json": "2", "head.safetensors": "2"], "\(swap)")
        }
        XCTAssertEqual(try entries(dir), ["head-exchange", "head-moveAside"], "no temporary or old siblings left")
    }

    func testAFailingBuildLeavesTheOldVersionAndNoTemporary() throws {
        let head = dir.appendingPathComponent("head")
        try write(head, ["head.json": "1"])
        struct Refused: Error {}
        XCTAssertThrowsError(try AtomicDirectory.replace(head) { temporary in
            try Data("2".utf8).write(to: temporary.appendingPathComponent("head.json"))
            throw Refused()
        }) { XCTAssertTrue($0 is Refused, "\($0)") }
        XCTAssertEqual(try contents(head), ["head.json": "1"])
        XCTAssertEqual(try entries(dir), ["head"])
    }

    /// What a writer killed between its two renames leaves when the file system cannot exchange.
    func testRecoverPutsBackAVersionADeadWriterMovedAside() throws {
        let head = dir.appendingPathComponent("head")
        let dead = try deadPID()
        let aside = dir.appendingPathComponent(".head.\(dead).1a2b.old")
        let unfinished = dir.appendingPathComponent(".head.\(dead).3c4d.tmp")
        try write(aside, ["head.json": "old"])
        try write(unfinished, ["head.json": "half"])
        try AtomicDirectory.recover(head)
        XCTAssertEqual(try contents(head), ["head.json": "old"])
        XCTAssertEqual(try entries(dir), ["head"])
        try write(head, ["head.json": "new"])
        XCTAssertEqual(try contents(head), ["head.json": "new"])
    }

    func testPublishMovesABuiltDirectoryFromElsewhereOnTheFileSystem() throws {
        let target = dir.appendingPathComponent("models/tiny")
        try FileManager.default.createDirectory(at: target, withIntermediateDirectories: true)
        try Data("stale".utf8).write(to: target.appendingPathComponent("config.json"))
        let built = dir.appendingPathComponent("staging/unpacked")
        try FileManager.default.createDirectory(at: built.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try Data("fresh".utf8).write(to: built.appendingPathComponent("config.json"))
        try Data("w".utf8).write(to: built.appendingPathComponent("sub/weights.bin"))
        try AtomicDirectory.publish(built, at: target)
        XCTAssertEqual(try Data(contentsOf: target.appendingPathComponent("config.json")), Data("fresh".utf8))
        XCTAssertEqual(try Data(contentsOf: target.appendingPathComponent("sub/weights.bin")), Data("w".utf8))
        XCTAssertFalse(FileManager.default.fileExists(atPath: built.path), "the old version is removed")
        XCTAssertEqual(try entries(dir.appendingPathComponent("models")), ["tiny"])
    }

    func testUnwritableParentIsATypedErrorNamingThePath() throws {
        let head = URL(fileURLWithPath: "/sys/gemma-encoder-head")
        guard getuid() == 0 else {
            let locked = dir.appendingPathComponent("locked")
            try FileManager.default.createDirectory(at: locked, withIntermediateDirectories: false)
            chmod(locked.path, 0o555)
            defer { chmod(locked.path, 0o755) }
            return try assertUnwritable(locked.appendingPathComponent("head"))
        }
        try assertUnwritable(head)
    }

    private func assertUnwritable(_ head: URL) throws {
        XCTAssertThrowsError(try write(head, ["head.json": "1"])) { error in
            guard let error = error as? AtomicWriteError else { return XCTFail("not an AtomicWriteError: \(error)") }
            XCTAssertEqual(error.path, head.path)
            XCTAssertEqual(error.step, .createDirectory)
            // sysfs refuses mkdir with EPERM, a read-only directory with EACCES.
            XCTAssertTrue([EACCES, EPERM].contains(error.code), error.description)
            XCTAssertTrue(error.description.contains(String(cString: strerror(error.code))), error.description)
        }
    }
}
