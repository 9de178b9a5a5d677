import Foundation
import TestSupport
import XCTest

/// `train --finetune` as a user runs it, on the tiny checkpoint (its own 320-token tokenizer): the head
/// carries its encoder, the tools use it, LoRA writes PEFT's files, and a run killed with SIGKILL resumes to
/// the weights of a run never killed.
final class FineTuneCLITests: XCTestCase {
    var dir: URL!
    var model: String!

    override func setUpWithError() throws {
        dir = try temporaryDirectory("finetune-cli")
        model = try tinyEncoderDirectory(in: dir).path
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func rows(_ count: Int) throws -> String {
        let words = ["cat", "dog", "bird", "fish", "tree", "rock", "sun", "moon"]
        let lines = (0..<count).map { i in
            let label = ["x", "y", "z"][i % 3]
            return #"{"text": "\#(words[i % 8]) \#(label) \#(words[(i * 5) % 8]) \#(i)", "label": "\#(label)"}"#
        }
        let url = dir.appendingPathComponent("rows-\(count).jsonl")
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    func train(_ extra: [String], data: String, out: String) throws -> Tool.Result {
        try Tool.run(["train", "--task", "classification", "--data", data, "--model", model, "--batch-size", "4",
                      "--encoder-lr", "1e-3", "--out", out] + extra)
    }

    func testFineTunedHeadCarriesItsEncoder() throws {
        let data = try rows(30), head = dir.appendingPathComponent("head").path
        // A random head start: with the probe as epoch 0, this tiny run (3 validation rows) keeps the probe.
        let t = try train(["--finetune", "all", "--epochs", "2", "--residual-dropout", "0.1", "--head-init", "random",
                           "--layer-decay", "0.8", "--label-smoothing", "0.1"], data: data, out: head)
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stderr.contains("with the encoder fine-tuned (all)"), t.stderr)
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: head + "/encoder/config.json"))) as? [String: Any]
        XCTAssertEqual(config?["use_bidirectional_attention"] as? Bool, true)
        XCTAssertEqual(config?["model_type"] as? String, "gemma3_text")
        XCTAssertTrue(FileManager.default.fileExists(atPath: head + "/encoder/tokenizer.json"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: head + ".checkpoint"), "the checkpoint goes once the head is written")
        let headJSON = try String(contentsOfFile: head + "/head.json", encoding: .utf8)
        XCTAssertTrue(headJSON.contains("\"encoder\" : \"encoder\""), headJSON)
        XCTAssertTrue(headJSON.contains("\"layer_decay\" : 0.8"), "the run's settings are recorded: \(headJSON)")
        XCTAssertTrue(headJSON.contains("\"label_smoothing\" : 0.1"), "the run's settings are recorded: \(headJSON)")
        let frozenSmoothing = try train(["--label-smoothing", "0.1"], data: data, out: head + "-frozen")
        XCTAssertNotEqual(frozenSmoothing.status, 0, "a frozen head's fit has no label smoothing: refused, not ignored")
        XCTAssertTrue(frozenSmoothing.stderr.contains("--label-smoothing applies to fine-tuning"), frozenSmoothing.stderr)
        let badDecay = try train(["--finetune", "all", "--layer-decay", "1.5"], data: data, out: head + "-bad")
        XCTAssertNotEqual(badDecay.status, 0)
        XCTAssertTrue(badDecay.stderr.contains("--layer-decay must be in (0, 1]"), badDecay.stderr)

        // classify and eval find the encoder in the head (no --model); embed opens it as a model.
        let c = try Tool.run(["classify", "--head", head, "--text", "cat x"])
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertTrue(c.stdout.contains("\"label\""), c.stdout)
        let e = try Tool.run(["eval", "--head", head, "--data", data])
        XCTAssertEqual(e.status, 0, e.stderr)
        let tuned = try Tool.run(["embed", "--model", head + "/encoder", "--text", "cat x"])
        let base = try Tool.run(["embed", "--model", model, "--text", "cat x"])
        XCTAssertEqual(tuned.status, 0, tuned.stderr)
        XCTAssertNotEqual(tuned.stdout, base.stdout, "fine-tuning changed the encoder")
        // The base model is not the head's encoder any more.
        let wrong = try Tool.run(["classify", "--head", head, "--model", model, "--text", "cat"])
        XCTAssertNotEqual(wrong.status, 0)
        XCTAssertTrue(wrong.stderr.contains("trained on"), wrong.stderr)
    }

    func testLoRAWritesMergedWeightsAndPEFTAdapter() throws {
        let data = try rows(24), head = dir.appendingPathComponent("lora").path
        let t = try train(["--finetune", "lora:4", "--lora-targets", "q,v", "--epochs", "1", "--save-adapter"], data: data, out: head)
        XCTAssertEqual(t.status, 0, t.stderr)
        let adapter = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: head + "/adapter/adapter_config.json"))) as? [String: Any]
        XCTAssertEqual(adapter?["peft_type"] as? String, "LORA")
        XCTAssertEqual(adapter?["r"] as? Int, 4)
        XCTAssertEqual(adapter?["lora_alpha"] as? Double, 8)
        XCTAssertEqual(adapter?["target_modules"] as? [String], ["q_proj", "v_proj"])
        let weights = try Data(contentsOf: URL(fileURLWithPath: head + "/adapter/adapter_model.safetensors"))
        let header = String(decoding: weights.prefix(4096), as: UTF8.self)
        XCTAssertTrue(header.contains("base_model.model.layers.0.self_attn.q_proj.lora_A.weight"), header)
        XCTAssertTrue(header.contains("base_model.model.layers.3.self_attn.v_proj.lora_B.weight"), header)
        XCTAssertFalse(header.contains("k_proj"), header)
        XCTAssertFalse(FileManager.default.fileExists(atPath: head + "/encoder/adapter_config.json"),
                       "beside the merged weights, transformers would apply the adapter twice")
        let bad = try train(["--finetune", "lora:2", "--lora-targets", "q,w"], data: data, out: head)
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("unknown projection 'w'"), bad.stderr)
    }

    /// kill -9 in the middle of a run (checkpoints every step), `--resume`: the same head and encoder bytes as a
    /// run never interrupted.
    func testKilledRunResumesToTheSameWeights() throws {
        let data = try rows(120)
        let flags = ["--finetune", "top:2", "--epochs", "3", "--checkpoint-every", "1", "--attention-dropout", "0.1"]
        let whole = dir.appendingPathComponent("whole").path
        let w = try train(flags, data: data, out: whole)
        XCTAssertEqual(w.status, 0, w.stderr)

        let killed = dir.appendingPathComponent("killed").path
        let step = try Tool.killAtCheckpoint(["train", "--task", "classification", "--data", data, "--model", model, "--batch-size", "4",
                                              "--encoder-lr", "1e-3", "--out", killed] + flags, checkpoint: killed + ".checkpoint", step: 12)
        XCTAssertNotNil(step, "the run ended before it could be killed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: killed + "/head.json"))

        let r = try train(flags + ["--resume"], data: data, out: killed)
        XCTAssertEqual(r.status, 0, r.stderr)
        for file in ["head.safetensors", "encoder/model.safetensors"] {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(killed)/\(file)")),
                           try Data(contentsOf: URL(fileURLWithPath: "\(whole)/\(file)")), file)
        }
    }
}
