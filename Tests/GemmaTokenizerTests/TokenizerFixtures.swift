import Foundation
import XCTest
import GemmaTokenizer
import ModelFormats

/// Fixtures live in Tests/Fixtures/tokenizer, found relative to this source file.
enum Fixtures {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizer")

    struct Row { let text: String; let ids: [Int32] }

    /// Rows of a `{"text", "ids"}` JSON-lines fixture.
    static func rows(_ name: String) throws -> [Row] {
        let text = try String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8)
        return try text.split(separator: "\n").map { line in
            let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let ids = try XCTUnwrap(obj["ids"] as? [Int]).map(Int32.init)
            return Row(text: try XCTUnwrap(obj["text"] as? String), ids: ids)
        }
    }
}

/// Models come from the gemma-encoder cache (`GEMMA_ENCODER_CACHE`, default ~/.cache/gemma-encoder).
/// A missing model is a failure that says how to fetch it, never a silent skip.
enum ModelCache {
    struct MissingModel: Error, CustomStringConvertible { let message: String; var description: String { message } }

    static var root: URL {
        if let env = ProcessInfo.processInfo.environment["GEMMA_ENCODER_CACHE"], !env.isEmpty {
            return URL(fileURLWithPath: env)
        }
        return FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/gemma-encoder")
    }

    static func path(model: String, file: String) throws -> URL {
        let url = root.appendingPathComponent("models/\(model)/\(file)")
        guard FileManager.default.fileExists(atPath: url.path) else {
            let message = "model \(model) is not in the cache (\(url.path)): run `gemma-encoder models fetch \(model)`"
            XCTFail(message)
            throw MissingModel(message: message)
        }
        return url
    }

    static func embeddingGemmaTokenizerJSON() throws -> URL {
        try path(model: "embeddinggemma-300m", file: "tokenizer.json")
    }

    static func gemma3GGUF() throws -> URL {
        try path(model: "gemma3-270m-q4_k_m", file: "gemma-3-270m-q4_k_m.gguf")
    }
}

/// Loaded once per test process: parsing the 33 MB tokenizer.json takes a few hundred milliseconds.
enum SharedTokenizers {
    nonisolated(unsafe) private static var hf: GemmaTokenizer?
    nonisolated(unsafe) private static var gguf: GemmaTokenizer?
    private static let lock = NSLock()

    static func embeddingGemma() throws -> GemmaTokenizer {
        let url = try ModelCache.embeddingGemmaTokenizerJSON()
        return try lock.withLock {
            if let hf { return hf }
            let t = try GemmaTokenizer.load(tokenizerJSON: url)
            hf = t
            return t
        }
    }

    static func gemma3() throws -> GemmaTokenizer {
        let url = try ModelCache.gemma3GGUF()
        return try lock.withLock {
            if let gguf { return gguf }
            let t = try GemmaTokenizer.load(gguf: try GGUFFile(url: url))
            gguf = t
            return t
        }
    }
}
