import Foundation
import GemmaEncoder
import TestSupport
import XCTest


/// A model from the cache; a missing model fails the test (CI fetches it first) instead of skipping.
func cachedModel(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> URL {
    guard let url = ModelStore().cachedPath(for: name) else {
        XCTFail("model \(name) is not in the cache \(ModelStore().modelsDirectory.path): run `gemma-encoder models fetch \(name)` (scripts/test does)",
                file: file, line: line)
        throw XCTSkip("model missing")
    }
    return url
}

/// One encoder per process: loading maps 1.2 GB and parses a 33 MB tokenizer.json.
enum SharedEncoder {
    nonisolated(unsafe) private static var cached: TextEncoder?

    static func embeddingGemma() throws -> TextEncoder {
        if let cached { return cached }
        let encoder = try TextEncoder(directory: try cachedModel(KnownModel.embeddingGemma300M.name))
        cached = encoder
        return encoder
    }
}
