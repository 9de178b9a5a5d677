import Foundation
import FuzzTargets
import TestSupport
import XCTest

/// Every seed accepted whole, and every input the fuzzer found a crash, trap or 5xx with (minimized, under Tests/Fixtures/fuzz/<target>/) and
/// every seed kind, replayed through the same target code `scripts/fuzz` runs: a regression crashes this test
/// or fails it with the finding.
final class FuzzRegressionTests: XCTestCase {
    static let workspace = LoadOnce<FuzzWorkspace>()

    static let seeds = LoadOnce<URL>()

    /// Replays the findings, then checks every seed is accepted whole (a target that stopped at its loader's
    /// first check would fuzz nothing behind it).
    private func replay(_ target: FuzzTarget) throws {
        let workspace = try Self.workspace.value("fuzz") { try FuzzWorkspace() }
        let runner = FuzzRunner(target: target, workspace: workspace)
        let seeds = try Self.seeds.value("seeds") {
            let url = workspace.directory.appendingPathComponent("seeds")
            try FuzzSeeds.write(to: url, workspace: workspace)
            return url
        }
        let seedFiles = try FileManager.default.contentsOfDirectory(at: seeds.appendingPathComponent(target.rawValue),
                                                                    includingPropertiesForKeys: nil)
        XCTAssertFalse(seedFiles.isEmpty)
        for seed in seedFiles.sorted(by: { $0.path < $1.path }) {
            XCTAssertNoThrow(try runner.run(try Data(contentsOf: seed), strict: true), seed.lastPathComponent)
        }
        let directory = fixturesDirectory.appendingPathComponent("fuzz/\(target.rawValue)")
        let inputs = (try? FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)) ?? []
        for input in inputs.sorted(by: { $0.path < $1.path }) {
            XCTAssertNoThrow(try runner.run(try Data(contentsOf: input)), input.lastPathComponent)
        }
    }

    func testSafetensorsFindings() throws { try replay(.safetensors) }
    func testGGUFFindings() throws { try replay(.gguf) }
    func testTokenizerFindings() throws { try replay(.tokenizer) }
    func testConfigFindings() throws { try replay(.config) }
    func testSentenceTransformersFindings() throws { try replay(.stConfig) }
    func testJSONLinesFindings() throws { try replay(.jsonl) }
    func testHTTPFindings() throws { try replay(.http) }
    func testManifestFindings() throws { try replay(.manifest) }
    func testHeadFindings() throws { try replay(.head) }
}
