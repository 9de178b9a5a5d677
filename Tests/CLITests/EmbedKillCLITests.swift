import Foundation
import TestSupport
import XCTest

extension CLITests {
    /// `embed --output` over an existing file, killed with SIGKILL at several points (as it starts, once its
    /// temporary sibling exists, mid-way through writing it): the file holds the previous rows whole, never a
    /// mix or a truncated run; the same for the npy output and its ids file; a re-run writes every row.
    func testKilledEmbedLeavesThePreviousOutputWhole() throws {
        let model = try tinyEncoderDirectory(in: dir).path
        let words = ["archive", "compress", "editor", "text", "mail", "server", "game", "strategy"]
        let rows = (0..<3_000).map { i in #"{"id": "r\#(i)", "text": "\#((0..<30).map { words[($0 * 5 + i) % 8] }.joined(separator: " "))"}"# }
        let input = try write("input.jsonl", rows.joined(separator: "\n") + "\n")
        let small = try write("small.jsonl", rows.prefix(3).joined(separator: "\n") + "\n")
        for format in ["jsonl", "npy"] {
            let output = dir.appendingPathComponent("vectors.\(format)")
            let written = format == "npy" ? [output.path, dir.appendingPathComponent("vectors.ids.jsonl").path] : [output.path]
            let arguments = ["embed", "--model", model, "--format", format, "--output", output.path]
            let previous = try Tool.run(arguments + ["--input", small])
            XCTAssertEqual(previous.status, 0, previous.stderr)
            let before = try written.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }
            func siblings() -> [String] {
                ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).filter { $0.hasPrefix(".vectors.") }
            }
            // Temporary files this run made (a killed run's leftovers are there from the start).
            let points: [(String, (Set<String>) -> Bool)] = [
                ("at the start", { _ in true }),
                ("once the temporary file exists", { left in siblings().contains { !left.contains($0) } }),
                ("mid-way through it", { left in
                    siblings().contains { name in
                        !left.contains(name) && ((try? FileManager.default.attributesOfItem(atPath: self.dir.appendingPathComponent(name).path)[.size] as? Int) ?? 0) > 100_000
                    }
                }),
            ]
            for (point, when) in points {
                let left = Set(siblings())
                let killed = try Tool.runAndKill(arguments + ["--input", input]) { when(left) }
                XCTAssertTrue(killed, "\(format): the run ended before it could be killed \(point)")
                XCTAssertEqual(try written.map { try Data(contentsOf: URL(fileURLWithPath: $0)) }, before,
                               "\(format), killed \(point): the previous output is not whole")
            }
            let rerun = try Tool.run(arguments + ["--input", input])
            XCTAssertEqual(rerun.status, 0, rerun.stderr)
            let ids = try String(contentsOfFile: written.last!, encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(ids.count, 3_000, "\(format): every row written")
        }
    }
}
