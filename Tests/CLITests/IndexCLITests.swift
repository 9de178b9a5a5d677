import Foundation
import TestSupport
import XCTest

/// The index commands: build (killed and resumed), add, delete, info.
extension CLITests {
    /// `index build` killed with SIGKILL mid-way: the previous index still answers, a re-run embeds only
    /// what was not committed, and search in every mode then works.
    func testKilledIndexBuildResumes() throws {
        let corpusLines = try debianCorpusLines(120)
        let corpus = try write("corpus.jsonl", corpusLines.joined(separator: "\n") + "\n")
        let index = dir.appendingPathComponent("idx").path
        func committed() -> Int { storedDocumentCount(index) }
        let killed = try Tool.runAndKill(["index", "build", "--index", index, "--corpus", corpus, "--batch", "8"],
                                         seconds: 120, poll: 0.1) { committed() >= 16 }
        XCTAssertTrue(killed, "the build finished before it could be killed; make the corpus larger")
        let done = committed()
        XCTAssertGreaterThanOrEqual(done, 16)
        XCTAssertLessThan(done, 120)

        let during = try Tool.run(["search", "--index", index, "--json", "text editor"])
        XCTAssertEqual(during.status, 0, during.stderr)
        let resumed = try Tool.run(["index", "build", "--index", index, "--corpus", corpus, "--batch", "8"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("120 documents (\(120 - done) embedded now)"), resumed.stderr)
        for mode in ["vector", "keyword", "hybrid"] {
            let r = try Tool.run(["search", "--index", index, "--mode", mode, "-k", "3", "--json", "real-time strategy game"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
            let results = object["results"] as! [[String: Any]]
            XCTAssertEqual(results.count, 3, mode)
            XCTAssertEqual(results.first?["id"] as? String, "0ad", mode)
            XCTAssertNotNil((results.first?["metadata"] as? [String: Any])?["section"], mode)
        }
        let queries = try write("q.jsonl", "{\"id\": \"q1\", \"text\": \"strategy game\"}\n{\"id\": 2, \"text\": \"mail server\"}\n")
        let out = dir.appendingPathComponent("results.jsonl").path
        let batch = try Tool.run(["search", "--index", index, "--input", queries, "--output", out, "-k", "2"])
        XCTAssertEqual(batch.status, 0, batch.stderr)
        let rows = try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(rows.count, 2)
        XCTAssertTrue(rows[0].contains("\"id\":\"q1\""), String(rows[0]))
    }

    /// `index tune` fits hybrid search to labelled queries: it prints every candidate's nDCG@10, stores the best in
    /// the manifest (not with --dry-run; --reset removes it), and `search` without --mode then runs the best mode.
    func testIndexTuneStoresAFusion() throws {
        let lines = try debianCorpusLines(12)
        let corpus = try write("corpus.jsonl", lines.joined(separator: "\n") + "\n")
        let index = dir.appendingPathComponent("idx").path
        let build = try Tool.run(["index", "build", "--index", index, "--corpus", corpus, "--factory", "Flat"])
        XCTAssertEqual(build.status, 0, build.stderr)
        let rows = try lines.prefix(6).map { line -> String in
            let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let words = (doc["text"] as? String ?? "").split(separator: " ").prefix(5).joined(separator: " ")
            let row: [String: Any] = ["id": "q\(doc["id"]!)", "text": words, "relevant": [doc["id"]!]]
            return String(decoding: try JSONSerialization.data(withJSONObject: row), as: UTF8.self)
        }
        let queries = try write("queries.jsonl", rows.joined(separator: "\n") + "\n")
        func fusion() throws -> [String: Any]? {
            let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: index + "/manifest.json"))) as? [String: Any]
            return manifest?["fusion"] as? [String: Any]
        }
        let dry = try Tool.run(["index", "tune", "--index", index, "--queries", queries, "--dry-run", "--json"])
        XCTAssertEqual(dry.status, 0, dry.stderr)
        XCTAssertNil(try fusion(), "--dry-run stores nothing")
        let report = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(dry.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((report["candidates"] as? [Any])?.count, 42)
        let best = try XCTUnwrap(report["best"] as? [String: Any])
        let bestScore = try XCTUnwrap(best["ndcg@10"] as? Double)
        XCTAssertGreaterThanOrEqual(bestScore, max(report["vector_ndcg@10"] as! Double, report["keyword_ndcg@10"] as! Double))

        let tune = try Tool.run(["index", "tune", "--index", index, "--queries", queries])
        XCTAssertEqual(tune.status, 0, tune.stderr)
        XCTAssertTrue(tune.stdout.contains("best:"), tune.stdout)
        let stored = try XCTUnwrap(try fusion())
        XCTAssertEqual(stored["method"] as? String, best["method"] as? String)
        XCTAssertEqual((stored["tuned"] as? [String: Any])?["queries"] as? Int, 6)
        let search = try Tool.run(["search", "--index", index, "-k", "3", "--json", "strategy game"])
        XCTAssertEqual(search.status, 0, search.stderr)
        // Read by a person (stdout not a terminal: no escapes): rank, score, id and title, then a snippet line.
        let plain = try Tool.run(["search", "--index", index, "-k", "3", "strategy game"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let shown = plain.stdout.split(separator: "\n")
        XCTAssertEqual(shown.count, 6, plain.stdout)
        XCTAssertFalse(plain.stdout.contains("\u{1B}["), "no terminal escapes when piped")
        let titles = try Dictionary(uniqueKeysWithValues: lines.map { line -> (String, String) in
            let doc = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let metadata = doc["metadata"] as? [String: Any] ?? doc
            return (doc["id"] as! String, metadata["title"] as? String ?? "")
        })
        let fields = shown[0].split(separator: " ", maxSplits: 3, omittingEmptySubsequences: true)
        XCTAssertEqual(fields.count, 4, String(shown[0]))
        XCTAssertEqual(fields[3].trimmingCharacters(in: .whitespaces), titles[String(fields[2])], "the title heads the result")
        XCTAssertTrue(shown[1].hasPrefix("              "), String(shown[1]))
        let reset = try Tool.run(["index", "tune", "--index", index, "--queries", queries, "--reset"])
        XCTAssertEqual(reset.status, 0, reset.stderr)
        XCTAssertNil(try fusion())
        let empty = try write("none.jsonl", "")
        let nothing = try Tool.run(["index", "tune", "--index", index, "--queries", empty])
        XCTAssertNotEqual(nothing.status, 0)
    }

    /// `index add`, `index delete` and `index info` on a small index, and the errors a user meets first.
    func testIndexAddDeleteInfo() throws {
        let lines = try debianCorpusLines(12)
        let first = try write("first.jsonl", lines.prefix(8).joined(separator: "\n") + "\n")
        let more = try write("more.jsonl", lines[8..<12].joined(separator: "\n") + "\n")
        let index = dir.appendingPathComponent("idx").path
        let build = try Tool.run(["index", "build", "--index", index, "--corpus", first, "--factory", "HNSW32"])
        XCTAssertEqual(build.status, 0, build.stderr)
        let add = try Tool.run(["index", "add", "--index", index, "--corpus", more])
        XCTAssertEqual(add.status, 0, add.stderr)
        XCTAssertTrue(add.stderr.contains("added 4, 12 documents"), add.stderr)
        // The same documents again are skipped (what a re-run of an interrupted add meets); another text under
        // an id already there is an error.
        let again = try Tool.run(["index", "add", "--index", index, "--corpus", more])
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertTrue(again.stderr.contains("added 0, 12 documents"), again.stderr)
        let changed = try write("changed.jsonl", lines[8].replacingOccurrences(of: "\"text\": \"", with: "\"text\": \"changed ") + "\n")
        let clash = try Tool.run(["index", "add", "--index", index, "--corpus", changed])
        XCTAssertNotEqual(clash.status, 0)
        XCTAssertTrue(clash.stderr.contains("is already in the index") && clash.stderr.contains("other text"), clash.stderr)

        let firstID = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        let victim = firstID["id"] as! String
        let delete = try Tool.run(["index", "delete", "--index", index, "--id", victim, "no-such-package"])
        XCTAssertEqual(delete.status, 0, delete.stderr)
        XCTAssertTrue(delete.stderr.contains("removed 1 of 2, 11 documents"), delete.stderr)
        let search = try Tool.run(["search", "--index", index, "-k", "11", "--json", String(describing: try XCTUnwrap(firstID["text"]))])
        XCTAssertEqual(search.status, 0, search.stderr)
        let results = (try JSONSerialization.jsonObject(with: Data(search.stdout.utf8)) as! [String: Any])["results"] as! [[String: Any]]
        XCTAssertEqual(results.count, 11)
        XCTAssertFalse(results.contains { $0["id"] as? String == victim })

        let info = try Tool.run(["index", "info", "--index", index])
        XCTAssertEqual(info.status, 0, info.stderr)
        let manifest = try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(manifest["count"] as? Int, 11)
        XCTAssertEqual(manifest["factory"] as? String, "HNSW32")
        XCTAssertEqual(manifest["model"] as? String, "embeddinggemma-300m")
        XCTAssertEqual((manifest["model_digest"] as? String)?.count, 64)

        let empty = try write("empty.jsonl", "")
        let e = try Tool.run(["index", "build", "--index", dir.appendingPathComponent("e").path, "--corpus", empty])
        XCTAssertNotEqual(e.status, 0)
        XCTAssertTrue(e.stderr.contains("the corpus is empty"), e.stderr)
        let notIndex = try Tool.run(["search", "--index", dir.path, "query"])
        XCTAssertNotEqual(notIndex.status, 0)
        XCTAssertTrue(notIndex.stderr.contains("not an index directory"), notIndex.stderr)
    }
}

extension CLITests {
    /// `index add` and `index delete` killed with SIGKILL at several points (before the first commit, after
    /// some batches, after all of them, during the vector rebuild): each time the index opens with a
    /// published version and answers, and the same command re-run completes — the add skips what the killed
    /// run committed, the delete rebuilds vectors a killed run left behind.
    func testKilledIndexAddAndDeleteCompleteWhenRerun() throws {
        let model = try tinyEncoderDirectory(in: dir).path
        let words = ["archive", "compress", "editor", "text", "mail", "server", "game", "strategy"]
        func rows(_ range: Range<Int>) -> String {
            range.map { i in #"{"id": "d\#(i)", "text": "\#((0..<40).map { words[($0 * 3 + i) % 8] }.joined(separator: " ")) \#(i)"}"# }
                .joined(separator: "\n") + "\n"
        }
        let index = dir.appendingPathComponent("idx").path
        let first = try write("first.jsonl", rows(0..<30)), more = try write("more.jsonl", rows(30..<330))
        XCTAssertEqual(try Tool.run(["index", "build", "--index", index, "--model", model, "--corpus", first, "--factory", "Flat"]).status, 0)
        func stored() -> Int { storedDocumentCount(index) }
        func published() throws -> Int {
            let info = try Tool.run(["index", "info", "--index", index])
            XCTAssertEqual(info.status, 0, info.stderr)
            return (try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])?["count"] as? Int ?? -1
        }
        XCTAssertEqual(stored(), 30, "the kill points read the store (python3's sqlite3)")
        // Points of an add: before anything is committed, after some batches, after all of them.
        var before = try published()
        for target in [0, 64, 300] {
            try Tool.runAndKill(["index", "add", "--index", index, "--corpus", more, "--batch", "16"]) { target == 0 ? true : stored() >= 30 + target }
            let now = try published()
            XCTAssertTrue(now == before || now == 330, "a published version: \(now)")
            before = now
            let search = try Tool.run(["search", "--index", index, "--json", "archive compress"])
            XCTAssertEqual(search.status, 0, search.stderr)
        }
        let rerun = try Tool.run(["index", "add", "--index", index, "--corpus", more, "--batch", "16"])
        XCTAssertEqual(rerun.status, 0, rerun.stderr)
        XCTAssertEqual(try published(), 330)
        // A delete killed at several points, then re-run: the removed documents are gone from every answer.
        let victims = (30..<130).map { "d\($0)" }
        for delay in [0.0, 0.05, 0.2] {
            let start = Date()
            try Tool.runAndKill(["index", "delete", "--index", index, "--id"] + victims) { Date().timeIntervalSince(start) >= delay }
            XCTAssertTrue([330, 230].contains(try published()))
        }
        let again = try Tool.run(["index", "delete", "--index", index, "--id"] + victims)
        XCTAssertEqual(again.status, 0, again.stderr)
        XCTAssertEqual(try published(), 230)
        let search = try Tool.run(["search", "--index", index, "-k", "300", "--json", "archive compress editor"])
        let results = (try JSONSerialization.jsonObject(with: Data(search.stdout.utf8)) as? [String: Any])?["results"] as? [[String: Any]] ?? []
        XCTAssertEqual(results.count, 230, "every remaining document, and only those, is found")
        XCTAssertFalse(results.contains { victims.contains($0["id"] as? String ?? "") })
    }
}

/// Documents committed to an index's SQLite store, read by another process (python3's sqlite3) while a writer
/// may be running; -1 when it cannot be read.
func storedDocumentCount(_ index: String) -> Int {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["python3", "-c", "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from documents').fetchone()[0])", index + "/documents.sqlite"]
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    guard (try? p.run()) != nil else { return -1 }
    p.waitUntilExit()
    return Int(String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
}
