import Foundation
import TestSupport
import XCTest
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `gemma-encoder serve` as a process: it answers what `gemma-encoder embed` prints for the same input, and
/// SIGTERM stops it cleanly (exit 0).
final class ServeCLITests: XCTestCase {
    func testServeAnswersWhatEmbedPrintsAndStopsOnSIGTERM() async throws {
        let dir = try temporaryDirectory("serve")
        defer { try? FileManager.default.removeItem(at: dir) }
        try await serveAndCompare(model: try tinyEncoderDirectory(in: dir).path, dimension: 64)
    }

    /// A bi-encoder trained here (a sentence-transformers directory) is a model `serve --model` takes.
    func testServeTakesATrainedBiEncoder() async throws {
        let dir = try temporaryDirectory("serve-bi")
        defer { try? FileManager.default.removeItem(at: dir) }
        let base = try tinyEncoderDirectory(in: dir).path
        let rows = (0..<16).map { i in #"{"query": "cat \#(i)", "positive": "a cat sat \#(i)", "negatives": ["a dog ran \#(i)"]}"# }
        let data = dir.appendingPathComponent("rows.jsonl")
        try rows.joined(separator: "\n").write(to: data, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("bi").path
        let t = try Tool.run(["train", "--task", "embedding", "--data", data.path, "--model", base, "--batch-size", "8",
                              "--encoder-lr", "1e-4", "--out", out])
        XCTAssertEqual(t.status, 0, t.stderr)
        try await serveAndCompare(model: out, dimension: 64)
    }

    func serveAndCompare(model: String, dimension: Int) async throws {
        let text = "the cat sat on the mat"

        let cli = try Tool.run(["embed", "--model", model, "--text", text])
        XCTAssertEqual(cli.status, 0, cli.stderr)
        let expected = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [Double] ?? []
        XCTAssertEqual(expected.count, dimension)

        let process = Process()
        process.executableURL = Tool.binary
        process.arguments = ["serve", "--model", "tiny=\(model)", "--port", "0", "--log-level", "notice"]
        let stdout = Pipe(), stderr = Pipe()
        process.standardOutput = stdout
        process.standardError = stderr
        try process.run()
        defer { if process.isRunning { process.terminate() } }

        // The first stdout line names the address.
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let chunk = stdout.fileHandleForReading.availableData
            guard !chunk.isEmpty else { break }
            line.append(chunk)
        }
        let banner = String(decoding: line, as: UTF8.self)
        guard let range = banner.range(of: "http://"), let url = URL(string: String(banner[range.lowerBound...]).trimmingCharacters(in: .whitespacesAndNewlines)) else {
            return XCTFail("no address in '\(banner)'; stderr: \(String(decoding: stderr.fileHandleForReading.availableData, as: UTF8.self))")
        }

        var request = URLRequest(url: url.appendingPathComponent("v1/embeddings"))
        request.httpMethod = "POST"
        request.httpBody = try JSONSerialization.data(withJSONObject: ["input": text, "model": "tiny"])
        let (data, response) = try await URLSession.shared.data(for: request)
        XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 200)
        let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] ?? [:]
        let served = ((object["data"] as? [[String: Any]])?.first?["embedding"] as? [Any] ?? []).map { ($0 as? NSNumber)?.doubleValue ?? .nan }
        XCTAssertEqual(served.count, expected.count)
        // Both print floats in their shortest round-tripping form: the same forward pass gives the same text.
        for (a, b) in zip(served, expected) { XCTAssertEqual(a, b, accuracy: 1e-6) }

        process.terminate()  // SIGTERM
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason, .exit)
        XCTAssertEqual(process.terminationStatus, 0)
        let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(log.contains("stopped"), log)
    }
}
