import Foundation
import TestSupport
import XCTest

/// `bench --tokenizer-only` carries the tokenizer's timings (load, throughput, one very long word), which
/// the unit tests no longer assert: a wall-clock bound in a unit test fails on a busy machine, not on a
/// slow tokenizer.
final class BenchCLITests: XCTestCase {
    func testTokenizerOnlyReportsLoadThroughputAndTheLongWord() throws {
        let dir = try temporaryDirectory("bench-cli")
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("texts.jsonl")
        try [#"{"text": "a tool to compress files"}"#, #"{"text": "a web browser"}"#]
            .joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
        let model = try TestModels.path(TestModels.embeddingGemmaName).path
        let r = try Tool.run(["bench", "--tokenizer-only", "--json", "--model", model, "--input", input.path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        func number(_ key: String) -> Double { (report[key] as? NSNumber)?.doubleValue ?? -1 }
        for key in ["tokenizer_load_s", "tokenizer_tokens_per_s", "tokenizer_texts_per_s", "tokenizer_long_word_s"] {
            XCTAssertGreaterThan(number(key), 0, "\(key) in \(r.stdout)")
        }
        // <bos> a tool to compress files <eos>, <bos> a web browser <eos>: whole words in Gemma's vocabulary.
        XCTAssertEqual(number("tokens"), 12, r.stdout)
        XCTAssertEqual(number("tokenizer_long_word_chars"), 200_000)
        XCTAssertGreaterThan(number("tokenizer_long_word_tokens"), 2)
        XCTAssertLessThan(number("tokenizer_long_word_tokens"), 200_000, "merges happened inside the word")
    }

    /// `bench --profile` splits the measured time into the forward's operations (shares summing to one, for the
    /// throughput and the query runs) and names the CPU features and product path the figures come from.
    func testProfileSplitsTheTimeAndNamesThePath() throws {
        let dir = try temporaryDirectory("bench-profile")
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("texts.jsonl")
        try [#"{"text": "a tool to compress files"}"#, #"{"text": "a web browser with tabs and bookmarks"}"#]
            .joined(separator: "\n").write(to: input, atomically: true, encoding: .utf8)
        let model = try tinyEncoderDirectory(in: dir).path
        for precision in ["f32", "bf16", "auto"] {
            let r = try Tool.run(["bench", "--json", "--profile", "--model", model, "--input", input.path, "--precision", precision,
                                  "--queries", "3", "--scaling-lengths", "16"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
            XCTAssertTrue((report["cpu_features"] as? String)?.contains("avx2") ?? false, r.stdout)
            let path = try XCTUnwrap(report["product_path"] as? String, r.stdout)
            if precision == "f32" {
                // A CPU OpenBLAS does not recognize gets its generic SSE3 kernels; the tool restarts itself with
                // the ones the CPU can run (BLASCore), so an AVX2 machine never measures Prescott's.
                XCTAssertFalse(path.contains("Prescott"), path)
            }
            for prefix in ["profile_", "profile_query_"] {
                let shares = report.filter { $0.key.hasPrefix(prefix) && $0.key.hasSuffix("_share")
                    && !(prefix == "profile_" && $0.key.hasPrefix("profile_query_")) }
                XCTAssertNotNil(shares[prefix + "qkv_share"], r.stdout)
                XCTAssertNotNil(shares[prefix + "attention_share"], r.stdout)
                let total = shares.values.compactMap { ($0 as? NSNumber)?.doubleValue }.reduce(0, +)
                XCTAssertEqual(total, 1, accuracy: 0.01, "\(prefix) shares: \(shares)")
            }
            let resolved = try XCTUnwrap(report["precision"] as? String)
            if resolved != "f32" { XCTAssertNotNil(report["gemm_ceiling_\(resolved)_gflops"], r.stdout) }
        }
    }
}
