import ModelFormats

/// Builds a pipeline from GGUF `tokenizer.ggml.*` metadata, reproducing llama.cpp's tokenization:
/// control / user-defined / unknown tokens are split out of the raw text first (llama.cpp's
/// `tokenizer_st_partition` with parse_special), spaces become "▁" (optionally with a leading one), and
/// each piece goes through the SentencePiece merge-by-score algorithm.
enum GGUFVocabularyLoader {
    /// llama.cpp `llama_token_type` values.
    private enum TokenType: Int { case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6 }

    static func load(_ gguf: GGUFFile) throws(TokenizerError) -> TokenizerPipeline {
        do {
            return try build(gguf)
        } catch let e as TokenizerError {
            throw e
        } catch let e as FormatError {
            throw TokenizerError(e)
        } catch {
            throw .unreadable(file: gguf.url.path, message: "\(error)")
        }
    }

    private static func build(_ gguf: GGUFFile) throws -> TokenizerPipeline {
        let file = gguf.url.path
        let modelName = try gguf.require("tokenizer.ggml.model").stringValue ?? ""
        guard modelName == "llama" else {
            throw TokenizerError.unsupportedType(file: file, field: "tokenizer.ggml.model", type: modelName)
        }
        guard let tokens = try gguf.require("tokenizer.ggml.tokens").arrayValue?.strings() else {
            throw TokenizerError.missingField(file: file, field: "tokenizer.ggml.tokens")
        }
        let n = tokens.count
        let scores = try gguf["tokenizer.ggml.scores"]?.arrayValue?.floats() ?? [Float](repeating: 0, count: n)
        let types = try gguf["tokenizer.ggml.token_type"]?.arrayValue?.integers()
            ?? [Int](repeating: TokenType.normal.rawValue, count: n)
        guard scores.count == n else {
            throw TokenizerError.invalidValue(file: file, field: "tokenizer.ggml.scores", message: "\(scores.count) scores for \(n) tokens")
        }
        guard types.count == n else {
            throw TokenizerError.invalidValue(file: file, field: "tokenizer.ggml.token_type", message: "\(types.count) types for \(n) tokens")
        }

        var table = TokenTextTable(capacity: n)
        var special: [AddedToken] = []
        for (i, t) in tokens.enumerated() {
            table.insert(t, id: Int32(i))
            switch TokenType(rawValue: types[i]) {
            case .control, .userDefined, .unknown:
                special.append(AddedToken(id: Int32(i), content: t, special: types[i] != TokenType.userDefined.rawValue,
                                          normalized: false, lstrip: false, rstrip: false, singleWord: false))
            default:
                break
            }
        }
        func tokenId(_ key: String) -> Int32? {
            guard let v = gguf[key]?.intValue, v >= 0, v < n else { return nil }
            return Int32(v)
        }
        func flag(_ key: String, _ d: Bool) -> Bool { gguf[key]?.boolValue ?? d }
        let bos = tokenId("tokenizer.ggml.bos_token_id")
        let eos = tokenId("tokenizer.ggml.eos_token_id")
        let unk = tokenId("tokenizer.ggml.unknown_token_id")
        let pad = tokenId("tokenizer.ggml.padding_token_id")

        let byteIds = (0..<256).map { b in table.lookup(String(format: "<0x%02X>", b)) ?? -1 }
        let model = SentencePieceModel(pieces: table, scores: scores, byteIds: byteIds, unkId: unk)

        // llama.cpp escapes spaces as "▁"; add_space_prefix puts one in front of every text piece.
        let escape = ReplaceNormalizer(pattern: Array(" ".utf8), content: Array("\u{2581}".utf8))
        let normalizer: any Normalizer = flag("tokenizer.ggml.add_space_prefix", true)
            ? SequenceNormalizer(stages: [PrependNormalizer(prefix: Array(" ".utf8)), escape]) : escape
        let template = SpecialTokenTemplate(
            prefix: flag("tokenizer.ggml.add_bos_token", true) ? bos.map { [$0] } ?? [] : [],
            suffix: flag("tokenizer.ggml.add_eos_token", false) ? eos.map { [$0] } ?? [] : [])
        let decoder = SequenceDecoder(stages: [
            ReplaceDecoder(pattern: "\u{2581}", content: " "), ByteFallbackDecoder(), FuseDecoder(),
        ])
        return TokenizerPipeline(addedTokens: special, normalizer: normalizer, preTokenizer: nil, model: model,
                                 template: template, decoder: decoder, idToToken: tokens,
                                 bos: bos, eos: eos, pad: pad)
    }
}
