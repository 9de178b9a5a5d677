import DocumentIndex
import EncoderService
import Foundation
import GemmaEncoder
import Logging
import ServiceFixtures
import TaskHeads
import TestSupport

/// What the targets need prepared once per process: a directory of their own, pristine copies of the files an
/// input replaces (a tiny model, a sentence-transformers layout, an index, two heads) and a running service.
/// Each input starts from the pristine copies, so one input's files never leak into the next.
public final class FuzzWorkspace: Sendable {
    public let directory: URL
    public let fixture: ServerFixture
    public let service: EncoderService
    /// The tiny Gemma 3 checkpoint with its tokenizer (`config.json`, `model.safetensors`, `tokenizer.json`).
    public let model: URL
    /// The tiny model as a sentence-transformers directory: pooling, a Dense layer, Normalize, prompts.
    public let sentenceTransformers: URL
    /// The fixture's index (Flat, 40 documents), copied.
    public let index: URL
    /// The fixture's classification head and reranker, written as head directories.
    public let classifierHead: URL
    public let rerankerHead: URL

    /// The files of `sentenceTransformers` an `st-config` input can replace, in first-byte order.
    public static let sentenceTransformersFiles = ["modules.json", "1_Pooling/config.json", "2_Dense/config.json",
                                                   "2_Dense/model.safetensors", "config_sentence_transformers.json",
                                                   "sentence_bert_config.json"]

    public init() throws {
        directory = try temporaryDirectory("gemma-fuzz")
        fixture = try ServerFixture.shared()
        service = fixture.service()
        service.start()
        let pristine = directory.appendingPathComponent("pristine")
        try FileManager.default.createDirectory(at: pristine, withIntermediateDirectories: true)
        model = try tinyEncoderDirectory(in: pristine)
        sentenceTransformers = try Self.writeSentenceTransformers(from: model, to: pristine.appendingPathComponent("st"))
        index = pristine.appendingPathComponent("index")
        try FileManager.default.copyItem(at: fixture.index.directory, to: index)
        classifierHead = pristine.appendingPathComponent("classifier")
        try fixture.head.head.write(to: classifierHead)
        rerankerHead = pristine.appendingPathComponent("reranker")
        try fixture.reranker.head.write(to: rerankerHead)
    }

    /// A fresh copy of `pristine` at `name` inside the workspace (replacing the last input's copy).
    public func copy(_ pristine: URL, as name: String) throws -> URL {
        let target = directory.appendingPathComponent(name)
        try? FileManager.default.removeItem(at: target)
        try FileManager.default.copyItem(at: pristine, to: target)
        return target
    }

    /// `data` written to `name` inside the workspace.
    public func file(_ name: String, _ data: Data) throws -> URL {
        let url = directory.appendingPathComponent(name)
        try data.write(to: url)
        return url
    }

    /// The tiny model with mean pooling, a 64 → 32 Dense layer with tanh, Normalize, and two prompts: every
    /// sentence-transformers file the loader reads.
    private static func writeSentenceTransformers(from model: URL, to directory: URL) throws -> URL {
        try FileManager.default.copyItem(at: model, to: directory)
        func write(_ text: String, _ name: String) throws {
            let url = directory.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        try write(#"""
            [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
             {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
             {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
             {"idx": 3, "name": "3", "path": "3_Normalize", "type": "sentence_transformers.models.Normalize"}]
            """#, "modules.json")
        try write(#"{"word_embedding_dimension": 64, "pooling_mode_cls_token": false, "pooling_mode_mean_tokens": true, "pooling_mode_max_tokens": false, "pooling_mode_lasttoken": false, "include_prompt": true}"#,
                  "1_Pooling/config.json")
        try write(#"{"in_features": 64, "out_features": 32, "bias": false, "activation_function": "torch.nn.modules.activation.Tanh"}"#,
                  "2_Dense/config.json")
        let weights: [Float] = (0..<(32 * 64)).map { (i: Int) -> Float in Float((i * 37) % 101 - 50) / 500 }
        try writeSafetensors(directory.appendingPathComponent("2_Dense/model.safetensors"), [("linear.weight", "F32", [32, 64], f32Bytes(weights))])
        try write(#"{"prompts": {"query": "task: search result | query: ", "document": "title: none | text: "}, "default_prompt_name": null}"#,
                  "config_sentence_transformers.json")
        try write(#"{"max_seq_length": 64, "do_lower_case": false}"#, "sentence_bert_config.json")
        try FileManager.default.createDirectory(at: directory.appendingPathComponent("3_Normalize"), withIntermediateDirectories: true)
        return directory
    }
}
