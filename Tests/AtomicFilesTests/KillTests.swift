import AtomicFiles
import Foundation
#if canImport(Glibc)
import Glibc
#endif
import TestSupport
import XCTest

/// The built `atomic-write-helper` (beside the test bundle, like the CLI in CLITests).
enum Helper {
    static let binary: URL = {
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("atomic-write-helper").path), dir.path != "/" {
            dir.deleteLastPathComponent()
        }
        return dir.appendingPathComponent("atomic-write-helper")
    }()

    static func start(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        try process.run()
        return process
    }

    static func run(_ arguments: [String]) throws -> Int32 {
        let process = try start(arguments)
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// SIGKILL after `delay`: no handler, no cleanup, as a crash or the OOM killer would end it.
    static func kill(_ process: Process, after delay: TimeInterval) {
        Thread.sleep(forTimeInterval: delay)
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

/// A writer killed at random moments, again and again: the destination must hold exactly one complete
/// version (the old one or a newer one) every time, never a mix, never nothing.
final class KillTests: XCTestCase {
    var dir: URL!
    let kills = 20

    override func setUpWithError() throws {
        XCTAssertTrue(FileManager.default.fileExists(atPath: Helper.binary.path), "build first: \(Helper.binary.path)")
        dir = try temporaryDirectory("atomic-kill")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testKilledFileWriterLeavesTheOldOrTheNewContent() throws {
        let size = 4 << 20
        let url = dir.appendingPathComponent("output.bin")
        try AtomicFile.write(VersionedContent.make(version: 0, size: size), to: url)
        try killRepeatedly(mode: "file", url: url, size: size) { try self.fileVersion(url, size: size) }
    }

    func testKilledDirectoryWriterLeavesTheOldOrTheNewDirectory() throws {
        let size = 1 << 20
        let url = dir.appendingPathComponent("head")
        XCTAssertEqual(try Helper.run(["directory", url.path, "\(size)", "0", "1"]), 0)
        try killRepeatedly(mode: "directory", url: url, size: size) { try self.directoryVersion(url, size: size) }
    }

    /// Without RENAME_EXCHANGE a kill can fall between the two renames; the recovery every writer (and a head
    /// reader) runs first must bring the old version back.
    func testKilledMoveAsideWriterIsRecovered() throws {
        let size = 1 << 20
        let url = dir.appendingPathComponent("head")
        XCTAssertEqual(try Helper.run(["directory", url.path, "\(size)", "0", "1", "move-aside"]), 0)
        try killRepeatedly(mode: "directory", url: url, size: size, extra: ["move-aside"]) {
            try AtomicDirectory.recover(url)
            return try self.directoryVersion(url, size: size)
        }
    }

    /// Kills a writer `kills` times at 0–300 ms; after each, `version` must name one complete version, no
    /// older than the one seen before. Kills that land mid-write (a temporary sibling remains) must occur,
    /// and newer versions must appear, or the test proved nothing.
    private func killRepeatedly(mode: String, url: URL, size: Int, extra: [String] = [],
                                version: () throws -> Int?) throws {
        var last = try XCTUnwrap(try version(), "initial content")
        var midWrite = 0
        for kill in 0..<kills {
            let delay = Double.random(in: 0...0.3)
            let writer = try Helper.start([mode, url.path, "\(size)", "\(last + 1)"] + extra)
            Helper.kill(writer, after: delay)
            XCTAssertEqual(writer.terminationReason, .uncaughtSignal, "kill \(kill): the writer ended before the kill")
            if try entries(dir).count > 1 { midWrite += 1 }
            let seen = try XCTUnwrap(try version(), "kill \(kill) after \(Int(delay * 1000)) ms: no complete version at \(url.path)")
            XCTAssertGreaterThanOrEqual(seen, last, "kill \(kill): went back to an older version")
            last = seen
        }
        XCTAssertGreaterThan(midWrite, 0, "no kill landed mid-write")
        XCTAssertGreaterThan(last, 0, "no new version was ever committed")
        // The next writer removes what the killed ones left.
        XCTAssertEqual(try Helper.run([mode, url.path, "\(size)", "\(last + 1)", "1"] + extra), 0)
        XCTAssertEqual(try version(), last + 1)
        XCTAssertEqual(try entries(dir), [url.lastPathComponent])
    }

    private func fileVersion(_ url: URL, size: Int) throws -> Int? {
        guard let data = try? Data(contentsOf: url) else { return nil }
        return VersionedContent.version(of: data, size: size)
    }

    /// The version all three files hold, or nil when one is missing, torn, or of another version.
    private func directoryVersion(_ url: URL, size: Int) throws -> Int? {
        guard (try? entries(url)) == ["a.bin", "b.bin", "c.bin"] else { return nil }
        let versions = try ["a.bin", "b.bin", "c.bin"].map { try fileVersion(url.appendingPathComponent($0), size: size) }
        return Set(versions).count == 1 ? versions[0] : nil
    }
}
