import Foundation
import TestSupport
import XCTest

/// `train --task embedding` and `train --task rerank --finetune` as a user runs them on the tiny checkpoint:
/// rows mined from an index, a sentence-transformers directory or a reranker carrying its encoder out, and the
/// tools (`embed`, `index build`, `search`, `rerank`, `eval-retrieval`) taking them.
final class RetrieverTrainingCLITests: XCTestCase {
    var dir: URL!
    var model: String!

    override func setUpWithError() throws {
        dir = try temporaryDirectory("embedding-cli")
        model = try tinyEncoderDirectory(in: dir).path
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func write(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// Corpus, queries (each package's title, relevant: itself) and an index over the corpus.
    func minedPairs() throws -> (corpus: String, pairs: String) {
        let lines = try debianCorpusLines(40)
        let corpus = try write("corpus.jsonl", lines.joined(separator: "\n"))
        let queries = try write("queries.jsonl", try lines.prefix(32).map { line -> String in
            let row = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let title = try XCTUnwrap((row["metadata"] as? [String: Any])?["title"] as? String)
            let object: [String: Any] = ["id": try XCTUnwrap(row["id"]), "text": title, "relevant": [try XCTUnwrap(row["id"])]]
            return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        }.joined(separator: "\n"))
        let index = dir.appendingPathComponent("index").path
        XCTAssertEqual(try Tool.run(["index", "build", "--index", index, "--corpus", corpus, "--model", model]).status, 0)
        let pairs = dir.appendingPathComponent("pairs.jsonl").path
        let m = try Tool.run(["mine-negatives", "--index", index, "--queries", queries, "--output", pairs, "--num-negatives", "2",
                              "--range-min", "1", "--relative-margin", "0.01", "--sampling", "random", "--output-scores"])
        XCTAssertEqual(m.status, 0, m.stderr)
        let first = try JSONSerialization.jsonObject(with: Data(try String(contentsOfFile: pairs, encoding: .utf8).split(separator: "\n")[0].utf8)) as? [String: Any]
        let positive = try XCTUnwrap(first?["positive_score"] as? Double)
        let scores = try XCTUnwrap(first?["negative_scores"] as? [Double])
        XCTAssertEqual(scores.count, 2)
        XCTAssertTrue(scores.allSatisfy { $0 <= positive * 0.99 }, "\(scores) vs \(positive)")
        return (corpus, pairs)
    }

    func testTrainedBiEncoderIsAModelEveryToolOpens() throws {
        let (corpus, pairs) = try minedPairs()
        let out = dir.appendingPathComponent("bi-encoder").path
        let t = try Tool.run(["train", "--task", "embedding", "--data", pairs, "--valid", pairs, "--model", model, "--epochs", "2",
                              "--batch-size", "8", "--mini-batch-size", "5", "--encoder-lr", "1e-3", "--matryoshka", "64,32",
                              "--max-length", "64", "--out", out])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stderr.contains("epoch 2/2"), t.stderr)
        XCTAssertTrue(t.stderr.contains("a sentence-transformers model (mnrl loss"), t.stderr)
        let modules = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/modules.json"))) as? [[String: Any]]
        XCTAssertEqual(modules?.compactMap { $0["type"] as? String },
                       ["sentence_transformers.models.Transformer", "sentence_transformers.models.Pooling",
                        "sentence_transformers.models.Normalize"])
        // The tiny model has no prompts: the export says so under the names retrieval looks up.
        let st = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config_sentence_transformers.json"))) as? [String: Any]
        XCTAssertEqual(st?["prompts"] as? [String: String], ["query": "", "document": ""])
        XCTAssertEqual(try Tool.run(["embed", "--model", out, "--prompt", "query", "--text", "x"]).status, 0)
        let record = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/gemma_encoder_training.json"))) as? [String: Any]
        XCTAssertEqual((record?["epochs"] as? [Any])?.count, 2)

        let tuned = try Tool.run(["embed", "--model", out, "--text", "text editor"])
        let base = try Tool.run(["embed", "--model", model, "--text", "text editor"])
        XCTAssertEqual(tuned.status, 0, tuned.stderr)
        XCTAssertNotEqual(tuned.stdout, base.stdout, "training changed the encoder")

        let index = dir.appendingPathComponent("tuned-index").path
        let b = try Tool.run(["index", "build", "--index", index, "--corpus", corpus, "--model", out])
        XCTAssertEqual(b.status, 0, b.stderr)
        let s = try Tool.run(["search", "--index", index, "-k", "3", "--json", "text editor"])
        XCTAssertEqual(s.status, 0, s.stderr)
    }

    func testLoRAAdapterAndScoredPairs() throws {
        let (_, pairs) = try minedPairs()
        let out = dir.appendingPathComponent("lora").path
        let t = try Tool.run(["train", "--task", "embedding", "--data", pairs, "--model", model, "--finetune", "lora:4",
                              "--save-adapter", "--batch-size", "8", "--out", out])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/adapter/adapter_config.json"))

        let scored = try write("scored.jsonl", (0..<12).map { i in
            #"{"sentence1": "a cat \#(i)", "sentence2": "a dog \#(i % 4)", "score": \#(Double(i % 4) / 3)}"#
        }.joined(separator: "\n"))
        let c = try Tool.run(["train", "--task", "embedding", "--data", scored, "--model", model, "--batch-size", "6",
                              "--out", dir.appendingPathComponent("cosent").path])
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertTrue(c.stderr.contains("(cosent loss"), c.stderr)
    }

    func testFineTunedCrossEncoderCarriesItsEncoder() throws {
        let (corpus, pairs) = try minedPairs()
        let reranker = dir.appendingPathComponent("reranker").path
        let t = try Tool.run(["train", "--task", "rerank", "--finetune", "all", "--data", pairs, "--model", model, "--negatives", "2",
                              "--loss", "lambda", "--epochs", "2", "--batch-size", "6", "--encoder-lr", "1e-3", "--max-length", "96",
                              "--out", reranker])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stderr.contains("reranker with the encoder fine-tuned (all)"), t.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: reranker + "/encoder/model.safetensors"))
        let head = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: reranker + "/head.json"))) as? [String: Any]
        XCTAssertEqual(head?["task"] as? String, "rerank")
        XCTAssertEqual(head?["encoder"] as? String, "encoder")

        let candidates = try write("candidates.jsonl", #"{"id": "a", "text": "a text editor"}"# + "\n" + #"{"id": "b", "text": "a game"}"#)
        let r = try Tool.run(["rerank", "--reranker", reranker, "--query", "edit text", "--input", candidates, "--json"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let index = dir.appendingPathComponent("index").path
        let s = try Tool.run(["search", "--index", index, "--rerank", reranker, "--candidates", "5", "-k", "3", "--json", "text editor"])
        XCTAssertEqual(s.status, 0, s.stderr)
        let queries = dir.appendingPathComponent("queries.jsonl").path
        let e = try Tool.run(["eval-retrieval", "--index", index, "--queries", queries, "--rerank", reranker, "--candidates", "5", "--json"])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertNotNil((try JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [String: Any])?["reranked"])
        _ = corpus

        // A student learns the fine-tuned reranker's score margins (margin-MSE), on a frozen encoder.
        let student = dir.appendingPathComponent("student-reranker").path
        let m = try Tool.run(["train", "--task", "rerank", "--loss", "margin-mse", "--teacher", reranker, "--data", pairs, "--model", model,
                              "--negatives", "2", "--epochs", "2", "--max-length", "96", "--no-cache", "--out", student])
        XCTAssertEqual(m.status, 0, m.stderr)
        let noTeacher = try Tool.run(["train", "--task", "rerank", "--loss", "margin-mse", "--data", pairs, "--model", model,
                                      "--negatives", "2", "--out", student + "2"])
        XCTAssertTrue(noTeacher.stderr.contains("give --teacher"), noTeacher.stderr)

        // Fused with the cosine: the base model's (named in head.json), which rerank and search load beside the
        // fine-tuned encoder; a residual head needs a frozen encoder.
        let fusedPath = dir.appendingPathComponent("fused").path
        let fused = try Tool.run(["train", "--task", "rerank", "--finetune", "all", "--fuse-similarity", "--data", pairs, "--model", model,
                                  "--negatives", "2", "--epochs", "1", "--batch-size", "6", "--max-length", "96", "--out", fusedPath])
        XCTAssertEqual(fused.status, 0, fused.stderr)
        XCTAssertTrue(fused.stderr.contains("× cosine (the cosine of \(model!))"), fused.stderr)
        let fusedHead = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fusedPath + "/head.json"))) as? [String: Any]
        let similarityModel = (fusedHead?["score_fusion"] as? [String: Any])?["similarity_model"] as? [String: Any]
        XCTAssertEqual(similarityModel?["name"] as? String, model)
        let fr = try Tool.run(["rerank", "--reranker", fusedPath, "--query", "edit text", "--input", candidates, "--json"])
        XCTAssertEqual(fr.status, 0, fr.stderr)
        let fs = try Tool.run(["search", "--index", index, "--rerank", fusedPath, "--candidates", "5", "-k", "3", "--json", "text editor"])
        XCTAssertEqual(fs.status, 0, fs.stderr)
        let residual = try Tool.run(["train", "--task", "rerank", "--finetune", "all", "--fuse-similarity", "--residual", "--data", pairs,
                                     "--model", model, "--negatives", "2", "--out", dir.appendingPathComponent("residual").path])
        XCTAssertNotEqual(residual.status, 0)
        XCTAssertTrue(residual.stderr.contains("--residual"), residual.stderr)
    }

    func testDistilledStudentHasHalfTheLayers() throws {
        let corpus = try write("texts.jsonl", try debianCorpusLines(24).joined(separator: "\n"))
        let out = dir.appendingPathComponent("student").path
        let t = try Tool.run(["train", "--task", "distill", "--teacher", model, "--model", model, "--student-layers", "2", "--data", corpus,
                              "--epochs", "2", "--batch-size", "8", "--encoder-lr", "1e-3", "--max-length", "64", "--out", out])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stderr.contains("2 of its layers"), t.stderr)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any]
        XCTAssertEqual(config?["num_hidden_layers"] as? Int, 2)
        XCTAssertEqual((config?["layer_types"] as? [String])?.count, 2)
        let e = try Tool.run(["embed", "--model", out, "--text", "a text editor"])
        XCTAssertEqual(e.status, 0, e.stderr)
        let missing = try Tool.run(["train", "--task", "distill", "--model", model, "--data", corpus, "--out", out + "2"])
        XCTAssertNotEqual(missing.status, 0)
        XCTAssertTrue(missing.stderr.contains("--teacher"), missing.stderr)
        let bad = try write("bad-texts.jsonl", #"{"text": "fine"}"# + "\n" + #"{"body": "no text"}"#)
        let b = try Tool.run(["train", "--task", "distill", "--teacher", model, "--model", model, "--data", bad, "--out", out + "3"])
        XCTAssertTrue(b.stderr.contains("bad-texts.jsonl:2: missing, empty or non-string field \"text\""), b.stderr)
    }

    /// A bi-encoder run killed with SIGKILL and resumed ends with the weights of a run never killed.
    func testKilledBiEncoderRunResumesToTheSameWeights() throws {
        let rows = try write("rows.jsonl", (0..<120).map { i in
            #"{"query": "cat \#(i)", "positive": "a cat sat on mat \#(i)", "negatives": ["a dog ran \#(i % 7)"]}"#
        }.joined(separator: "\n"))
        let flags = ["--task", "embedding", "--data", rows, "--valid", rows, "--model", model!, "--batch-size", "4", "--epochs", "3",
                     "--encoder-lr", "1e-4", "--checkpoint-every", "1", "--residual-dropout", "0.1", "--mini-batch-size", "3"]
        let whole = dir.appendingPathComponent("whole").path
        let w = try Tool.run(["train"] + flags + ["--out", whole])
        XCTAssertEqual(w.status, 0, w.stderr)

        let killed = dir.appendingPathComponent("killed").path
        let step = try Tool.killAtCheckpoint(["train"] + flags + ["--out", killed], checkpoint: killed + ".checkpoint", step: 40)
        XCTAssertNotNil(step, "the run ended before it could be killed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: killed + "/modules.json"))

        let r = try Tool.run(["train"] + flags + ["--resume", "--out", killed])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: killed + "/model.safetensors")),
                       try Data(contentsOf: URL(fileURLWithPath: whole + "/model.safetensors")))
        XCTAssertFalse(FileManager.default.fileExists(atPath: killed + ".checkpoint"), "the checkpoint goes once the model is written")
        let other = try Tool.run(["train"] + flags + ["--scale", "10", "--resume", "--out", killed + "-x"])
        XCTAssertEqual(other.status, 0, "no checkpoint there: a fresh run")
    }

    func testBadRowsNameTheirLine() throws {
        let rows = try write("bad.jsonl", #"{"query": "a", "positive": "b"}"# + "\n" + #"{"query": "c"}"#)
        let t = try Tool.run(["train", "--task", "embedding", "--data", rows, "--model", model, "--out", dir.appendingPathComponent("x").path])
        XCTAssertNotEqual(t.status, 0)
        XCTAssertTrue(t.stderr.contains("bad.jsonl:2: missing or non-string field \"positive\""), t.stderr)
        let mixed = try write("mixed.jsonl", #"{"query": "a", "positive": "b"}"# + "\n" + #"{"sentence1": "c", "sentence2": "d", "score": 1}"#)
        let m = try Tool.run(["train", "--task", "embedding", "--data", mixed, "--model", model, "--out", dir.appendingPathComponent("x").path])
        XCTAssertTrue(m.stderr.contains("mixed.jsonl:2: mixes"), m.stderr)
        let good = try write("good.jsonl", #"{"query": "a", "positive": "b"}"# + "\n" + #"{"query": "c", "positive": "d"}"#)
        let wide = try Tool.run(["train", "--task", "embedding", "--data", good, "--model", model, "--matryoshka", "64,999",
                                 "--out", dir.appendingPathComponent("x").path])
        XCTAssertNotEqual(wide.status, 0)
        XCTAssertTrue(wide.stderr.contains("Matryoshka dimension 999 must be between 1 and the embedding's 64"), wide.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("x").path), "nothing written on an error")
    }
}
