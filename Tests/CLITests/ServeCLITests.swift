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

    /// A T5Gemma checkpoint's encoder is a model `serve --model` takes (the tiny T5Gemma 2, copied).
    func testServeTakesAT5GemmaCheckpoint() async throws {
        let dir = try temporaryDirectory("serve-t5")
        defer { try? FileManager.default.removeItem(at: dir) }
        let copy = dir.appendingPathComponent("t5gemma2")
        try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("tiny/t5gemma2"), to: copy)
        try await serveAndCompare(model: copy.path, dimension: 64)
    }

    /// The API key from GEMMA_ENCODER_API_KEY: 401 without it, 200 with it, /health open; the log (at the most
    /// verbose level) holds neither the key nor the request body. Half a TLS pair is refused before starting.
    func testServeTakesTheAPIKeyFromTheEnvironment() async throws {
        let dir = try temporaryDirectory("serve-key")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try tinyEncoderDirectory(in: dir).path
        let stderr = Pipe()
        let (process, url) = try startServer(["--model", "tiny=\(model)"], logLevel: "trace", stderr: stderr,
                                             environment: ["GEMMA_ENCODER_API_KEY": "env-key-7f3a"])
        defer { if process.isRunning { process.terminate() } }
        func post(_ key: String?) async throws -> Int {
            var request = URLRequest(url: url.appendingPathComponent("v1/embeddings"))
            request.httpMethod = "POST"
            request.httpBody = Data(#"{"input": "secret body text 91c"}"#.utf8)
            if let key { request.setValue("Bearer \(key)", forHTTPHeaderField: "Authorization") }
            let (_, response) = try await URLSession.shared.data(for: request)
            return (response as? HTTPURLResponse)?.statusCode ?? 0
        }
        let refused = try await post(nil), wrong = try await post("other"), served = try await post("env-key-7f3a")
        XCTAssertEqual(refused, 401)
        XCTAssertEqual(wrong, 401)
        XCTAssertEqual(served, 200)
        let (_, health) = try await URLSession.shared.data(from: url.appendingPathComponent("health"))
        XCTAssertEqual((health as? HTTPURLResponse)?.statusCode, 200)
        process.terminate()
        process.waitUntilExit()
        let log = String(decoding: stderr.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertTrue(log.contains("api_key") && log.contains("required"), "the start line says a key is required: \(log)")
        XCTAssertFalse(log.contains("env-key-7f3a"), "the key is never logged")
        XCTAssertFalse(log.contains("secret body text 91c"), "request bodies are never logged")
        let half = try Tool.run(["serve", "--model", model, "--tls-cert", dir.appendingPathComponent("cert.pem").path, "--port", "0"])
        XCTAssertNotEqual(half.status, 0)
        XCTAssertTrue(half.stderr.contains("--tls-cert and --tls-key go together"), half.stderr)
        // A serve that starts instead of refusing runs on: the refusal checks above end in a thrown TimedOut, not a
        // hang and not a passing non-zero status.
        XCTAssertThrowsError(try Tool.run(["serve", "--model", model, "--port", "0"], timeout: 5)) { error in
            XCTAssertTrue(error is Tool.TimedOut, "\(error)")
        }
    }

    /// `serve --index docs=SHARD --index docs=SHARD`: two shard directories answer /search as one index, with the
    /// merged index's vector results (nprobe per request); so do two shard servers behind a router.
    func testServeSearchesShardsAsOneIndex() async throws {
        let dir = try temporaryDirectory("serve-shards")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try tinyEncoderDirectory(in: dir).path
        let words = ["archive", "compress", "editor", "text", "mail", "server", "game", "strategy", "audio", "player"]
        let rows = (0..<160).map { i -> String in
            "{\"id\": \"doc\(i)\", \"text\": \"" + (0..<5).map { words[(i * 7 + $0 * $0 * 3 + i / 10) % words.count] }.joined(separator: " ") + " \(i)\"}"
        }
        func file(_ name: String, _ lines: ArraySlice<String>) throws -> String {
            let url = dir.appendingPathComponent(name)
            try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
            return url.path
        }
        let (all, first, second) = (try file("all.jsonl", rows[...]), try file("a.jsonl", rows[..<80]), try file("b.jsonl", rows[80...]))
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        for arguments in [["index", "train", "--factory", "IVF4,Flat", "--sample", all, "-o", path("trained"), "--model", model],
                          ["index", "build", "--index", path("a"), "--corpus", first, "--trained", path("trained"), "--model", model, "--batch", "20"],
                          ["index", "build", "--index", path("b"), "--corpus", second, "--trained", path("trained"), "--model", model,
                           "--batch", "20", "--first-id", "1000000"],
                          ["index", "merge", "--out", path("merged"), path("a"), path("b")]] {
            let r = try Tool.run(arguments)
            XCTAssertEqual(r.status, 0, "\(arguments): \(r.stderr)")
        }
        let query = "archive mail player"
        let cli = try Tool.run(["search", "--index", path("merged"), "--json", "-k", "8", "--nprobe", "4", query])
        XCTAssertEqual(cli.status, 0, cli.stderr)
        let expected = ((try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as! [String: Any])["results"] as! [[String: Any]])

        let (process, url) = try startServer(["--model", "tiny=\(model)", "--index", "docs=\(path("a"))", "--index", "docs=\(path("b"))"])
        defer { process.terminate() }
        let served = try await search(url, ["index": "docs", "query": query, "k": 8, "nprobe": 4])
        let hits = served["results"] as! [[String: Any]]
        XCTAssertEqual(hits.map { $0["id"] as! String }, expected.map { $0["id"] as! String })
        for (a, b) in zip(hits, expected) { XCTAssertEqual(a["score"] as! Double, b["score"] as! Double, accuracy: 1e-6) }
        XCTAssertNil(served["partial"])

        // Two shard servers and a router (serve --shard) answer as the merged index; with one shard down the
        // answer is the other shard's part, marked partial, naming the shard that failed.
        let (shardA, urlA) = try startServer(["--model", "tiny=\(model)", "--index", "docs=\(path("a"))"])
        defer { if shardA.isRunning { shardA.terminate() } }
        let (shardB, urlB) = try startServer(["--model", "tiny=\(model)", "--index", "docs=\(path("b"))"])
        defer { if shardB.isRunning { shardB.terminate() } }
        let (router, routerURL) = try startServer(["--model", "tiny=\(model)", "--shard", urlA.absoluteString, "--shard", urlB.absoluteString,
                                                   "--shard-timeout", "5"])
        defer { router.terminate() }
        let routed = try await search(routerURL, ["query": query, "k": 8, "nprobe": 4])
        let routedHits = routed["results"] as! [[String: Any]]
        XCTAssertEqual(routedHits.map { $0["id"] as! String }, expected.map { $0["id"] as! String })
        for (a, b) in zip(routedHits, expected) { XCTAssertEqual(a["score"] as! Double, b["score"] as! Double, accuracy: 1e-6) }
        XCTAssertEqual((routedHits.first?["metadata"] as? [String: Any])?.count, 0)
        XCTAssertNil(routed["partial"])
        for mode in ["keyword", "hybrid"] {
            let r = try await search(routerURL, ["query": query, "k": 6, "mode": mode])
            let ids = (r["results"] as! [[String: Any]]).map { Int(($0["id"] as! String).dropFirst(3))! }
            XCTAssertEqual(ids.count, 6, mode)
            XCTAssertTrue(ids.contains { $0 < 80 } && ids.contains { $0 >= 80 }, "\(mode): both shards answer \(ids)")
        }
        // A router whose model is not the shards' refuses to start.
        let wrongModel = try Tool.run(["serve", "--shard", urlA.absoluteString, "--port", "0"])
        XCTAssertEqual(wrongModel.status, 1)
        XCTAssertTrue(wrongModel.stderr.contains("index 'docs' was built with model '\(model)'"), wrongModel.stderr)
        shardB.terminate()
        shardB.waitUntilExit()
        let partial = try await search(routerURL, ["query": query, "k": 8, "nprobe": 4])
        XCTAssertEqual(partial["partial"] as? Bool, true)
        let failed = partial["failed_shards"] as! [[String: Any]]
        XCTAssertEqual(failed.map { $0["shard"] as! String }, [urlB.absoluteString])
        let partialIDs = (partial["results"] as! [[String: Any]]).map { $0["id"] as! String }
        let fromA = expected.map { $0["id"] as! String }.filter { Int($0.dropFirst(3))! < 80 }
        XCTAssertEqual(partialIDs.count, 8)
        XCTAssertEqual(Array(partialIDs.prefix(fromA.count)), fromA, "shard a's part of the merged results leads, in order")
        XCTAssertTrue(partialIDs.allSatisfy { Int($0.dropFirst(3))! < 80 }, "\(partialIDs)")
        // No shard left: an outage (424 Backend naming the shards), not an empty answer.
        shardA.terminate()
        shardA.waitUntilExit()
        var request = URLRequest(url: routerURL.appendingPathComponent("search"))
        request.httpMethod = "POST"
        request.httpBody = try JSONSerialization.data(withJSONObject: ["query": query, "k": 8])
        let (data, response) = try await URLSession.shared.data(for: request)
        XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 424, String(decoding: data, as: UTF8.self))
        XCTAssertTrue(String(decoding: data, as: UTF8.self).contains("no shard answered"), String(decoding: data, as: UTF8.self))
    }

    /// `index tune` over shards (--index repeated) tunes them as one and stores the fit in each; shards that share
    /// it are searched by it, locally (`serve --index NAME=SHARD` twice) and through a router alike: the same
    /// default mode (the fit's best) and the same hybrid results.
    func testShardsTunedAsOneAreFusedAlikeLocallyAndThroughARouter() async throws {
        let dir = try temporaryDirectory("serve-tuned-shards")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try tinyEncoderDirectory(in: dir).path
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        let words = ["archive", "compress", "editor", "text", "mail", "server", "game", "strategy", "audio", "player"]
        let texts = (0..<60).map { i in (0..<5).map { words[(i * 7 + $0 * $0 * 3 + i / 10) % words.count] }.joined(separator: " ") + " \(i)" }
        for (name, range) in [("a", 0..<30), ("b", 30..<60)] {
            try range.map { #"{"id": "doc\#($0)", "text": "\#(texts[$0])"}"# }.joined(separator: "\n")
                .write(toFile: path("\(name).jsonl"), atomically: true, encoding: .utf8)
            let r = try Tool.run(["index", "build", "--index", path(name), "--corpus", path("\(name).jsonl"), "--model", model])
            XCTAssertEqual(r.status, 0, r.stderr)
        }
        // Labelled queries: a few words of a document, answered by it.
        try stride(from: 0, to: 60, by: 3).map { i in
            #"{"id": "q\#(i)", "text": "\#(texts[i].split(separator: " ").prefix(3).joined(separator: " "))", "relevant": ["doc\#(i)"]}"#
        }.joined(separator: "\n").write(toFile: path("queries.jsonl"), atomically: true, encoding: .utf8)
        let tune = try Tool.run(["index", "tune", "--index", path("a"), "--index", path("b"), "--queries", path("queries.jsonl"), "--json"])
        XCTAssertEqual(tune.status, 0, tune.stderr)
        func fusion(_ shard: String) throws -> [String: Any]? {
            let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path(shard) + "/manifest.json"))) as? [String: Any]
            return manifest?["fusion"] as? [String: Any]
        }
        let (fa, fb) = (try XCTUnwrap(try fusion("a")), try XCTUnwrap(try fusion("b")))
        XCTAssertEqual(NSDictionary(dictionary: fa), NSDictionary(dictionary: fb), "one fit, stored in each shard")
        let tuned = try XCTUnwrap(fa["tuned"] as? [String: Any])
        let best = (tuned["ndcg@10"] as! Double) > (tuned["vector_ndcg@10"] as! Double) ? "hybrid" : "vector"
        XCTAssertNotEqual(fa["vector_weight"] as? Double, 0.7, "a fit unlike the standard fusion (score, 0.7), so the results show which one ran")
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(tune.stdout.utf8)) as? [String: Any])
        XCTAssertEqual((report["best"] as? [String: Any])?["vector_weight"] as? Double, fa["vector_weight"] as? Double)

        let (local, localURL) = try startServer(["--model", "tiny=\(model)", "--index", "docs=\(path("a"))", "--index", "docs=\(path("b"))"])
        defer { local.terminate() }
        let (shardA, urlA) = try startServer(["--model", "tiny=\(model)", "--index", "docs=\(path("a"))"])
        defer { shardA.terminate() }
        let (shardB, urlB) = try startServer(["--model", "tiny=\(model)", "--index", "docs=\(path("b"))"])
        defer { shardB.terminate() }
        let (router, routerURL) = try startServer(["--model", "tiny=\(model)", "--shard", urlA.absoluteString, "--shard", urlB.absoluteString])
        defer { router.terminate() }
        for query in ["archive mail player", "game strategy", "text editor server"] {
            for body: [String: Any] in [["query": query, "k": 10], ["query": query, "k": 10, "mode": "hybrid"]] {
                let (here, routed) = (try await search(localURL, body), try await search(routerURL, body))
                XCTAssertEqual(here["mode"] as? String, body["mode"] as? String ?? best, query)
                XCTAssertEqual(routed["mode"] as? String, here["mode"] as? String, query)
                let (ids, routedIDs) = ((here["results"] as! [[String: Any]]).map { $0["id"] as! String },
                                        (routed["results"] as! [[String: Any]]).map { $0["id"] as! String })
                XCTAssertEqual(routedIDs, ids, "\(query) \(body)")
            }
        }
    }

    /// A router's results read as a shard's: headlines from the shards' title field (reported in /info), not the
    /// default one; shards whose documents were embedded with another title field are refused at start.
    func testRoutedResultsUseTheShardsTitleField() async throws {
        let dir = try temporaryDirectory("serve-titles")
        defer { try? FileManager.default.removeItem(at: dir) }
        let model = try tinyTitledEncoderDirectory(in: dir).path
        func path(_ name: String) -> String { dir.appendingPathComponent(name).path }
        for (name, range) in [("a", 0..<6), ("b", 6..<12)] {
            let rows = range.map { #"{"id": "doc\#($0)", "text": "an archive tool number \#($0)", "name": "Package \#($0)", "title": "other \#($0)"}"# }
            try rows.joined(separator: "\n").write(toFile: path("\(name).jsonl"), atomically: true, encoding: .utf8)
        }
        for arguments in [["index", "build", "--index", path("a"), "--corpus", path("a.jsonl"), "--model", model, "--title-field", "name"],
                          ["index", "build", "--index", path("b"), "--corpus", path("b.jsonl"), "--model", model, "--title-field", "name"],
                          ["index", "build", "--index", path("c"), "--corpus", path("b.jsonl"), "--model", model]] {
            let r = try Tool.run(arguments)
            XCTAssertEqual(r.status, 0, "\(arguments): \(r.stderr)")
        }
        let (shardA, urlA) = try startServer(["--model", "tiny=\(model)", "--index", "docs=\(path("a"))"])
        defer { shardA.terminate() }
        let (shardB, urlB) = try startServer(["--model", "tiny=\(model)", "--index", "docs=\(path("b"))"])
        defer { shardB.terminate() }
        let (info, _) = try await URLSession.shared.data(from: urlA.appendingPathComponent("info"))
        let served = (try JSONSerialization.jsonObject(with: info) as! [String: Any])["search_indexes"] as! [String: [String: Any]]
        XCTAssertEqual(served["docs"]?["title_field"] as? String, "name")
        let (router, routerURL) = try startServer(["--model", "tiny=\(model)", "--shard", urlA.absoluteString, "--shard", urlB.absoluteString])
        defer { router.terminate() }
        for mode in ["vector", "keyword", "hybrid"] {
            let hits = try await search(routerURL, ["query": "archive tool", "k": 12, "mode": mode])["results"] as! [[String: Any]]
            XCTAssertEqual(hits.count, 12, mode)
            for hit in hits {
                let number = (hit["id"] as! String).dropFirst(3)
                XCTAssertEqual((hit["summary"] as? [String: Any])?["headline"] as? String, "Package \(number)", mode)
            }
        }
        let (shardC, urlC) = try startServer(["--model", "tiny=\(model)", "--index", "docs=\(path("c"))"])
        defer { shardC.terminate() }
        let mixed = try Tool.run(["serve", "--model", "tiny=\(model)", "--shard", urlA.absoluteString, "--shard", urlC.absoluteString, "--port", "0"])
        XCTAssertEqual(mixed.status, 1)
        XCTAssertTrue(mixed.stderr.contains("embeds documents with title field title, the first shard's with name"), mixed.stderr)
    }

    private func search(_ url: URL, _ body: [String: Any]) async throws -> [String: Any] {
        let (status, json) = try await postJSON(url, "search", body)
        XCTAssertEqual(status, 200, "\(json)")
        return try XCTUnwrap(json as? [String: Any])
    }

    func serveAndCompare(model: String, dimension: Int) async throws {
        let text = "the cat sat on the mat"

        let cli = try Tool.run(["embed", "--model", model, "--text", text])
        XCTAssertEqual(cli.status, 0, cli.stderr)
        let expected = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [Double] ?? []
        XCTAssertEqual(expected.count, dimension)

        let stderr = Pipe()
        let (process, url) = try startServer(["--model", "tiny=\(model)"], logLevel: "notice", stderr: stderr)
        defer { if process.isRunning { process.terminate() } }

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
