import Foundation
import TestSupport
import XCTest

/// `embed --input - --output -`: the binary as a streaming worker (a Spark partition piped through it).
extension CLITests {
    /// Rows of token ids (the tiny model's vocabulary has 320 tokens), each with an id: strings, integers, or
    /// none, so that the id shows which input an output row answers.
    private func idRows(_ range: Range<Int>) -> [String] {
        range.map { i in
            let ids = (0..<(3 + i % 17)).map { String(2 + (i * 7 + $0 * 13) % 300) }.joined(separator: ",")
            switch i % 3 {
            case 0: return "{\"id\":\"doc-\(i)\",\"ids\":[\(ids)]}"
            case 1: return "{\"id\":\(i),\"ids\":[\(ids)]}"
            default: return "{\"ids\":[\(ids)]}"
            }
        }
    }

    private func outputRows(_ stdout: String) throws -> [[String: Any]] {
        try stdout.split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
    }

    /// 600 rows (three groups of up to 256) on standard input come out on standard output one per input, in
    /// input order, ids carried through as given; the same rows read in reverse order from a file give the same
    /// vectors (each row's vector depends on that row alone, whatever group it was embedded in).
    func testStreamingEmbedKeepsOrderAndIds() throws {
        let model = try tinyModel()
        let rows = idRows(0..<600)
        let r = try Tool.run(["embed", "--model", model, "--input", "-", "--output", "-"],
                             stdin: Data((rows.joined(separator: "\n") + "\n").utf8))
        XCTAssertEqual(r.status, 0, r.stderr)
        let out = try outputRows(r.stdout)
        XCTAssertEqual(out.count, 600)
        for (i, row) in out.enumerated() {
            switch i % 3 {
            case 0: XCTAssertEqual(row["id"] as? String, "doc-\(i)")
            case 1: XCTAssertEqual((row["id"] as? NSNumber)?.intValue, i)
                XCTAssertFalse(row["id"] is String, "an integer id stays an integer")
            default: XCTAssertNil(row["id"])
            }
        }
        let reversed = try write("reversed.jsonl", rows.reversed().joined(separator: "\n"))
        let file = dir.appendingPathComponent("reversed-out.jsonl").path
        let f = try Tool.run(["embed", "--model", model, "--input", reversed, "--output", file])
        XCTAssertEqual(f.status, 0, f.stderr)
        let back = try outputRows(try String(contentsOfFile: file, encoding: .utf8))
        XCTAssertEqual(back.count, 600)
        var worst = 0.0
        for (i, row) in out.enumerated() {
            let a = row["embedding"] as! [Double], b = back[599 - i]["embedding"] as! [Double]
            XCTAssertEqual(a.count, 64)
            worst = max(worst, zip(a, b).map { abs($0 - $1) }.max()!)
        }
        XCTAssertLessThan(worst, 1e-5)
    }

    /// A bad row in the middle of a stream: exit status 1, the line number on stderr, and on standard output
    /// exactly the rows before it, in order.
    func testStreamingEmbedStopsAtTheFirstBadRow() throws {
        let model = try tinyModel()
        let rows = idRows(0..<300) + ["{\"id\":\"bad\",\"text\":42}"] + idRows(301..<400)
        let r = try Tool.run(["embed", "--model", model, "--input", "-", "--output", "-"],
                             stdin: Data(rows.joined(separator: "\n").utf8))
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("stdin:301: field \"text\" must be a string"), r.stderr)
        let out = try outputRows(r.stdout)
        XCTAssertEqual(out.count, 300)
        XCTAssertEqual(out[297]["id"] as? String, "doc-297")
        XCTAssertNil(out[299]["id"])
        let badID = try Tool.run(["embed", "--model", model, "--input", "-", "--output", "-"],
                                 stdin: Data("{\"id\":[1],\"ids\":[2]}\n".utf8))
        XCTAssertEqual(badID.status, 1)
        XCTAssertTrue(badID.stderr.contains("stdin:1: field \"id\" must be a string or an integer"), badID.stderr)
    }

    /// `--format npy`: the vectors of the JSON Lines output as float32 N×D (the header's row count written at the
    /// end of the stream), the ids beside them in FILE.ids.jsonl, one per row, null where a row has none.
    func testStreamingEmbedToNpyWithIdsBeside() throws {
        let model = try tinyModel()
        let rows = idRows(0..<300).joined(separator: "\n")
        let jsonl = try Tool.run(["embed", "--model", model, "--input", "-", "--output", "-"], stdin: Data(rows.utf8))
        let expected = try outputRows(jsonl.stdout)
        let npy = dir.appendingPathComponent("vectors.bin").path
        let r = try Tool.run(["embed", "--model", model, "--input", "-", "--output", npy, "--format", "npy"], stdin: Data(rows.utf8))
        XCTAssertEqual(r.status, 0, r.stderr)
        let data = try Data(contentsOf: URL(fileURLWithPath: npy))
        let headerLength = Int(data[8]) | Int(data[9]) << 8
        let header = String(decoding: data[10..<(10 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.contains("'shape': (300, 64)"), header)
        XCTAssertEqual((10 + headerLength) % 64, 0)
        XCTAssertEqual(data.count, 10 + headerLength + 300 * 64 * 4)
        let vectors = data.dropFirst(10 + headerLength).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        for (i, row) in expected.enumerated() {
            XCTAssertEqual((row["embedding"] as! [Double]).map(Float.init), Array(vectors[(i * 64)..<((i + 1) * 64)]), "row \(i)")
        }
        let ids = try String(contentsOfFile: dir.appendingPathComponent("vectors.bin.ids.jsonl").path, encoding: .utf8)
            .split(separator: "\n").map(String.init)
        XCTAssertEqual(ids.count, 300)
        XCTAssertEqual(Array(ids.prefix(3)), ["\"doc-0\"", "1", "null"])
        let toStdout = try Tool.run(["embed", "--model", model, "--input", "-", "--output", "-", "--format", "npy"], stdin: Data(rows.utf8))
        XCTAssertNotEqual(toStdout.status, 0)
        XCTAssertTrue(toStdout.stderr.contains("--format npy needs --input and --output FILE.npy"), toStdout.stderr)
    }

    /// Bounded memory however long the stream: ten times the rows (each carrying 20 KB the tool ignores, 100 MB
    /// in all) raise the peak resident memory by far less than the input's size (reading the input whole, as
    /// the tool did before, added more than the 100 MB).
    func testStreamingEmbedMemoryIsBounded() throws {
        let model = try tinyModel()
        let padding = String(repeating: "x", count: 20_000)
        func peak(rows: Int) throws -> Int {
            let input = dir.appendingPathComponent("stream-\(rows).jsonl")
            FileManager.default.createFile(atPath: input.path, contents: nil)
            let handle = try FileHandle(forWritingTo: input)
            for start in stride(from: 0, to: rows, by: 500) {
                let lines = idRows(start..<min(start + 500, rows)).map { $0.dropLast() + ",\"pad\":\"\(padding)\"}\n" }
                handle.write(Data(lines.joined().utf8))
            }
            try handle.close()
            let (status, kib) = try spawnMeasuringPeakMemory(["embed", "--model", model, "--input", "-", "--output", "-"],
                                                             stdin: input, stdout: dir.appendingPathComponent("stream-out.jsonl"))
            XCTAssertEqual(status, 0)
            try FileManager.default.removeItem(at: input)
            return kib
        }
        let small = try peak(rows: 500), large = try peak(rows: 5_000)
        print("peak resident memory: 500 rows \(small / 1024) MiB, 5,000 rows (100 MB of input) \(large / 1024) MiB")
        XCTAssertLessThan(large - small, 32 * 1024, "500 rows: \(small) KiB, 5,000 rows: \(large) KiB")
    }

    /// Runs the tool with standard input and output redirected to files, and returns its exit status and peak
    /// resident memory (KiB, from wait4's rusage, which Foundation's Process does not report).
    private func spawnMeasuringPeakMemory(_ arguments: [String], stdin: URL, stdout: URL) throws -> (Int32, Int) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, stdin.path, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let argv = ([Tool.binary.path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, Tool.binary.path, &actions, nil, argv, environ)
        guard spawned == 0 else { throw NSError(domain: "posix_spawn", code: Int(spawned)) }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        return ((status >> 8) & 0xFF, usage.ru_maxrss)
    }
}
