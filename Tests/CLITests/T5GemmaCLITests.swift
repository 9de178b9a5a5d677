import Foundation
import TestSupport
import XCTest

/// A T5Gemma checkpoint as a user points the tools at it (the tiny T5Gemma 2 fixture, copied): its encoder
/// embeds, indexes and fine-tunes, and the fine-tuned encoder is the whole checkpoint again with only the
/// encoder's tensors changed.
final class T5GemmaCLITests: XCTestCase {
    var dir: URL!
    var model: String!

    override func setUpWithError() throws {
        dir = try temporaryDirectory("t5gemma-cli")
        let copy = dir.appendingPathComponent("t5gemma2")
        try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("tiny/t5gemma2"), to: copy)
        model = copy.path
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    /// Tensor name → its bytes, from a safetensors file's header.
    func tensors(_ path: String) throws -> [String: Data] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        let length = Int(data.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = try XCTUnwrap(JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as? [String: Any])
        var out: [String: Data] = [:]
        for (name, entry) in header where name != "__metadata__" {
            let offsets = try XCTUnwrap((entry as? [String: Any])?["data_offsets"] as? [Int])
            out[name] = data.subdata(in: (8 + length + offsets[0])..<(8 + length + offsets[1]))
        }
        return out
    }

    func testT5GemmaEncoderEmbedsIndexesAndFineTunes() throws {
        let e = try Tool.run(["embed", "--model", model, "--text", "cat x"])
        XCTAssertEqual(e.status, 0, e.stderr)
        XCTAssertEqual((try? JSONSerialization.jsonObject(with: Data(e.stdout.utf8)) as? [Double])?.count, 64, e.stdout)

        let corpus = dir.appendingPathComponent("corpus.jsonl")
        try ["cat sat", "dog ran", "bird sang", "fish swam"].enumerated()
            .map { #"{"id": "d\#($0.offset)", "text": "\#($0.element)"}"# }.joined(separator: "\n")
            .write(to: corpus, atomically: true, encoding: .utf8)
        let index = dir.appendingPathComponent("index").path
        let b = try Tool.run(["index", "build", "--index", index, "--corpus", corpus.path, "--model", model, "--factory", "Flat"])
        XCTAssertEqual(b.status, 0, b.stderr)
        let s = try Tool.run(["search", "--index", index, "--json", "-k", "2", "cat sat"])
        XCTAssertEqual(s.status, 0, s.stderr)
        XCTAssertTrue(s.stdout.contains("\"d0\""), s.stdout)

        let rows = dir.appendingPathComponent("rows.jsonl")
        try (0..<12).map { #"{"text": "\#(["cat", "dog", "sun"][$0 % 3]) \#($0)", "label": "\#(["x", "y", "z"][$0 % 3])"}"# }
            .joined(separator: "\n").write(to: rows, atomically: true, encoding: .utf8)
        let head = dir.appendingPathComponent("head").path
        let t = try Tool.run(["train", "--task", "classification", "--data", rows.path, "--model", model, "--finetune", "all",
                              "--epochs", "2", "--batch-size", "4", "--encoder-lr", "1e-3", "--head-init", "random", "--out", head])
        XCTAssertEqual(t.status, 0, t.stderr)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: head + "/encoder/config.json"))) as? [String: Any]
        XCTAssertEqual(config?["model_type"] as? String, "t5gemma2", "the fine-tuned encoder stays a T5Gemma 2 checkpoint")
        let before = try tensors(model + "/model.safetensors"), after = try tensors(head + "/encoder/model.safetensors")
        XCTAssertEqual(Set(after.keys), Set(before.keys), "every tensor of the source, no other")
        for (name, bytes) in before where !name.hasPrefix("model.encoder.layers.") && name != "model.encoder.norm.weight" {
            XCTAssertEqual(after[name], bytes, "\(name) is not the encoder's: kept as it was")
        }
        XCTAssertNotEqual(after["model.encoder.layers.0.self_attn.q_proj.weight"], before["model.encoder.layers.0.self_attn.q_proj.weight"],
                          "the encoder's own weights trained")
        // What cannot be written back into the checkpoint is refused, naming why.
        let adapter = try Tool.run(["train", "--task", "classification", "--data", rows.path, "--model", model, "--finetune", "lora:2",
                                    "--save-adapter", "--epochs", "1", "--out", dir.appendingPathComponent("lora").path])
        XCTAssertNotEqual(adapter.status, 0)
        XCTAssertTrue(adapter.stderr.contains("PEFT adapter files for a T5Gemma encoder"), adapter.stderr)
        let student = try Tool.run(["train", "--task", "distill", "--teacher", model, "--model", model, "--student-layers", "2",
                                    "--data", corpus.path, "--epochs", "1", "--out", dir.appendingPathComponent("student").path])
        XCTAssertNotEqual(student.status, 0)
        XCTAssertTrue(student.stderr.contains("cannot be written back"), student.stderr)

        let c = try Tool.run(["classify", "--head", head, "--text", "cat 1"])
        XCTAssertEqual(c.status, 0, c.stderr)
        let tuned = try Tool.run(["embed", "--model", head + "/encoder", "--text", "cat x"])
        XCTAssertEqual(tuned.status, 0, tuned.stderr)
        XCTAssertNotEqual(tuned.stdout, e.stdout)
    }

    /// `rerank --scoring first-token:TOKEN`: every candidate scored by the decoder's first-step logit of the token
    /// (by text or #ID, the same token the same score), best first; bad tokens, templates and models are errors.
    func testFirstTokenScoringRanksCandidates() throws {
        let candidates = dir.appendingPathComponent("candidates.jsonl")
        try ["a text editor", "a game", "an editor for text", "a web browser"].enumerated()
            .map { #"{"id": "c\#($0.offset)", "text": "\#($0.element)"}"# }.joined(separator: "\n")
            .write(to: candidates, atomically: true, encoding: .utf8)
        func rerank(_ extra: [String]) throws -> Tool.Result {
            try Tool.run(["rerank", "--query", "edit text", "--input", candidates.path, "--json"] + extra)
        }
        let byID = try rerank(["--model", model, "--scoring", "first-token:#5"])
        XCTAssertEqual(byID.status, 0, byID.stderr)
        let rows = byID.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        XCTAssertEqual(rows.count, 4)
        let scores = rows.compactMap { $0["score"] as? Double }
        XCTAssertEqual(scores, scores.sorted(by: >), "best first")
        XCTAssertGreaterThan(Set(scores).count, 1, "the pairs score differently")
        // The same token by its text gives the same ranking and scores.
        let vocabulary = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: model + "/tokenizer.json"))) as? [String: Any])
        let vocab = try XCTUnwrap((vocabulary["model"] as? [String: Any])?["vocab"] as? [String: Int])
        let text = try XCTUnwrap(vocab.first { $0.value == 5 }?.key)
        let byText = try rerank(["--model", model, "--scoring", "first-token:" + text])
        XCTAssertEqual(byText.status, 0, byText.stderr)
        XCTAssertEqual(byText.stdout, byID.stdout)

        let unknown = try rerank(["--model", model, "--scoring", "first-token:no-such-token"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("'no-such-token' is not a token"), unknown.stderr)
        let template = try rerank(["--model", model, "--scoring", "first-token:#5", "--template", "{query} only"])
        XCTAssertNotEqual(template.status, 0)
        XCTAssertTrue(template.stderr.contains("{document}"), template.stderr)
        let plain = try tinyEncoderDirectory(in: dir).path
        let notT5 = try rerank(["--model", plain, "--scoring", "first-token:#5"])
        XCTAssertNotEqual(notT5.status, 0)
        XCTAssertTrue(notT5.stderr.contains("needs a T5Gemma checkpoint"), notT5.stderr)
        let stray = try rerank(["--reranker", dir.path, "--template", "{query} {document}"])
        XCTAssertNotEqual(stray.status, 0)
        XCTAssertTrue(stray.stderr.contains("--template applies to --scoring"), stray.stderr)
        let neither = try rerank([])
        XCTAssertNotEqual(neither.status, 0)
        XCTAssertTrue(neither.stderr.contains("--reranker"), neither.stderr)
    }

    /// `train --task rerank --scoring first-token:TOKEN` fine-tunes the encoder and the decoder together (RankT5): the
    /// training loss falls, OUT is the whole checkpoint again with both stacks changed and the embeddings not, and
    /// `rerank --reranker OUT` scores with the recorded token and template, as `--scoring` on OUT does, and so does
    /// `serve --reranker OUT` on /rerank.
    func testFirstTokenRankerTrainsAndReranks() async throws {
        let words = ["cat", "dog", "sun", "sea", "tree", "rock"]
        let pairs = dir.appendingPathComponent("pairs.jsonl")
        try (0..<24).map { i -> String in
            let w = words[i % words.count], others = words.filter { $0 != w }
            return #"{"query": "\#(w) \#(i)", "positive": "a \#(w) here", "negatives": ["a \#(others[i % 5]) here", "a \#(others[(i + 2) % 5]) here"]}"#
        }.joined(separator: "\n").write(to: pairs, atomically: true, encoding: .utf8)
        let out = dir.appendingPathComponent("ranker").path
        let args = ["train", "--task", "rerank", "--scoring", "first-token:#5", "--data", pairs.path, "--model", model!, "--negatives", "2",
                    "--epochs", "4", "--batch-size", "6", "--encoder-lr", "1e-3", "--out", out]
        let t = try Tool.run(args + ["--finetune", "all"])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stderr.contains("first-token ranker"), t.stderr)
        let losses = t.stderr.split(separator: "\n").compactMap { line -> Double? in
            guard line.hasPrefix("epoch"), let r = line.range(of: "train loss ") else { return nil }
            return Double(line[r.upperBound...].prefix { !$0.isWhitespace })
        }
        XCTAssertEqual(losses.count, 4, t.stderr)
        XCTAssertLessThan(losses.last!, losses.first!, "training lowers the ranking loss: \(losses)")

        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any]
        XCTAssertEqual(config?["model_type"] as? String, "t5gemma2")
        let ranker = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/first_token_ranker.json"))) as? [String: Any]
        XCTAssertEqual(ranker?["token_id"] as? Int, 5)
        let before = try tensors(model + "/model.safetensors"), after = try tensors(out + "/model.safetensors")
        XCTAssertEqual(Set(after.keys), Set(before.keys), "every tensor of the source, no other")
        for name in ["model.encoder.layers.0.self_attn.q_proj.weight", "model.decoder.layers.0.self_attn.q_proj.weight",
                     "model.decoder.layers.1.mlp.down_proj.weight", "model.decoder.norm.weight"] {
            XCTAssertNotEqual(after[name], before[name], "\(name) trained")
        }
        XCTAssertEqual(after["model.encoder.embed_tokens.weight"], before["model.encoder.embed_tokens.weight"], "embeddings stay frozen")

        let candidates = dir.appendingPathComponent("candidates.jsonl")
        try ["a dog here", "a cat here", "a sun here"].enumerated()
            .map { #"{"id": "c\#($0.offset)", "text": "\#($0.element)"}"# }.joined(separator: "\n")
            .write(to: candidates, atomically: true, encoding: .utf8)
        let trained = try Tool.run(["rerank", "--reranker", out, "--query", "cat 7", "--input", candidates.path, "--json"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let explicit = try Tool.run(["rerank", "--model", out, "--scoring", "first-token:#5", "--query", "cat 7", "--input", candidates.path, "--json"])
        XCTAssertEqual(explicit.stdout, trained.stdout, "the recorded token and template")
        XCTAssertEqual(trained.stdout.split(separator: "\n").count, 3)
        // The server encodes the pairs through its scheduler, then takes the decoder step: the same scores.
        let cli = try trained.stdout.split(separator: "\n").map { try XCTUnwrap(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        let (server, url) = try startServer(["--model", "ranker=\(out)", "--reranker", out])
        defer { server.terminate() }
        let (status, answer) = try await postJSON(url, "rerank", ["query": "cat 7", "texts": ["a dog here", "a cat here", "a sun here"],
                                                                  "raw_scores": true])
        XCTAssertEqual(status, 200, "\(answer)")
        let served = try XCTUnwrap(answer as? [[String: Any]])
        XCTAssertEqual(served.map { "c\($0["index"] as! Int)" }, cli.map { $0["id"] as! String }, "the same order")
        for (s, c) in zip(served, cli) {
            let expected = c["score"] as! Double
            XCTAssertEqual(s["score"] as! Double, expected, accuracy: 1e-4 * max(1, abs(expected)))
        }

        let otherModel = try Tool.run(["rerank", "--reranker", out, "--model", model!, "--query", "cat 7", "--input", candidates.path])
        XCTAssertNotEqual(otherModel.status, 0)
        XCTAssertTrue(otherModel.stderr.contains("drop --model"), otherModel.stderr)
        let embeddings = try Tool.run(args + ["--finetune", "all", "--train-embeddings"])
        XCTAssertNotEqual(embeddings.status, 0)
        XCTAssertTrue(embeddings.stderr.contains("--train-embeddings"), embeddings.stderr)

        let frozen = try Tool.run(args)
        XCTAssertNotEqual(frozen.status, 0)
        XCTAssertTrue(frozen.stderr.contains("--finetune"), frozen.stderr)
        let lora = try Tool.run(args + ["--finetune", "lora:2"])
        XCTAssertNotEqual(lora.status, 0)
        XCTAssertTrue(lora.stderr.contains("all or top:K"), lora.stderr)
        let plain = try tinyEncoderDirectory(in: dir).path
        let notT5 = try Tool.run(["train", "--task", "rerank", "--scoring", "first-token:#5", "--data", pairs.path, "--model", plain,
                                  "--negatives", "2", "--finetune", "all", "--out", out + "-plain"])
        XCTAssertNotEqual(notT5.status, 0)
        XCTAssertTrue(notT5.stderr.contains("T5Gemma"), notT5.stderr)

        // bench-train times the same training step.
        let texts = dir.appendingPathComponent("texts.jsonl")
        try (0..<8).map { #"{"text": "a \#(words[$0 % words.count]) text \#($0)"}"# }.joined(separator: "\n")
            .write(to: texts, atomically: true, encoding: .utf8)
        let bench = try Tool.run(["bench-train", "--model", model!, "--input", texts.path, "--batch-size", "4", "--steps", "1",
                                  "--scoring", "first-token:#5", "--json"])
        XCTAssertEqual(bench.status, 0, bench.stderr)
        let report = try JSONSerialization.jsonObject(with: Data(bench.stdout.utf8)) as? [String: Any]
        XCTAssertEqual(report?["scoring"] as? String, "first-token:#5")
        XCTAssertGreaterThan(Double("\(report?["tokens_per_s"] ?? 0)") ?? 0, 0)
    }

    /// `bench` on a T5Gemma checkpoint adds the pair-scoring figures: the encoder-decoder's first-token scoring next
    /// to its own encoder as a cross-encoder and to another model's, on the same pairs, with their ratios.
    func testBenchReportsPairScoringNextToCrossEncoders() throws {
        let input = dir.appendingPathComponent("texts.jsonl")
        try (0..<6).map { #"{"text": "document \#($0) about files"}"# }.joined(separator: "\n")
            .write(to: input, atomically: true, encoding: .utf8)
        let other = try tinyEncoderDirectory(in: dir).path
        let r = try Tool.run(["bench", "--json", "--model", model, "--input", input.path, "--queries", "2", "--scaling-lengths", "16",
                              "--cross-encoder-model", other])
        XCTAssertEqual(r.status, 0, r.stderr)
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        func number(_ key: String) -> Double { Double(report[key] as? String ?? "") ?? (report[key] as? NSNumber)?.doubleValue ?? -1 }
        XCTAssertEqual(number("pair_scoring_pairs"), 6, r.stdout)
        for key in ["pair_scoring_encoder_decoder_pairs_per_s", "pair_scoring_same_encoder_cross_encoder_pairs_per_s",
                    "pair_scoring_cross_encoder_pairs_per_s"] {
            XCTAssertGreaterThan(number(key), 0, "\(key) in \(r.stdout)")
        }
        XCTAssertEqual(number("pair_scoring_encoder_decoder_vs_same_encoder"),
                       number("pair_scoring_encoder_decoder_pairs_per_s") / number("pair_scoring_same_encoder_cross_encoder_pairs_per_s"),
                       accuracy: 0.01)
    }
}
