import Foundation
import ModelFormats

/// Token ids of one text, possibly truncated to a maximum length.
public struct TokenizedText: Sendable, Equatable {
    public var ids: [Int32]
    /// Whether content tokens were dropped to fit `maxLength`.
    public var truncated: Bool
    /// Length of the untruncated encoding (special tokens included when they were requested).
    public var originalLength: Int

    public init(ids: [Int32], truncated: Bool, originalLength: Int) {
        self.ids = ids
        self.truncated = truncated
        self.originalLength = originalLength
    }
}

/// Gemma's tokenizer, loaded from a Hugging Face `tokenizer.json` (ids identical to HF `tokenizers`) or
/// from GGUF metadata (ids identical to llama.cpp). Immutable after loading; safe to share across threads.
public final class GemmaTokenizer: Sendable {
    private let pipeline: TokenizerPipeline

    init(pipeline: TokenizerPipeline) {
        self.pipeline = pipeline
    }

    public static func load(tokenizerJSON url: URL) throws -> GemmaTokenizer {
        GemmaTokenizer(pipeline: try TokenizerJSONLoader.load(url))
    }

    public static func load(gguf: GGUFFile) throws -> GemmaTokenizer {
        GemmaTokenizer(pipeline: try GGUFVocabularyLoader.load(gguf))
    }

    /// Loads `tokenizer.json` from a model directory (which kind of model a path holds is decided by the
    /// encoder's `ModelSource`, not here).
    public static func load(directory: URL) throws -> GemmaTokenizer {
        try load(tokenizerJSON: directory.appendingPathComponent("tokenizer.json"))
    }

    public var bosTokenId: Int32? { pipeline.bos }
    public var eosTokenId: Int32? { pipeline.eos }
    public var padTokenId: Int32? { pipeline.pad }
    /// Number of ids, model vocabulary plus added tokens (HF `get_vocab_size(with_added_tokens=True)`).
    public var vocabularySize: Int { pipeline.idToToken.count }

    /// The text of one token (vocabulary or added), nil for an unknown id.
    public func token(for id: Int32) -> String? {
        id >= 0 && Int(id) < pipeline.idToToken.count ? pipeline.idToToken[Int(id)] : nil
    }

    /// The id of a token given by its text as the vocabulary spells it (e.g. "▁yes", "<extra_id_10>"), nil if absent.
    public func id(ofToken text: String) -> Int32? {
        pipeline.idToToken.firstIndex(of: text).map { Int32($0) }
    }

    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + 4)
        if addSpecialTokens { out += pipeline.template.prefix }
        encodeContent(text, into: &out)
        if addSpecialTokens { out += pipeline.template.suffix }
        return out
    }

    /// Truncation the way sentence-transformers does it (HF truncation=longest_first, max_length):
    /// the content is cut so that content + special tokens ≤ maxLength; special tokens are kept.
    public func encode(_ text: String, addSpecialTokens: Bool = true, maxLength: Int?) -> TokenizedText {
        var content: [Int32] = []
        encodeContent(text, into: &content)
        let specials = addSpecialTokens ? pipeline.template.count : 0
        let original = content.count + specials
        var truncated = false
        if let maxLength, original > maxLength {
            // Compared before subtracting: a maxLength near Int.min must not overflow.
            content.removeLast(content.count - (maxLength > specials ? min(maxLength - specials, content.count) : 0))
            truncated = true
        }
        let ids = addSpecialTokens ? pipeline.template.prefix + content + pipeline.template.suffix : content
        return TokenizedText(ids: ids, truncated: truncated, originalLength: original)
    }

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        let tokens = ids.compactMap { id -> String? in
            if skipSpecialTokens, pipeline.specialIds.contains(id) { return nil }
            return token(for: id)
        }
        guard let decoder = pipeline.decoder else { return tokens.joined(separator: " ") }
        return decoder.decode(tokens).joined()
    }

    /// HF's order: split out added tokens on the raw text, normalize each remaining segment, split out
    /// normalized added tokens, pre-tokenize, and run the model on every word.
    private func encodeContent(_ text: String, into out: inout [Int32]) {
        var text = text
        text.withUTF8 { raw in
            var pieces: [Piece] = []
            pipeline.rawSplitter.split(raw, 0..<raw.count, into: &pieces)
            for piece in pieces {
                switch piece {
                case .token(let id):
                    out.append(id)
                case .text(let range):
                    var segment = Array(UnsafeBufferPointer(rebasing: raw[range]))
                    pipeline.normalizer?.normalize(&segment)
                    segment.withUnsafeBufferPointer { encodeNormalized($0, into: &out) }
                }
            }
        }
    }

    private func encodeNormalized(_ s: UnsafeBufferPointer<UInt8>, into out: inout [Int32]) {
        guard let splitter = pipeline.normalizedSplitter else {
            encodeWords(s, 0..<s.count, into: &out)
            return
        }
        var pieces: [Piece] = []
        splitter.split(s, 0..<s.count, into: &pieces)
        for piece in pieces {
            switch piece {
            case .token(let id): out.append(id)
            case .text(let range): encodeWords(s, range, into: &out)
            }
        }
    }

    private func encodeWords(_ s: UnsafeBufferPointer<UInt8>, _ range: Range<Int>, into out: inout [Int32]) {
        guard let pre = pipeline.preTokenizer else {
            pipeline.model.tokenize(UnsafeBufferPointer(rebasing: s[range]), into: &out)
            return
        }
        var words: [Range<Int>] = []
        pre.split(s, range, into: &words)
        for w in words { pipeline.model.tokenize(UnsafeBufferPointer(rebasing: s[w]), into: &out) }
    }
}
