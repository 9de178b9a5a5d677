import Foundation
import GemmaModel
import GemmaTokenizer
import ModelFormats

/// What kind of model a path holds, decided once from its contents (never from its name): the encoder, the
/// tokenizer loader and the tools all take this instead of looking at the path again.
public enum ModelSource: Sendable, Equatable {
    /// A sentence-transformers directory (`modules.json`): a Transformer module plus pooling, Dense, Normalize.
    case sentenceTransformers(URL)
    /// A Hugging Face model directory (`config.json`, safetensors weights, `tokenizer.json`).
    case huggingFace(URL)
    /// A GGUF file: config, weights and vocabulary in one file.
    case gguf(URL)

    /// The path the source was opened from: the directory, or the GGUF file.
    public var location: URL {
        switch self {
        case .sentenceTransformers(let url), .huggingFace(let url), .gguf(let url): url
        }
    }

    /// Looks at `url`: a directory with `modules.json` or `config.json`, a directory holding exactly one GGUF
    /// file (the cache keeps single-file models that way), or a file starting with the GGUF magic.
    public init(at url: URL) throws(EncoderError) {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw .modelNotFound("\(url.path): no such file or directory")
        }
        guard isDirectory.boolValue else {
            guard GGUFFile.hasMagic(url) else {
                throw .unsupported("\(url.path): not a model (expected a GGUF file or a model directory)")
            }
            self = .gguf(url)
            return
        }
        if fm.fileExists(atPath: url.appendingPathComponent("modules.json").path) {
            self = .sentenceTransformers(url)
        } else if fm.fileExists(atPath: url.appendingPathComponent("config.json").path) {
            self = .huggingFace(url)
        } else {
            let files = ((try? fm.contentsOfDirectory(atPath: url.path)) ?? []).sorted()
                .map { url.appendingPathComponent($0) }.filter(GGUFFile.hasMagic)
            guard files.count == 1 else {
                throw .unsupported("\(url.path): no modules.json or config.json, and \(files.count) GGUF files (need exactly one)")
            }
            self = .gguf(files[0])
        }
    }

    public var isSentenceTransformer: Bool { if case .sentenceTransformers = self { true } else { false } }
}
