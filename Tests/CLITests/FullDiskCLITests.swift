import Foundation
import TestSupport
import XCTest

/// Writers on a full filesystem (a tmpfs of 2 MB): a clear "no space" error, a non-zero exit, and the
/// previous state intact and usable.
extension CLITests {
    /// Mounts a 2 MB tmpfs at `url` for `body`; skips where mounting is not permitted (not root, no
    /// CAP_SYS_ADMIN).
    func withSmallFilesystem(_ url: URL, _ body: () throws -> Void) throws {
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        func run(_ arguments: [String]) -> Int32 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = arguments
            p.standardError = FileHandle.nullDevice
            guard (try? p.run()) != nil else { return -1 }
            p.waitUntilExit()
            return p.terminationStatus
        }
        try XCTSkipUnless(run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", url.path]) == 0,
                          "mounting a small tmpfs is not permitted here")
        defer { _ = run(["umount", url.path]) }
        try body()
    }

    func testWritersOnAFullFilesystemKeepThePreviousState() throws {
        let model = try tinyEncoderDirectory(in: dir).path
        let small = dir.appendingPathComponent("small")
        let shortRows = (0..<20).map { #"{"id": "s\#($0)", "text": "short text \#($0)"}"# }
        let longText = String(repeating: "archive compress editor mail server game ", count: 200)  // 8 KB
        let longRows = (0..<400).map { #"{"id": "l\#($0)", "text": "\#(longText) \#($0)"}"# }
        let short = try write("short.jsonl", shortRows.joined(separator: "\n") + "\n")
        let long = try write("long.jsonl", longRows.joined(separator: "\n") + "\n")
        try withSmallFilesystem(small) {
            let index = small.appendingPathComponent("idx").path
            let build = try Tool.run(["index", "build", "--index", index, "--model", model, "--corpus", short, "--factory", "Flat"])
            XCTAssertEqual(build.status, 0, build.stderr)
            let add = try Tool.run(["index", "add", "--index", index, "--corpus", long])
            XCTAssertNotEqual(add.status, 0, "3.2 MB of documents do not fit in 2 MB")
            XCTAssertTrue(add.stderr.lowercased().contains("full") || add.stderr.contains("No space left"), add.stderr)
            XCTAssertFalse(add.stderr.contains("Fatal error"), add.stderr)
            let info = try Tool.run(["index", "info", "--index", index])
            XCTAssertEqual(info.status, 0, info.stderr)
            XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])?["count"] as? Int, 20)
            let search = try Tool.run(["search", "--index", index, "--json", "short text 7"])
            XCTAssertEqual(search.status, 0, search.stderr)
            XCTAssertTrue(search.stdout.contains("\"s7\""), search.stdout)

            // embed --output: the previous file stays whole when the new one does not fit.
            let out = small.appendingPathComponent("vectors.npy").path
            let first = try Tool.run(["embed", "--model", model, "--input", short, "--output", out])
            XCTAssertEqual(first.status, 0, first.stderr)
            let before = try Data(contentsOf: URL(fileURLWithPath: out))
            let filler = small.appendingPathComponent("filler")
            // Leave less room than the new output needs.
            try? Data(count: 2 << 20).write(to: filler)
            let second = try Tool.run(["embed", "--model", model, "--input", long, "--output", out])
            XCTAssertNotEqual(second.status, 0)
            XCTAssertTrue(second.stderr.contains("No space left") || second.stderr.lowercased().contains("full"), second.stderr)
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), before, "the previous output is intact")
            try? FileManager.default.removeItem(at: filler)
        }
    }
}
