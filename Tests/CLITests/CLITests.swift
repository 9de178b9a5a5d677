import Foundation
import TestSupport
import XCTest

/// Runs the built `gemma-encoder` (beside the test bundle) as a user would.
struct Tool {
    static let binary: URL = {
        // On Linux the test runner is .build/<config>/<Package>PackageTests.xctest; the tool sits beside it.
        let runner = URL(fileURLWithPath: CommandLine.arguments[0])
        var dir = runner.deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("gemma-encoder").path), dir.path != "/" {
            dir.deleteLastPathComponent()
        }
        return dir.appendingPathComponent("gemma-encoder")
    }()

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// A run that outlived its time limit (killed): thrown, not returned, so a test expecting a refusal (a
    /// non-zero status) cannot pass on a tool that hung instead of refusing.
    struct TimedOut: Error, CustomStringConvertible {
        var arguments: [String]
        var seconds: Double
        var description: String { "gemma-encoder \(arguments.joined(separator: " ")) still ran after \(Int(seconds)) s: killed" }
    }

    /// `stdin`: what the tool reads on standard input (nothing otherwise). `timeout`: seconds before the tool
    /// is killed and `TimedOut` thrown.
    static func run(_ arguments: [String], stdin: Data? = nil, environment: [String: String] = [:],
                    timeout: Double = 900) throws -> Result {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let outURL = FileManager.default.temporaryDirectory.appendingPathComponent("cli-\(UUID().uuidString).out")
        let errURL = outURL.appendingPathExtension("err"), inURL = outURL.appendingPathExtension("in")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        FileManager.default.createFile(atPath: inURL.path, contents: stdin ?? Data())
        defer {
            for url in [outURL, errURL, inURL] { try? FileManager.default.removeItem(at: url) }
        }
        process.standardInput = try FileHandle(forReadingFrom: inURL)
        process.standardOutput = try FileHandle(forWritingTo: outURL)
        process.standardError = try FileHandle(forWritingTo: errURL)
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning, Date() < deadline { usleep(5_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw TimedOut(arguments: arguments, seconds: timeout)
        }
        process.waitUntilExit()
        return Result(status: process.terminationStatus,
                      stdout: try String(contentsOf: outURL, encoding: .utf8),
                      stderr: try String(contentsOf: errURL, encoding: .utf8))
    }

    /// Starts the tool and kills it with SIGKILL as soon as `when` holds (polled every `poll` seconds, for at
    /// most `seconds`). Returns whether it was killed with the condition met (false: it ended first, or the
    /// time passed; it is killed then too).
    @discardableResult
    static func runAndKill(_ arguments: [String], environment: [String: String] = [:], seconds: Double = 60,
                           poll: Double = 0.002, when: () -> Bool) throws -> Bool {
        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        process.standardError = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(seconds)
        var met = false
        while process.isRunning, Date() < deadline {
            if when() { met = true; break }
            usleep(useconds_t(poll * 1e6))
        }
        let running = process.isRunning
        if running { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return met && running && process.terminationReason == .uncaughtSignal
    }

    /// Starts the tool and kills it with SIGKILL once the checkpoint's `state.json` records `step` steps (a
    /// power cut in the middle of a run); returns the step it was killed at, or nil if it ended first.
    static func killAtCheckpoint(_ arguments: [String], checkpoint: String, step target: Int) throws -> Int? {
        let state = URL(fileURLWithPath: checkpoint + "/state.json")
        var step = 0
        let killed = try runAndKill(arguments) {
            if let data = try? Data(contentsOf: state), let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any] {
                step = json["step"] as? Int ?? 0
            }
            return step >= target
        }
        return killed ? step : nil
    }
}

final class CLITests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        XCTAssertTrue(FileManager.default.fileExists(atPath: Tool.binary.path), "build the tool first: \(Tool.binary.path)")
        dir = try temporaryDirectory("cli")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ name: String, _ content: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try content.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// The tiny Gemma 3 checkpoint as a plain Hugging Face directory (with the real tokenizer beside it).
    func tinyModel() throws -> String {
        let model = dir.appendingPathComponent("tiny")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        for name in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("tiny/gemma3/\(name)"),
                                             to: model.appendingPathComponent(name))
        }
        try FileManager.default.createSymbolicLink(
            at: model.appendingPathComponent("tokenizer.json"),
            withDestinationURL: try TestModels.path(TestModels.embeddingGemmaName).appendingPathComponent("tokenizer.json"))
        return model.path
    }

    struct TinyReference: Decodable {
        let input_ids: [[Int32]]
        let bidirectional: [[[Float]]]
        let causal: [[[Float]]]
    }

    func testHiddenStatesFromIdsMatchTransformers() throws {
        let model = try tinyModel()
        let ref = try JSONDecoder().decode(TinyReference.self, from: Data(contentsOf: fixturesDirectory.appendingPathComponent("tiny/gemma3/reference.json")))
        let input = try write("ids.jsonl", ref.input_ids.map { "{\"ids\": \($0)}" }.joined(separator: "\n") + "\n")
        for (mode, expected) in [("bidirectional", ref.bidirectional), ("causal", ref.causal)] {
            let output = dir.appendingPathComponent("hidden-\(mode).jsonl").path
            let r = try Tool.run(["embed", "--model", model, "--input", input, "--output", output, "--pooling", "none", "--attention", mode])
            XCTAssertEqual(r.status, 0, r.stderr)
            let rows = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
            XCTAssertEqual(rows.count, expected.count)
            for (row, seq) in zip(rows, expected) {
                let object = try JSONSerialization.jsonObject(with: Data(row.utf8)) as! [String: [[Double]]]
                let states = try XCTUnwrap(object["hidden_states"])
                XCTAssertEqual(states.count, seq.count)
                for (got, want) in zip(states, seq) {
                    XCTAssertLessThanOrEqual(maxAbsDiff(got.map(Float.init), want), 1e-4, mode)
                }
            }
        }
    }

    func testPooledOutputsAreNormalizedUnlessAsked() throws {
        let model = try tinyModel()
        let input = try write("ids.jsonl", "{\"ids\": [2, 5, 6, 1]}\n{\"ids\": [2, 7, 1]}\n")
        for (flags, normalized) in [([String](), true), (["--no-normalize"], false)] {
            for pooling in ["mean", "first", "last"] {
                let r = try Tool.run(["embed", "--model", model, "--input", input, "--pooling", pooling] + flags)
                XCTAssertEqual(r.status, 0, r.stderr)
                for line in r.stdout.split(separator: "\n") {
                    let v = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: [Double]])?["embedding"])
                    XCTAssertEqual(v.count, 64)
                    let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
                    if normalized { XCTAssertEqual(norm, 1, accuracy: 1e-5) } else { XCTAssertNotEqual(norm, 1, accuracy: 1e-3) }
                }
            }
        }
    }

    /// GEMMA_ENCODER_THREADS sets the threads (one thread embeds what two do); a malformed value is refused before
    /// anything runs.
    func testThreadsFromTheEnvironment() throws {
        let model = try tinyModel()
        let input = try write("ids.jsonl", "{\"ids\": [2, 5, 6, 1]}\n{\"ids\": [2, 7, 1]}\n")
        let one = try Tool.run(["embed", "--model", model, "--input", input], environment: ["GEMMA_ENCODER_THREADS": "1"])
        let two = try Tool.run(["embed", "--model", model, "--input", input], environment: ["GEMMA_ENCODER_THREADS": "2"])
        XCTAssertEqual(one.status, 0, one.stderr)
        func vectors(_ out: String) throws -> [[Double]] {
            try out.split(separator: "\n").map { try XCTUnwrap((try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: [Double]])?["embedding"]) }
        }
        let (a, b) = (try vectors(one.stdout), try vectors(two.stdout))
        XCTAssertEqual(a.count, 2)
        for (x, y) in zip(a, b) { XCTAssertEqual(zip(x, y).map { abs($0 - $1) }.max() ?? 1, 0, accuracy: 1e-6) }
        let bad = try Tool.run(["embed", "--model", model, "--input", input], environment: ["GEMMA_ENCODER_THREADS": "all"])
        XCTAssertEqual(bad.status, 2)
        XCTAssertTrue(bad.stderr.contains("GEMMA_ENCODER_THREADS='all': give a number of threads from 1 to 4096"), bad.stderr)
        XCTAssertTrue(bad.stdout.isEmpty)
    }

    func testBadRowsAreErrorsNamingTheLine() throws {
        let model = try tinyModel()
        let output = dir.appendingPathComponent("out.jsonl").path
        let cases: [(String, Data, String)] = [
            ("badjson.jsonl", Data("{\"ids\": [2, 1]}\n{\"ids\": [2,\n".utf8), "badjson.jsonl:2: not a JSON object"),
            ("notext.jsonl", Data("{\"text\": \"ok\"}\n\n{\"title\": \"x\"}\n".utf8), "notext.jsonl:3: row has no \"text\""),
            ("badids.jsonl", Data("{\"ids\": [2, 1.5]}\n".utf8), "badids.jsonl:1: field \"ids\" must be an array of integers"),
            ("utf8.jsonl", Data("{\"text\": \"fine\"}\n".utf8) + Data([0x7B, 0x22, 0x74, 0x65, 0x78, 0x74, 0x22, 0x3A, 0x22, 0xC3, 0x28, 0x22, 0x7D, 0x0A]), "utf8.jsonl:2: invalid UTF-8"),
            ("range.jsonl", Data("{\"ids\": [2, 99999]}\n".utf8), "token id 99999 is outside the vocabulary"),
        ]
        for (name, content, message) in cases {
            let url = dir.appendingPathComponent(name)
            try content.write(to: url)
            let r = try Tool.run(["embed", "--model", model, "--input", url.path, "--output", output])
            XCTAssertNotEqual(r.status, 0, name)
            XCTAssertTrue(r.stderr.contains(message), "\(name): \(r.stderr)")
            XCTAssertFalse(FileManager.default.fileExists(atPath: output), "no partial output after an error")
        }
        let r = try Tool.run(["embed", "--model", "/no/such/model", "--text", "x"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("/no/such/model"), r.stderr)
    }

    func testTextOnStdoutNpyAndTruncationReport() throws {
        // The default model: EmbeddingGemma-300M from the cache.
        let single = try Tool.run(["embed", "--text", "a tool to compress files", "--prompt", "query"])
        XCTAssertEqual(single.status, 0, single.stderr)
        let vector = try JSONSerialization.jsonObject(with: Data(single.stdout.utf8)) as! [Double]
        XCTAssertEqual(vector.count, 768)
        let small = try Tool.run(["embed", "--text", "a tool to compress files", "--prompt", "query", "--dim", "128"])
        let smallVector = try JSONSerialization.jsonObject(with: Data(small.stdout.utf8)) as! [Double]
        XCTAssertEqual(smallVector.count, 128)

        let long = String(repeating: "compression ", count: 3000)
        let input = try write("texts.jsonl", "{\"text\": \"short text\"}\n{\"text\": \"\(long)\"}\n{\"text\": \"\"}\n")
        let npy = dir.appendingPathComponent("out.npy").path
        let r = try Tool.run(["embed", "--input", input, "--output", npy, "--prompt", "document"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("1 of 3 inputs were longer than 2048 tokens and were truncated"), r.stderr)
        let data = try Data(contentsOf: URL(fileURLWithPath: npy))
        XCTAssertEqual(Array(data.prefix(6)), [0x93] + Array("NUMPY".utf8))
        let headerLength = Int(data[8]) | Int(data[9]) << 8
        let header = String(decoding: data[10..<(10 + headerLength)], as: UTF8.self)
        XCTAssertTrue(header.contains("'descr': '<f4'") && header.contains("'shape': (3, 768)"), header)
        XCTAssertEqual((10 + headerLength) % 64, 0)
        XCTAssertEqual(data.count, 10 + headerLength + 3 * 768 * 4)

        let unknownPrompt = try Tool.run(["embed", "--text", "x", "--prompt", "nope"])
        XCTAssertNotEqual(unknownPrompt.status, 0)
        XCTAssertTrue(unknownPrompt.stderr.contains("unknown prompt 'nope'"), unknownPrompt.stderr)
    }

    func testTokenize() throws {
        let model = try TestModels.path(TestModels.embeddingGemmaName).path
        let r = try Tool.run(["tokenize", "--model", model, "--text", "Hello world"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let ids = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [Int]
        XCTAssertEqual(ids.first, 2)
        XCTAssertEqual(ids.last, 1)

        let input = try write("t.jsonl", "{\"text\": \"Hello world\"}\n{\"text\": \"\"}\n")
        let output = dir.appendingPathComponent("ids.jsonl").path
        let file = try Tool.run(["tokenize", "--input", input, "--output", output])
        XCTAssertEqual(file.status, 0, file.stderr)
        let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(String(lines[1]), "{\"ids\":[2,1]}")

        let gguf = try TestModels.path(TestModels.gemma3GGUFName).path
        let g = try Tool.run(["tokenize", "--model", gguf, "--text", "Sbt test interface"])
        XCTAssertEqual(g.status, 0, g.stderr)
        XCTAssertEqual(try JSONSerialization.jsonObject(with: Data(g.stdout.utf8)) as! [Int], [2, 236773, 2755, 1594, 7937])

        let bad = try write("bad.jsonl", "{\"ids\": [1]}\n")
        let b = try Tool.run(["tokenize", "--input", bad])
        XCTAssertNotEqual(b.status, 0)
        XCTAssertTrue(b.stderr.contains("bad.jsonl:1: row has no \"text\" field"), b.stderr)
    }

    func testModelsList() throws {
        let r = try Tool.run(["models", "list"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("embeddinggemma-300m"), r.stdout)
        let unknown = try Tool.run(["models", "fetch", "gpt-5"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("unknown model 'gpt-5'"), unknown.stderr)
    }

    func testTrainClassifyEvalOnTheTinyModel() throws {
        let model = try tinyEncoderDirectory(in: dir).path
        let texts = ["the cat sat", "a dog ran", "hello there", "tiny words", "more text"]
        let rows = (0..<36).map { #"{"text": "\#(texts[$0 % 5]) \#($0)", "label": "\#(["x", "y", "z"][$0 % 3])"}"# }
        let train = try write("train.jsonl", rows.prefix(30).joined(separator: "\n"))
        let test = try write("test.jsonl", rows.suffix(6).joined(separator: "\n"))
        let head = dir.appendingPathComponent("head").path

        let t = try Tool.run(["train", "--task", "classification", "--data", train, "--model", model, "--pooling", "attention",
                              "--hidden", "16", "--epochs", "2", "--no-cache", "--out", head])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stderr.contains("epoch 1/2  train loss"), t.stderr)
        XCTAssertTrue(t.stderr.contains("wrote \(head): classification, 3 labels, attention pooling"), t.stderr)

        let c = try Tool.run(["classify", "--head", head, "--model", model, "--text", "the cat", "--text", "a dog"])
        XCTAssertEqual(c.status, 0, c.stderr)
        let predictions = c.stdout.split(separator: "\n").map { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(predictions.count, 2)
        for p in predictions {
            XCTAssertTrue(["x", "y", "z"].contains(p?["label"] as? String ?? ""), c.stdout)
            XCTAssertEqual((p?["scores"] as? [String: Double])?.count, 3, c.stdout)
        }
        let out = dir.appendingPathComponent("predictions.jsonl").path
        let f = try Tool.run(["classify", "--head", head, "--model", model, "--input", test, "--output", out])
        XCTAssertEqual(f.status, 0, f.stderr)
        XCTAssertEqual(try String(contentsOfFile: out, encoding: .utf8).split(separator: "\n").count, 6)

        let e = try Tool.run(["eval", "--head", head, "--model", model, "--data", test])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertTrue(e.stdout.contains("rows 6  accuracy"), e.stdout)
        XCTAssertTrue(e.stdout.contains("confusion matrix"), e.stdout)
        let j = try Tool.run(["eval", "--head", head, "--model", model, "--data", test, "--json"])
        let report = try JSONSerialization.jsonObject(with: Data(j.stdout.utf8)) as? [String: Any]
        XCTAssertEqual((report?["confusion"] as? [[Int]])?.joined().reduce(0, +), 6, j.stdout)

        // Bad input: the line is named, nothing is written.
        let bad = try write("bad.jsonl", rows.prefix(5).joined(separator: "\n") + "\n{\"text\": \"no label\"}")
        let b = try Tool.run(["train", "--task", "classification", "--data", bad, "--model", model, "--no-cache",
                              "--out", dir.appendingPathComponent("never").path])
        XCTAssertNotEqual(b.status, 0)
        XCTAssertTrue(b.stderr.contains("\(bad):6: missing field \"label\""), b.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("never").path))
        let missing = try Tool.run(["classify", "--head", dir.path, "--text", "x"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("not a head directory"), missing.stderr)
    }

    /// `train` with no tuning flags fits the linear head exactly (L2 path on the held-out rows, then a refit);
    /// an AdamW flag keeps AdamW; flags of the other solver are refused; `features` writes what the head saw.
    func testDefaultTrainIsTheExactLinearFitAndFeaturesMatchIt() throws {
        let model = try tinyEncoderDirectory(in: dir).path
        let texts = ["the cat sat", "a dog ran", "hello there", "tiny words", "more text"]
        let rows = (0..<30).map { #"{"text": "\#(texts[$0 % 5]) \#($0)", "label": "\#(["x", "y", "z"][$0 % 3])"}"# }
        let train = try write("train.jsonl", rows.joined(separator: "\n"))
        let head = dir.appendingPathComponent("head").path

        let t = try Tool.run(["train", "--task", "classification", "--data", train, "--model", model, "--no-cache", "--out", head])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stderr.contains("l2 1e+00 ("), t.stderr)
        XCTAssertTrue(t.stderr.contains("mean pooling, lbfgs, l2 "), t.stderr)
        XCTAssertTrue(t.stderr.contains("refit on all 30 rows"), t.stderr)

        let a = try Tool.run(["train", "--task", "classification", "--data", train, "--model", model, "--no-cache",
                              "--epochs", "2", "--out", head])
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertTrue(a.stderr.contains("epoch 2/2  train loss"), a.stderr)
        XCTAssertTrue(a.stderr.contains("mean pooling, best epoch"), a.stderr)

        let bad = try Tool.run(["train", "--task", "classification", "--data", train, "--model", model, "--solver", "lbfgs",
                                "--lr", "0.1", "--out", head])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("--lr is an AdamW option"), bad.stderr)
        let l2 = try Tool.run(["train", "--task", "classification", "--data", train, "--model", model, "--hidden", "4",
                               "--l2", "0.1", "--out", head])
        XCTAssertNotEqual(l2.status, 0)
        XCTAssertTrue(l2.stderr.contains("--l2 is the lbfgs solver's"), l2.stderr)

        let npy = dir.appendingPathComponent("train.npy").path
        let f = try Tool.run(["features", "--input", train, "--model", model, "--no-cache", "--output", npy])
        XCTAssertEqual(f.status, 0, f.stderr)
        XCTAssertTrue(f.stderr.contains("30 × "), f.stderr)
        let header = String(decoding: try Data(contentsOf: URL(fileURLWithPath: npy)).prefix(128), as: UTF8.self)
        XCTAssertTrue(header.contains("'shape': (30, "), header)
    }

    /// Retrieve-then-rerank end to end on the tiny model: index, mine negatives, train a reranker, rerank
    /// candidates, search with it, evaluate every mode.
    func testRerankerPipelineOnTheTinyModel() throws {
        let model = try tinyEncoderDirectory(in: dir).path
        let corpusLines = try debianCorpusLines(30)
        let corpus = try write("corpus.jsonl", corpusLines.joined(separator: "\n"))
        let queries = try write("queries.jsonl", try corpusLines.prefix(16).map { line -> String in
            let row = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let title = try XCTUnwrap((row["metadata"] as? [String: Any])?["title"] as? String)
            let id = try XCTUnwrap(row["id"])
            let object: [String: Any] = ["id": id, "text": title, "relevant": [id]]
            return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        }.joined(separator: "\n"))
        let index = dir.appendingPathComponent("index").path
        XCTAssertEqual(try Tool.run(["index", "build", "--index", index, "--corpus", corpus, "--model", model]).status, 0)

        let pairs = dir.appendingPathComponent("pairs.jsonl").path
        let m = try Tool.run(["mine-negatives", "--index", index, "--queries", queries, "--output", pairs, "--negatives", "3"])
        XCTAssertEqual(m.status, 0, m.stderr)
        XCTAssertEqual(try String(contentsOfFile: pairs, encoding: .utf8).split(separator: "\n").count, 16)
        // A window of 2 candidates cannot give 3 negatives: such queries are left out (none left is an error and
        // writes nothing); --keep-short-rows writes them as found.
        let narrow = dir.appendingPathComponent("narrow.jsonl").path
        let none = try Tool.run(["mine-negatives", "--index", index, "--queries", queries, "--output", narrow, "--negatives", "3",
                                 "--range-max", "2"])
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.stderr.contains("no query found 3 negatives"), none.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: narrow))
        let kept = try Tool.run(["mine-negatives", "--index", index, "--queries", queries, "--output", narrow, "--negatives", "3",
                                 "--range-max", "2", "--keep-short-rows"])
        XCTAssertEqual(kept.status, 0, kept.stderr)
        XCTAssertTrue(kept.stderr.contains("16 of them found fewer than 3"), kept.stderr)
        let narrowRows = try String(contentsOfFile: narrow, encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        XCTAssertEqual(narrowRows.map { ($0["negatives"] as? [String])?.count ?? -1 }, Array(repeating: 2, count: 16))

        let reranker = dir.appendingPathComponent("reranker").path
        let t = try Tool.run(["train", "--task", "rerank", "--data", pairs, "--model", model, "--negatives", "2", "--epochs", "2",
                              "--max-length", "96", "--no-cache", "--out", reranker])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stderr.contains("positive ranked first"), t.stderr)

        let candidates = try write("candidates.jsonl", #"{"id": "a", "text": "a text editor"}"# + "\n" + #"{"id": "b", "text": "a game"}"#)
        let r = try Tool.run(["rerank", "--reranker", reranker, "--query", "edit text", "--input", candidates, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let rows = r.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(Set(rows.compactMap { $0["id"] as? String }), ["a", "b"])
        let scores = rows.compactMap { $0["score"] as? Double }
        XCTAssertEqual(scores, scores.sorted(by: >))

        let s = try Tool.run(["search", "--index", index, "--rerank", reranker, "--candidates", "10", "-k", "3", "--json", "text editor"])
        XCTAssertEqual(s.status, 0, s.stderr)
        let results = (try JSONSerialization.jsonObject(with: Data(s.stdout.utf8)) as? [String: Any])?["results"] as? [[String: Any]]
        XCTAssertEqual(results?.count, 3)

        let perQuery = dir.appendingPathComponent("per-query.jsonl").path
        let e = try Tool.run(["eval-retrieval", "--index", index, "--queries", queries, "--rerank", reranker, "--candidates", "10", "--json",
                              "--per-query", perQuery])
        XCTAssertEqual(e.status, 0, e.stderr)
        let metrics = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [String: [String: Double]]
        // The tiny model's head ranks no better than the cosine on validation: the default reranker fuses the
        // two (and says so), and evaluation reports the head alone as well.
        XCTAssertTrue(t.stderr.contains("so it never ranks below the first stage"), t.stderr)
        XCTAssertEqual(Set(metrics?.keys ?? [:].keys), ["vector", "keyword", "hybrid", "reranked", "reranked_cross_only"])
        XCTAssertEqual(Set(metrics?["reranked"]?.keys ?? [:].keys),
                       ["ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10", "recall@20", "recall@100", "map@100"])
        let each = try String(contentsOfFile: perQuery, encoding: .utf8).split(separator: "\n").compactMap {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        XCTAssertEqual(each.count, 5 * 16, "each query once per mode")
        let vectorNDCG = each.filter { $0["mode"] as? String == "vector" }.compactMap { $0["ndcg@10"] as? Double }
        XCTAssertEqual(vectorNDCG.reduce(0, +) / 16, metrics?["vector"]?["ndcg@10"] ?? -1, accuracy: 1e-9, "the summary is the mean of the rows")
        let wrong = try Tool.run(["rerank", "--reranker", dir.path, "--query", "q", "--input", candidates])
        XCTAssertNotEqual(wrong.status, 0)
    }

    /// A GGUF file works wherever a model does: embed, tokenize, bench.
    func testGGUFModelThroughEveryCommand() throws {
        let gguf = try TestModels.path(TestModels.gemma3GGUFName).path
        let e = try Tool.run(["embed", "--model", gguf, "--text", "hello world"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let vector = try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [Double]
        XCTAssertEqual(vector?.count, 640)
        XCTAssertEqual(vector.map { $0.reduce(0) { $0 + $1 * $1 } } ?? 0, 1, accuracy: 1e-4)
        let t = try Tool.run(["tokenize", "--model", gguf, "--text", "hello world"])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stdout.contains("[2,23391,1902]") || t.stdout.contains("[2, 23391, 1902]"), t.stdout)
        let input = try write("bench.jsonl", #"{"text": "a tool to compress files"}"# + "\n" + #"{"text": "a web browser"}"#)
        let b = try Tool.run(["bench", "--model", gguf, "--input", input, "--queries", "3", "--scaling-lengths", "16", "--json"])
        XCTAssertEqual(b.status, 0, b.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(b.stdout.utf8)) as? [String: Any]
        XCTAssertNotNil(report?["tokens_per_s"], b.stdout)
        XCTAssertLessThan(report?["peak_rss_mib"] as? Double ?? .infinity, 1024, "the Q4_K_M model stays quantized in memory")
    }
}
