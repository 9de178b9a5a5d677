import AtomicFiles
import Foundation
import TestSupport
import XCTest

/// Names in `directory`, hidden ones (the writers' temporary siblings) included.
func entries(_ directory: URL) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: directory.path).sorted()
}

final class AtomicFileWriterTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory("atomic-file") }

    override func tearDownWithError() throws {
        chmod(dir.path, 0o755)
        try? FileManager.default.removeItem(at: dir)
    }

    func testWholeFileWriteReplacesTheContentAndLeavesNoTemporary() throws {
        let url = dir.appendingPathComponent("out.json")
        try AtomicFile.write(Data("old".utf8), to: url)
        try AtomicFile.write(Data("new content".utf8), to: url)
        XCTAssertEqual(try Data(contentsOf: url), Data("new content".utf8))
        XCTAssertEqual(try entries(dir), ["out.json"])
    }

    func testStreamedContentAppearsOnlyAtCommit() throws {
        let url = dir.appendingPathComponent("rows.jsonl")
        try AtomicFile.write(Data("old\n".utf8), to: url)
        let writer = try AtomicFileWriter(destination: url)
        var expected = Data()
        for i in 0..<5000 {  // small writes, gathered in the buffer, then one larger than the buffer
            try writer.write("{\"row\": \(i)}\n")
            expected += Data("{\"row\": \(i)}\n".utf8)
        }
        let large = VersionedContent.make(version: 3, size: 200_000)
        try writer.write(large)
        expected += large
        XCTAssertEqual(try Data(contentsOf: url), Data("old\n".utf8), "the destination changes only at commit")
        XCTAssertEqual(try entries(dir).count, 2, "the temporary sibling exists while writing")
        XCTAssertEqual(writer.temporaryURL.deletingLastPathComponent().path, dir.path, "temporary in the same directory")
        try writer.commit()
        XCTAssertEqual(try Data(contentsOf: url), expected)
        XCTAssertEqual(try entries(dir), ["rows.jsonl"])
    }

    func testAbandonedAndReleasedWritersRemoveTheirTemporary() throws {
        let url = dir.appendingPathComponent("out.bin")
        try AtomicFile.write(Data("old".utf8), to: url)
        let writer = try AtomicFileWriter(destination: url)
        try writer.write(Data("partial".utf8))
        writer.abandon()
        XCTAssertEqual(try entries(dir), ["out.bin"])
        do {
            let released = try AtomicFileWriter(destination: url)
            try released.write(Data("partial".utf8))
        }
        XCTAssertEqual(try entries(dir), ["out.bin"])
        XCTAssertEqual(try Data(contentsOf: url), Data("old".utf8))
    }

    func testProducerWritesTheTemporaryPathItself() throws {
        let url = dir.appendingPathComponent("index.faiss")
        try AtomicFile.write(to: url) { try Data("first".utf8).write(to: $0) }
        XCTAssertEqual(try Data(contentsOf: url), Data("first".utf8))
        struct Refused: Error {}
        XCTAssertThrowsError(try AtomicFile.write(to: url) { temporary in
            try Data("half".utf8).write(to: temporary)
            throw Refused()
        }) { XCTAssertTrue($0 is Refused, "the producer's own error, unchanged: \($0)") }
        XCTAssertEqual(try Data(contentsOf: url), Data("first".utf8))
        XCTAssertEqual(try entries(dir), ["index.faiss"])
    }

    /// Root ignores permission bits: then sysfs, where nobody may create files, is the unwritable directory.
    func testUnwritableDirectoryIsATypedErrorNamingThePath() throws {
        var unwritable = dir.appendingPathComponent("locked")
        if getuid() == 0 {
            unwritable = URL(fileURLWithPath: "/sys")
        } else {
            try FileManager.default.createDirectory(at: unwritable, withIntermediateDirectories: false)
            chmod(unwritable.path, 0o555)
        }
        let url = unwritable.appendingPathComponent("out.bin")
        XCTAssertThrowsError(try AtomicFile.write(Data("x".utf8), to: url)) { error in
            guard let error = error as? AtomicWriteError else { return XCTFail("not an AtomicWriteError: \(error)") }
            XCTAssertEqual(error.path, url.path)
            XCTAssertEqual(error.step, .createTemporary)
            XCTAssertEqual(error.code, EACCES)
            XCTAssertTrue(error.description.hasPrefix(url.path + ": "), error.description)
            XCTAssertTrue(error.description.contains(String(cString: strerror(EACCES))), error.description)
        }
        let missing = dir.appendingPathComponent("no/such/dir/out.bin")
        XCTAssertThrowsError(try AtomicFile.write(Data("x".utf8), to: missing)) { error in
            XCTAssertEqual((error as? AtomicWriteError)?.code, ENOENT, "\(error)")
            XCTAssertEqual((error as? AtomicWriteError)?.path, missing.path, "\(error)")
        }
    }

    /// A killed writer's temporary sibling is removed by the next writer; a live writer's is left alone.
    func testLeftoversOfDeadWritersAreRemovedAndLiveOnesKept() throws {
        let url = dir.appendingPathComponent("out.bin")
        let dead = try deadPID()
        let leftover = dir.appendingPathComponent(".out.bin.\(dead).abc123.tmp")
        let live = dir.appendingPathComponent(".out.bin.\(getppid()).def456.tmp")
        let unrelated = dir.appendingPathComponent(".other.bin.\(dead).abc123.tmp")
        for url in [leftover, live, unrelated] { try Data("x".utf8).write(to: url) }
        try AtomicFile.write(Data("new".utf8), to: url)
        XCTAssertEqual(try entries(dir), [live, unrelated, url].map(\.lastPathComponent).sorted())
    }
}

/// The pid of a process that has exited and been reaped.
func deadPID() throws -> pid_t {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/true")
    try process.run()
    process.waitUntilExit()
    return process.processIdentifier
}
