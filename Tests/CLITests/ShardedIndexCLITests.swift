import Foundation
import TestSupport
import XCTest

/// `index train`, `index build --trained --first-id`, `index merge` and `search --nprobe`, as a Spark job
/// drives them: the merged shards answer as one index built in one process from the same quantizer.
extension CLITests {
    func testShardedBuildMergeAndSearch() throws {
        let model = try tinyEncoderDirectory(in: dir).path
        let words = ["archive", "compress", "editor", "text", "mail", "server", "game", "strategy", "audio", "player",
                     "network", "tool", "library", "python", "kernel", "driver"]
        let rows = (0..<240).map { i -> String in
            let text = (0..<6).map { words[(i * 7 + $0 * $0 * 3 + i / 16) % words.count] }.joined(separator: " ") + " \(i)"
            return "{\"id\": \"doc\(i)\", \"text\": \"\(text)\"}"
        }
        let all = try write("all.jsonl", rows.joined(separator: "\n"))
        let first = try write("first.jsonl", rows.prefix(120).joined(separator: "\n"))
        let second = try write("second.jsonl", rows.suffix(120).joined(separator: "\n"))
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        func run(_ arguments: [String]) throws {
            let r = try Tool.run(arguments)
            XCTAssertEqual(r.status, 0, "\(arguments): \(r.stderr)")
        }
        try run(["index", "train", "--factory", "IVF4,Flat", "--sample", first, "-o", path("trained"), "--model", model])
        // Batches of 20 start at the same documents in every build, so each vector is the same bits.
        try run(["index", "build", "--index", path("s1"), "--corpus", first, "--trained", path("trained"), "--model", model, "--batch", "20"])
        try run(["index", "build", "--index", path("s2"), "--corpus", second, "--trained", path("trained"), "--model", model,
                 "--batch", "20", "--first-id", "1099511627776"])
        try run(["index", "merge", "--out", path("merged"), path("s1"), path("s2")])
        try run(["index", "build", "--index", path("single"), "--corpus", all, "--trained", path("trained"), "--model", model, "--batch", "20"])
        let info = try Tool.run(["index", "info", "--index", path("merged")])
        let manifest = try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(manifest["count"] as? Int, 240)
        XCTAssertEqual(manifest["factory"] as? String, "IVF4,Flat")
        func results(_ index: String, _ query: String, _ extra: [String] = []) throws -> [(String, Double)] {
            let r = try Tool.run(["search", "--index", path(index), "--json", "-k", "8"] + extra + [query])
            XCTAssertEqual(r.status, 0, r.stderr)
            let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any]
            return (object["results"] as! [[String: Any]]).map { ($0["id"] as! String, $0["score"] as! Double) }
        }
        for query in ["archive tool", "strategy game audio", "kernel driver"] {
            let merged = try results("merged", query, ["--nprobe", "4"]), single = try results("single", query, ["--nprobe", "4"])
            XCTAssertEqual(merged.count, 8)
            XCTAssertEqual(merged.map(\.0), single.map(\.0), query)
            for (a, b) in zip(merged, single) { XCTAssertEqual(a.1, b.1, accuracy: 1e-6, query) }
        }
        let flat = try Tool.run(["search", "--index", path("merged"), "--ef-search", "64", "archive"])
        XCTAssertNotEqual(flat.status, 0)
        XCTAssertTrue(flat.stderr.contains("ef_search applies to HNSW"), flat.stderr)

        // Refusals: a shard of another quantizer, flags --trained decides.
        try run(["index", "train", "--factory", "IVF4,Flat", "--sample", second, "-o", path("other"), "--model", model])
        try run(["index", "build", "--index", path("s3"), "--corpus", second, "--trained", path("other"), "--model", model,
                 "--first-id", "2199023255552"])
        let mismatch = try Tool.run(["index", "merge", "--out", path("bad"), path("s1"), path("s3")])
        XCTAssertEqual(mismatch.status, 1)
        XCTAssertTrue(mismatch.stderr.contains("\(path("s3")) cannot merge with \(path("s1")): different quantizer"), mismatch.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("bad")))
        let both = try Tool.run(["index", "build", "--index", path("s4"), "--corpus", first, "--trained", path("trained"),
                                 "--factory", "Flat", "--model", model])
        XCTAssertNotEqual(both.status, 0)
        XCTAssertTrue(both.stderr.contains("--trained sets the factory"), both.stderr)
    }
}
