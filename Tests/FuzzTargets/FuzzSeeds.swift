import Foundation
import GemmaTokenizer
import ModelFormats
import TestSupport

/// Seed corpora from real files: the fixtures' checkpoints and configs, the tiny model converted to GGUF the
/// way llama.cpp lays it out, the prepared sentence-transformers layout, index manifest and heads, the
/// Debian rows, and one valid request per route. The fuzzer mutates from these, so it starts deep inside
/// each parser instead of at its magic number.
public enum FuzzSeeds {
    public static func write(to root: URL, workspace: FuzzWorkspace) throws {
        let fm = FileManager.default
        var count = 0
        func seed(_ target: FuzzTarget, _ data: Data) throws {
            let directory = root.appendingPathComponent(target.rawValue)
            try fm.createDirectory(at: directory, withIntermediateDirectories: true)
            count += 1
            try data.write(to: directory.appendingPathComponent(String(format: "seed-%03d", count)))
        }
        func read(_ url: URL) throws -> Data { try Data(contentsOf: url) }
        func selected(_ selector: Int, _ data: Data) -> Data { Data([UInt8(selector)]) + data }
        let fixtures = fixturesDirectory

        // safetensors: the tiny checkpoint, loss fixtures (F32 tensors of several shapes), the heads' weights.
        try seed(.safetensors, read(workspace.model.appendingPathComponent("model.safetensors")))
        for name in ["bce", "listnet-2pos", "margin-mse"] {
            try seed(.safetensors, read(fixtures.appendingPathComponent("rerank-losses/\(name).safetensors")))
        }
        for head in [workspace.classifierHead, workspace.rerankerHead] {
            try seed(.safetensors, read(head.appendingPathComponent("head.safetensors")))
        }

        // gguf: the tiny model with its vocabulary, in F32 and with Q8_0 projections.
        try seed(.gguf, try tinyGGUF(workspace: workspace, quantized: false))
        try seed(.gguf, try tinyGGUF(workspace: workspace, quantized: true))

        try seed(.tokenizer, read(workspace.model.appendingPathComponent("tokenizer.json")))

        for family in ["gemma", "gemma2", "gemma3"] {
            try seed(.config, read(fixtures.appendingPathComponent("tiny/\(family)/config.json")))
        }

        for (i, name) in FuzzWorkspace.sentenceTransformersFiles.enumerated() {
            try seed(.stConfig, selected(i, read(workspace.sentenceTransformers.appendingPathComponent(name))))
        }

        // jsonl: each reader with rows of its own shape.
        let debian = try read(fixtures.appendingPathComponent("debian/debian-120.jsonl"))
        let firstRows = Data(String(decoding: debian, as: UTF8.self).split(separator: "\n").prefix(8).joined(separator: "\n").utf8)
        let rows: [String] = [
            #"{"text": "a", "n": 1}"#,
            "{\"text\": \"mail server\", \"label\": \"mail\"}\n{\"text\": \"editor\", \"label\": \"editors\"}",
            "{\"text\": \"big\", \"label\": [2.5, 1]}\n{\"text\": \"small\", \"label\": [1, -1]}",
            "{\"id\": \"d1\", \"text\": \"doc\", \"meta\": {\"k\": 1}}\n{\"id\": 7, \"text\": \"x\"}",
            #"{"query": "q", "positive": "p", "negatives": ["n1", "n2"], "scores": [0.1, 0.2]}"#,
            "{\"anchor\": \"a\", \"positive\": \"p\", \"negative\": \"n\"}\n{\"query\": \"q\", \"positive\": \"p\", \"negatives\": [\"n\"]}",
            "{\"id\": \"q1\", \"text\": \"query\", \"relevant\": [\"d1\"]}",
        ]
        for (i, text) in rows.enumerated() { try seed(.jsonl, selected(i, Data(text.utf8))) }
        try seed(.jsonl, selected(3, firstRows))
        try seed(.jsonl, selected(5, Data("{\"sentence1\": \"a\", \"sentence2\": \"b\", \"score\": 0.5}".utf8)))

        // http: one valid body per route, and the list forms.
        let bodies = [
            #"{"input": ["the cat sat", "a dog"], "model": "tiny", "dimensions": 32, "encoding_format": "base64"}"#,
            #"{"inputs": "hello there", "normalize": false, "truncate": true, "prompt_name": null}"#,
            #"{"query": "cat", "texts": ["the cat sat", "a dog ran"], "raw_scores": true, "return_text": true, "top_n": 1}"#,
            #"{"inputs": ["tiny model text", "more words"], "head": "sections", "truncate": true}"#,
            #"{"query": "cat", "k": 3, "mode": "hybrid", "index": "docs", "rerank": true}"#,
            #"{"inputs": ["the cat sat", "é 🙂"], "add_special_tokens": false}"#,
        ]
        for (i, body) in bodies.enumerated() { try seed(.http, selected(i, Data(body.utf8))) }
        try seed(.http, selected(2, Data(#"{"query": "cat", "documents": [{"text": "a"}, "b"], "return_documents": false}"#.utf8)))

        try seed(.manifest, read(workspace.index.appendingPathComponent("manifest.json")))

        for (head, bit) in [(workspace.classifierHead, 0), (workspace.rerankerHead, 2)] {
            try seed(.head, selected(bit, read(head.appendingPathComponent("head.json"))))
            try seed(.head, selected(bit | 1, read(head.appendingPathComponent("head.safetensors"))))
        }
    }

    /// The tiny Gemma 3 checkpoint as GGUF (`writeTinyGGUF`) with the tiny tokenizer's vocabulary as
    /// `tokenizer.ggml.*` metadata; projections in F32 or Q8_0.
    static func tinyGGUF(workspace: FuzzWorkspace, quantized: Bool) throws -> Data {
        let tokenizer = try GemmaTokenizer.load(tokenizerJSON: workspace.model.appendingPathComponent("tokenizer.json"))
        let tokens = (0..<320).map { tokenizer.token(for: Int32($0)) ?? "<unused\($0)>" }
        let types: [Int32] = tokens.indices.map { $0 < 4 ? 3 : ($0 < 260 ? 6 : 1) }   // control, byte, normal
        let vocabulary: [(String, GGUFTestValue)] = [
            ("tokenizer.ggml.model", .string("llama")),
            ("tokenizer.ggml.tokens", .strings(tokens)),
            ("tokenizer.ggml.scores", .floats(tokens.indices.map { -Float($0) })),
            ("tokenizer.ggml.token_type", .int32s(types)),
            ("tokenizer.ggml.bos_token_id", .uint32(2)),
            ("tokenizer.ggml.eos_token_id", .uint32(1)),
            ("tokenizer.ggml.padding_token_id", .uint32(0)),
            ("tokenizer.ggml.unknown_token_id", .uint32(3)),
        ]
        let url = workspace.directory.appendingPathComponent("seed.gguf")
        try writeTinyGGUF("gemma3", architecture: "gemma3", to: url, linearType: quantized ? 8 : 0, extraMetadata: vocabulary)
        return try Data(contentsOf: url)
    }
}
