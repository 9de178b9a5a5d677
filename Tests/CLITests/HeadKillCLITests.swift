import Foundation
import TestSupport
import XCTest

extension CLITests {
    /// `train` on the frozen encoder writes two things that matter: the token-state cache (states/, reused by
    /// every later run on the same texts) and the head directory, replacing the previous head. Killed with
    /// SIGKILL at several points — as it starts, while a cache file is being written, once the cache is
    /// complete, while the head directory is being swapped — the previous head still classifies (it is the old
    /// head or the new one, never a mix), and a re-run on whatever cache the killed runs left completes to
    /// exactly the head of a run that never used the cache (so no cache entry is partial).
    func testKilledHeadTrainingLeavesTheHeadAndTheCacheWhole() throws {
        let model = try tinyEncoderDirectory(in: dir).path
        let cache = dir.appendingPathComponent("cache")
        let environment = ["GEMMA_ENCODER_CACHE": cache.path]
        let words = ["archive", "compress", "editor", "text", "mail", "server", "game", "strategy", "audio", "video"]
        func rows(_ count: Int, _ labels: [String]) -> String {
            (0..<count).map { i in
                #"{"text": "\#((0..<60).map { words[($0 * 7 + i) % 10] }.joined(separator: " ")) \#(i)", "label": "\#(labels[i % labels.count])"}"#
            }.joined(separator: "\n") + "\n"
        }
        let old = try write("old.jsonl", rows(30, ["x", "y", "z"]))
        let new = try write("new.jsonl", rows(2_000, ["p", "q"]))
        let head = dir.appendingPathComponent("head")
        let first = try Tool.run(["train", "--task", "classification", "--data", old, "--model", model, "--out", head.path],
                                 environment: environment)
        XCTAssertEqual(first.status, 0, first.stderr)

        let states = cache.appendingPathComponent("states")
        func names(in directory: URL) -> [String] { (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? [] }
        let oldEntries = names(in: states).filter { $0.hasSuffix(".bin") }.count
        XCTAssertGreaterThan(oldEntries, 0, "the first run cached its states")
        func labels() -> [String]? {
            guard let data = try? Data(contentsOf: head.appendingPathComponent("head.json")),
                  let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
            return json["labels"] as? [String]
        }
        let train = ["train", "--task", "classification", "--data", new, "--model", model, "--out", head.path]
        // A temporary file or directory this run made (a killed run's leftovers are there from the start).
        func appeared(_ directory: URL, _ left: Set<String>, _ match: (String) -> Bool) -> Bool {
            names(in: directory).contains { !left.contains($0) && match($0) }
        }
        let points: [(String, (Set<String>) -> Bool)] = [
            ("at the start", { _ in true }),
            ("while a cache file is written", { left in appeared(states, left) { $0.hasSuffix(".tmp") } }),
            ("once the cache is complete", { _ in names(in: states).filter { $0.hasSuffix(".bin") }.count > oldEntries }),
            ("while the head is swapped", { left in appeared(self.dir, left) { $0.hasPrefix(".head.") } }),
        ]
        for (point, when) in points {
            let left = Set(names(in: states) + names(in: dir))
            let killed = try Tool.runAndKill(train, environment: environment) { when(left) }
            // The swap lasts a few milliseconds (two small files, then an exchange): a run may finish first.
            if point != "while the head is swapped" { XCTAssertTrue(killed, "the run ended before it could be killed \(point)") }
            let found = labels()
            XCTAssertTrue(found == ["x", "y", "z"] || found == ["p", "q"], "killed \(point): the head's labels are \(String(describing: found))")
            let classify = try Tool.run(["classify", "--head", head.path, "--model", model, "--text", "archive editor"])
            XCTAssertEqual(classify.status, 0, "killed \(point): \(classify.stderr)")
        }
        let rerun = try Tool.run(train, environment: environment)
        XCTAssertEqual(rerun.status, 0, rerun.stderr)
        XCTAssertEqual(labels(), ["p", "q"])
        let fresh = dir.appendingPathComponent("fresh")
        let reference = try Tool.run(["train", "--task", "classification", "--data", new, "--model", model, "--no-cache", "--out", fresh.path])
        XCTAssertEqual(reference.status, 0, reference.stderr)
        XCTAssertEqual(try Data(contentsOf: head.appendingPathComponent("head.safetensors")),
                       try Data(contentsOf: fresh.appendingPathComponent("head.safetensors")),
                       "the re-run on the killed runs' cache trains the same head as a run without it")
    }
}
