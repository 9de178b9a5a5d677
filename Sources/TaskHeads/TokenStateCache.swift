import AtomicFiles
import Foundation
import GemmaEncoder
import ModelFormats

/// Token states of a list of texts under one model, prompt and attention mode, computed once and kept on disk
/// (`<cache>/states/<key>.bin`), so training epochs, other pooling modes and re-runs never re-run the
/// encoder. The key hashes everything the states depend on (model, weight precision, attention, prompt, texts).
public struct TokenStateCache: Sendable {
    public let directory: URL

    public init(store: ModelStore = ModelStore()) {
        directory = store.root.appendingPathComponent("states")
    }

    public init(directory: URL) { self.directory = directory }

    /// Texts (tokenized with the prompt and the model's truncation), or inputs tokenized by the caller
    /// (reranker pairs, whose document is cut first).
    public struct Request: Sendable {
        public var texts: [String]
        public var prompt: String?
        public var tokenized: [EncoderInput]?
        public var attention: AttentionMode
        public var modelDigest: String

        public init(texts: [String], prompt: String?, attention: AttentionMode, modelDigest: String) {
            self.texts = texts
            self.prompt = prompt
            self.attention = attention
            self.modelDigest = modelDigest
        }

        public init(tokenized: [EncoderInput], attention: AttentionMode, modelDigest: String) {
            self.init(texts: [], prompt: nil, attention: attention, modelDigest: modelDigest)
            self.tokenized = tokenized
        }

        func inputs(_ encoder: TextEncoder) -> [EncoderInput] { tokenized ?? encoder.tokenize(texts, prompt: prompt) }

        func key(precision: WeightPrecision) -> String {
            var hash = SHA256()
            hash.update("token-states-v1\0\(modelDigest)\0\(precision.rawValue)\0\(attention.rawValue)\0\(prompt ?? "\u{1}")\0\(texts.count)\0")
            for text in texts { hash.update("\(text.utf8.count)\0\(text)") }
            if let tokenized {
                hash.update("ids\0\(tokenized.count)\0")
                for input in tokenized { hash.update(input.ids.map(String.init).joined(separator: ",") + ";") }
            }
            return hash.hexDigest()
        }
    }

    /// The states, from disk when cached, else computed in chunks (progress: texts done, total) and saved.
    /// `truncated` counts texts cut to the model's maximum length.
    public func states(_ request: Request, encoder: TextEncoder, chunk: Int = 512,
                       progress: ((Int, Int) -> Void)? = nil) throws -> (states: TokenStateSet, truncated: Int) {
        let url = directory.appendingPathComponent(request.key(precision: encoder.model.precision) + ".bin")
        let truncated = request.inputs(encoder).filter(\.truncated).count
        if let cached = try? Self.read(url) { return (cached, truncated) }
        let set = try Self.compute(request, encoder: encoder, chunk: chunk, progress: progress)
        try Self.write(set, to: url)
        return (set, truncated)
    }

    static let magic = Array("GETS0001".utf8)

    /// Layout: magic, dimension and count (UInt64 LE), count+1 offsets (UInt64 LE), then the floats (F32 LE).
    /// Streamed through `AtomicFileWriter`, so a killed run leaves no half file under the key's name.
    static func write(_ set: TokenStateSet, to url: URL) throws {
        try createDestinationDirectory(url.deletingLastPathComponent())
        var header = Data(magic)
        for v in [UInt64(set.dimension), UInt64(set.count)] + set.offsets.map(UInt64.init) {
            withUnsafeBytes(of: v.littleEndian) { header.append(contentsOf: $0) }
        }
        let writer = try AtomicFileWriter(destination: url)
        try writer.write(header)
        try set.values.withUnsafeBytes { try writer.write($0) }
        try writer.commit()
    }

    static func read(_ url: URL) throws -> TokenStateSet {
        let data = try Data(contentsOf: url, options: .alwaysMapped)
        return try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) throws -> TokenStateSet in
            func word(_ i: Int) -> Int { Int(UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: magic.count + 8 * i, as: UInt64.self))) }
            guard raw.count >= magic.count + 16, Array(raw.prefix(magic.count)) == magic else {
                throw HeadError.invalidData("\(url.path): not a token-state cache file")
            }
            let dimension = word(0), count = word(1)
            let header = magic.count + 8 * (count + 3)
            guard raw.count >= header else { throw HeadError.invalidData("\(url.path): truncated") }
            let offsets = (0...count).map { word(2 + $0) }
            guard let total = offsets.last, raw.count == header + total * dimension * 4 else {
                throw HeadError.invalidData("\(url.path): truncated")
            }
            let values = [Float](unsafeUninitializedCapacity: total * dimension) { buffer, n in
                UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(rebasing: raw[header...]))
                n = total * dimension
            }
            return try TokenStateSet(dimension: dimension, values: values, offsets: offsets)
        }
    }
}

extension TokenStateCache {
    /// Embeddings of `inputs` by `encoder` with `options` (a distillation teacher's vectors), computed once and
    /// kept beside the token states, one vector per "state" row.
    public func embeddings(_ inputs: [EncoderInput], encoder: TextEncoder, modelDigest: String, options: EmbeddingOptions) throws -> [[Float]] {
        var hash = SHA256()
        hash.update("embeddings-v1\0\(modelDigest)\0\(encoder.model.precision.rawValue)\0\(options.attention.rawValue)\0")
        hash.update("\(options.pooling?.rawValue ?? "-")\0\(options.normalize.map { "\($0)" } ?? "-")\0\(options.dimension ?? 0)\0\(inputs.count)\0")
        for input in inputs { hash.update(input.ids.map(String.init).joined(separator: ",") + ";\(input.promptTokens);") }
        let url = directory.appendingPathComponent(hash.hexDigest() + ".vectors.bin")
        if let cached = try? Self.read(url), cached.count == inputs.count {
            let d = cached.dimension
            return (0..<cached.count).map { Array(cached.values[($0 * d)..<(($0 + 1) * d)]) }
        }
        let vectors = try encoder.embed(inputs, options: options)
        var set = TokenStateSet(dimension: vectors.first?.count ?? 0)
        for v in vectors { set.append(v) }
        try Self.write(set, to: url)
        return vectors
    }
}
