import Foundation

/// Tests/Fixtures: reference data copied from the peers' outputs (see its README).
public let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// A fresh temporary directory, removed by the returned closure.
public func temporaryDirectory(_ label: String) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// Writes a safetensors file from (name, dtype, shape, raw bytes) entries; `headerOverride` replaces the
/// JSON header to make corrupt files.
public func writeSafetensors(_ url: URL, _ entries: [(String, String, [Int], [UInt8])], headerOverride: String? = nil) throws {
    var header: [String: Any] = [:]
    var data: [UInt8] = []
    for (name, dtype, shape, bytes) in entries {
        header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [data.count, data.count + bytes.count]]
        data += bytes
    }
    let encoded = try JSONSerialization.data(withJSONObject: header, options: .sortedKeys)
    var json = headerOverride.map { Array($0.utf8) } ?? Array(encoded)
    while json.count % 8 != 0 { json.append(0x20) }
    var out = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
    out += json + data
    try Data(out).write(to: url)
}

/// Little-endian F32 bytes.
public func f32Bytes(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

/// BF16 bytes (the upper half of each F32).
public func bf16Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { v -> [UInt8] in let b = UInt16(v.bitPattern >> 16); return [UInt8(b & 0xFF), UInt8(b >> 8)] }
}

public func cosine(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    var dot = 0.0, na = 0.0, nb = 0.0
    for (x, y) in zip(a, b) {
        dot += Double(x) * Double(y)
        na += Double(x) * Double(x)
        nb += Double(y) * Double(y)
    }
    return dot / max((na * nb).squareRoot(), 1e-30)
}

/// Largest |a − b| over two equally long runs.
public func maxAbsDiff<A: Collection<Float>, B: Collection<Float>>(_ a: A, _ b: B) -> Float {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}

/// The tiny random Gemma 3 checkpoint (vocabulary 320) as a plain Hugging Face directory with a tokenizer of
/// its own: Gemma's tokenizer.json layout (▁ for spaces, BPE with byte fallback, <bos>/<eos> added) over a
/// 320-token vocabulary, so any text encodes to ids the checkpoint has. For tests that need text in and
/// vectors out in milliseconds; its outputs mean nothing.
public func tinyEncoderDirectory(in parent: URL) throws -> URL {
    let model = parent.appendingPathComponent("tiny-gemma3")
    try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
    for name in ["config.json", "model.safetensors"] {
        try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("tiny/gemma3/\(name)"),
                                         to: model.appendingPathComponent(name))
    }
    var vocab: [String: Int] = ["<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3]
    for b in 0..<256 { vocab[String(format: "<0x%02X>", b)] = 4 + b }
    let letters = "abcdefghijklmnopqrstuvwxyz".map(String.init)
    vocab["▁"] = 260
    for (i, l) in letters.enumerated() {
        vocab[l] = 261 + i
        vocab["▁" + l] = 287 + i
    }
    let extra = [("t", "h"), ("h", "e"), ("i", "n"), ("e", "r"), ("a", "n"), ("▁t", "h"), ("e", "n")]
    for (i, pair) in extra.enumerated() { vocab[pair.0 + pair.1] = 313 + i }
    let merges = letters.map { ["▁", $0] } + extra.map { [$0.0, $0.1] }
    let special = ["<pad>", "<eos>", "<bos>", "<unk>"].enumerated().map { id, content in
        ["id": id, "content": content, "single_word": false, "lstrip": false, "rstrip": false,
         "normalized": false, "special": true] as [String: Any]
    }
    let tokenizer: [String: Any] = [
        "version": "1.0",
        "added_tokens": special,
        "normalizer": ["type": "Replace", "pattern": ["String": " "], "content": "▁"],
        "pre_tokenizer": ["type": "Split", "pattern": ["String": " "], "behavior": "MergedWithPrevious", "invert": false],
        "post_processor": [
            "type": "TemplateProcessing",
            "single": [["SpecialToken": ["id": "<bos>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                       ["SpecialToken": ["id": "<eos>", "type_id": 0]]],
            "pair": [["SpecialToken": ["id": "<bos>", "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                     ["SpecialToken": ["id": "<eos>", "type_id": 0]], ["Sequence": ["id": "B", "type_id": 1]],
                     ["SpecialToken": ["id": "<eos>", "type_id": 1]]],
            "special_tokens": [
                "<bos>": ["id": "<bos>", "ids": [2], "tokens": ["<bos>"]],
                "<eos>": ["id": "<eos>", "ids": [1], "tokens": ["<eos>"]],
            ],
        ],
        "decoder": ["type": "Sequence", "decoders": [
            ["type": "Replace", "pattern": ["String": "▁"], "content": " "], ["type": "ByteFallback"], ["type": "Fuse"],
        ]],
        "model": ["type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
                  "vocab": vocab, "merges": merges],
    ]
    try JSONSerialization.data(withJSONObject: tokenizer, options: .sortedKeys)
        .write(to: model.appendingPathComponent("tokenizer.json"))
    return model
}

/// `tinyEncoderDirectory` as a sentence-transformers directory (mean pooling, Normalize) with EmbeddingGemma's
/// query and document prompts, whose "title: none" slot makes indexes built with it record a title field.
public func tinyTitledEncoderDirectory(in parent: URL) throws -> URL {
    let model = try tinyEncoderDirectory(in: parent)
    try #"[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}, {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}, {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]"#
        .write(to: model.appendingPathComponent("modules.json"), atomically: true, encoding: .utf8)
    try #"{"max_seq_length": 64, "do_lower_case": false}"#.write(to: model.appendingPathComponent("sentence_bert_config.json"), atomically: true, encoding: .utf8)
    try #"{"prompts": {"query": "task: search result | query: ", "document": "title: none | text: "}, "default_prompt_name": null}"#
        .write(to: model.appendingPathComponent("config_sentence_transformers.json"), atomically: true, encoding: .utf8)
    try FileManager.default.createDirectory(at: model.appendingPathComponent("1_Pooling"), withIntermediateDirectories: true)
    try #"{"word_embedding_dimension": 64, "pooling_mode_mean_tokens": true, "include_prompt": true}"#
        .write(to: model.appendingPathComponent("1_Pooling/config.json"), atomically: true, encoding: .utf8)
    return model
}

/// A GGUF metadata value for `writeGGUF`.
public enum GGUFTestValue {
    case string(String), uint32(UInt32), int32(Int32), float32(Float), bool(Bool)
    case strings([String]), floats([Float]), int32s([Int32])
}

/// Writes a GGUF (version 3) file: metadata in the given order, then tensors (dimensions fastest first, as
/// GGUF lists them; `type` a ggml type number), each aligned to 32 bytes.
public func writeGGUF(_ url: URL, metadata: [(String, GGUFTestValue)], tensors: [(name: String, dimensions: [Int], type: UInt32, bytes: [UInt8])]) throws {
    var out: [UInt8] = Array("GGUF".utf8)
    func u32(_ v: UInt32) { out += withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func u64(_ v: UInt64) { out += withUnsafeBytes(of: v.littleEndian) { Array($0) } }
    func string(_ s: String) { u64(UInt64(s.utf8.count)); out += Array(s.utf8) }
    u32(3)
    u64(UInt64(tensors.count))
    u64(UInt64(metadata.count))
    for (key, value) in metadata {
        string(key)
        switch value {
        case let .string(s): u32(8); string(s)
        case let .uint32(v): u32(4); u32(v)
        case let .int32(v): u32(5); u32(UInt32(bitPattern: v))
        case let .float32(v): u32(6); u32(v.bitPattern)
        case let .bool(v): u32(7); out.append(v ? 1 : 0)
        case let .strings(list): u32(9); u32(8); u64(UInt64(list.count)); list.forEach(string)
        case let .floats(list): u32(9); u32(6); u64(UInt64(list.count)); list.forEach { u32($0.bitPattern) }
        case let .int32s(list): u32(9); u32(5); u64(UInt64(list.count)); list.forEach { u32(UInt32(bitPattern: $0)) }
        }
    }
    var offset = 0
    var offsets: [Int] = []
    for t in tensors {
        offsets.append(offset)
        offset = (offset + t.bytes.count + 31) / 32 * 32
    }
    for (t, o) in zip(tensors, offsets) {
        string(t.name)
        u32(UInt32(t.dimensions.count))
        t.dimensions.forEach { u64(UInt64($0)) }
        u32(t.type)
        u64(UInt64(o))
    }
    while out.count % 32 != 0 { out.append(0) }
    let dataStart = out.count
    for (t, o) in zip(tensors, offsets) {
        while out.count < dataStart + o { out.append(0) }
        out += t.bytes
    }
    try Data(out).write(to: url)
}
