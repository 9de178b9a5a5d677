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
        // On disk: the same answers, and stdout holds only the JSON (FAISS's own notes go to stderr).
        try run(["index", "merge", "--ondisk", "--out", path("ondisk"), path("s1"), path("s2")])
        for query in ["archive tool", "kernel driver"] {
            let mapped = try results("ondisk", query, ["--nprobe", "4"]), single = try results("single", query, ["--nprobe", "4"])
            XCTAssertEqual(mapped.map(\.0), single.map(\.0), query)
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

/// `scripts/spark-index` in Spark's local mode (PySpark 4.3.0 from PyPI in .build/spark-venv, Java 17), on the
/// tiny model: one worker's binary is killed mid-way, Spark retries its task, and the merged index holds every
/// document exactly once; the same corpus as Parquet gives the same documents.
extension CLITests {
    func testSparkJobSurvivesAKilledWorker() throws {
        let repository = fixturesDirectory.deletingLastPathComponent().deletingLastPathComponent()
        let model = try tinyEncoderDirectory(in: dir).path
        let words = ["archive", "compress", "editor", "text", "mail", "server", "game", "strategy"]
        let texts = (0..<1500).map { i in (0..<24).map { words[(i * 5 + $0 * 3 + $0 * $0) % words.count] }.joined(separator: " ") + " \(i)" }
        let rows = texts.enumerated().map { "{\"id\": \"doc\($0.offset)\", \"text\": \"\($0.element)\", \"section\": \"s\($0.offset % 7)\"}" }
        let corpus = try write("corpus.jsonl", rows.joined(separator: "\n") + "\n")
        let index = dir.appendingPathComponent("index").path
        let process = Process()
        process.executableURL = repository.appendingPathComponent("scripts/spark-index")
        process.currentDirectoryURL = repository
        process.arguments = ["--corpus", corpus, "--index", index, "--model", model, "--factory", "IVF8,Flat",
                             "--partitions", "3", "--master", "local[2]", "--keep-shards"]
        let out = Pipe(), err = dir.appendingPathComponent("spark.err")
        FileManager.default.createFile(atPath: err.path, contents: nil)
        process.standardOutput = out
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        // Kill the binary building partition 1's first attempt (SIGKILL: nothing of it is cleaned up), mid-way for
        // sure: its shard has a manifest (the build started) and no index file yet (written after the last batch),
        // and the process is not already exiting (a zombie takes the signal and ignores it).
        let firstAttempt = index + ".work/shards/part-00001-attempt-0"
        var killed = false
        let deadline = Date().addingTimeInterval(600)
        while !killed, process.isRunning, Date() < deadline {
            if FileManager.default.fileExists(atPath: firstAttempt + "/manifest.json"),
               !FileManager.default.fileExists(atPath: firstAttempt + "/index.faiss") {
                for pid in processes(whoseCommandLineContains: ["index", "build", "part-00001-attempt-0"]) where isRunning(pid) {
                    killed = kill(pid, SIGKILL) == 0 || killed
                }
            }
            if !killed { usleep(2_000) }
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let log = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        XCTAssertTrue(killed, "partition 1's build ended before it could be killed: make the corpus larger. \(log.suffix(2000))")
        XCTAssertEqual(process.terminationStatus, 0, String(log.suffix(4000)))
        let summary = try JSONSerialization.jsonObject(with: output) as! [String: Any]
        XCTAssertEqual(summary["documents"] as? Int, 1500)
        XCTAssertEqual(summary["shards"] as? Int, 3)
        XCTAssertTrue(FileManager.default.fileExists(atPath: index + ".work/shards/part-00001-attempt-1"), "the killed task was retried")
        // Every document once: the store's ids are the corpus's, none twice, and the vectors match.
        let info = try Tool.run(["index", "info", "--index", index])
        XCTAssertEqual((try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as! [String: Any])["count"] as? Int, 1500)
        let ids = try sqlite(index + "/documents.sqlite", "select external_id from documents")
        XCTAssertEqual(ids.count, 1500)
        XCTAssertEqual(Set(ids), Set((0..<1500).map { "doc\($0)" }))
        XCTAssertEqual(try sqlite(index + "/documents.sqlite", "select count(*) from vectors"), ["1500"])
        // The same scores as one process building from the same quantizer (ids may trade places among the
        // tiny model's near-duplicate documents, scores may not).
        let single = dir.appendingPathComponent("single").path
        let build = try Tool.run(["index", "build", "--index", single, "--corpus", corpus, "--trained", index + ".work/trained", "--model", model])
        XCTAssertEqual(build.status, 0, build.stderr)
        for query in ["archive editor", "mail game strategy", "text server compress"] {
            func scores(_ index: String) throws -> [Double] {
                let r = try Tool.run(["search", "--index", index, "--json", "-k", "10", "--nprobe", "8", query])
                XCTAssertEqual(r.status, 0, r.stderr)
                return ((try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as! [String: Any])["results"] as! [[String: Any]])
                    .map { $0["score"] as! Double }
            }
            let (spark, one) = (try scores(index), try scores(single))
            XCTAssertEqual(spark.count, 10)
            for (a, b) in zip(spark, one) { XCTAssertEqual(a, b, accuracy: 1e-5, query) }
        }

        // The same corpus as Parquet (written by the venv's PySpark): the same documents, metadata kept.
        let parquet = dir.appendingPathComponent("corpus.parquet").path
        let write = Process()
        write.executableURL = repository.appendingPathComponent(".build/spark-venv/bin/python")
        write.currentDirectoryURL = repository
        write.arguments = ["-c", "import sys\nfrom pyspark.sql import SparkSession\ns = SparkSession.builder.master('local[1]').config('spark.ui.enabled', 'false').getOrCreate()\ns.read.json(sys.argv[1]).write.parquet(sys.argv[2])\ns.stop()", corpus, parquet]
        var environment = ProcessInfo.processInfo.environment
        environment["JAVA_HOME"] = try javaHome()
        write.environment = environment
        write.standardError = FileHandle.nullDevice
        try write.run()
        write.waitUntilExit()
        XCTAssertEqual(write.terminationStatus, 0)
        let fromParquet = dir.appendingPathComponent("from-parquet").path
        let job = Process()
        job.executableURL = repository.appendingPathComponent("scripts/spark-index")
        job.currentDirectoryURL = repository
        job.arguments = ["--corpus", parquet, "--index", fromParquet, "--model", model, "--factory", "IVF8,Flat", "--partitions", "2"]
        job.standardOutput = FileHandle.nullDevice
        job.standardError = FileHandle.nullDevice
        try job.run()
        job.waitUntilExit()
        XCTAssertEqual(job.terminationStatus, 0)
        XCTAssertEqual(Set(try sqlite(fromParquet + "/documents.sqlite", "select external_id from documents")), Set((0..<1500).map { "doc\($0)" }))
        XCTAssertEqual(try sqlite(fromParquet + "/documents.sqlite", "select metadata from documents where external_id = 'doc12'"),
                       [#"{"section":"s5"}"#])
    }

    /// JAVA_HOME of a Java 17 (what scripts/lib/spark-venv.sh pins).
    private func javaHome() throws -> String {
        let jvms = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/jvm")) ?? []
        guard let name = jvms.sorted().first(where: { $0.hasPrefix("java-17-openjdk") }) else {
            throw NSError(domain: "java", code: 1, userInfo: [NSLocalizedDescriptionKey: "no Java 17 under /usr/lib/jvm (scripts/test installs it)"])
        }
        return "/usr/lib/jvm/" + name
    }

    /// Whether `pid` is alive and not a zombie (state R, S or D in /proc/PID/stat).
    private func isRunning(_ pid: pid_t) -> Bool {
        guard let stat = FileManager.default.contents(atPath: "/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: UInt8(ascii: ")")), close + 2 < stat.count else { return false }
        return [UInt8(ascii: "R"), UInt8(ascii: "S"), UInt8(ascii: "D")].contains(stat[close + 2])
    }

    /// Processes whose command line holds every one of `parts` (as whole arguments or inside one).
    private func processes(whoseCommandLineContains parts: [String]) -> [pid_t] {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
        return entries.compactMap { entry -> pid_t? in
            guard let pid = pid_t(entry), let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
            let arguments = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            return parts.allSatisfy({ part in arguments.contains { $0.contains(part) } }) ? pid : nil
        }
    }

    /// One column of a query's rows, through python3's sqlite3 (the test does not link SQLite itself).
    private func sqlite(_ database: String, _ query: String) throws -> [String] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import sqlite3,sys\nfor r in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]): print(r[0])", database, query]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init)
    }
}
