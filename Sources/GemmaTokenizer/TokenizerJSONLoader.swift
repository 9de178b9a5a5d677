import Foundation

/// Everything a `GemmaTokenizer` runs on, independent of where it was loaded from.
struct TokenizerPipeline: Sendable {
    var addedTokens: [AddedToken]
    /// Matches non-normalized added tokens on the raw text.
    var rawSplitter: AddedTokenSplitter
    /// Matches normalized added tokens on each normalized segment (nil when there are none).
    var normalizedSplitter: AddedTokenSplitter?
    var normalizer: (any Normalizer)?
    var preTokenizer: (any PreTokenizer)?
    var model: any TokenModel
    var template: SpecialTokenTemplate
    var decoder: (any Decoder)?
    /// id → token text, model vocabulary and added tokens.
    var idToToken: [String?]
    var specialIds: Set<Int32>
    var bos: Int32?
    var eos: Int32?
    var pad: Int32?

    init(addedTokens: [AddedToken], normalizer: (any Normalizer)?, preTokenizer: (any PreTokenizer)?,
         model: any TokenModel, template: SpecialTokenTemplate, decoder: (any Decoder)?, idToToken: [String?],
         bos: Int32?, eos: Int32?, pad: Int32?) {
        self.addedTokens = addedTokens
        rawSplitter = AddedTokenSplitter(addedTokens.filter { !$0.normalized }) { Array($0.content.utf8) }
        let normalized = addedTokens.filter(\.normalized)
        normalizedSplitter = normalized.isEmpty ? nil : AddedTokenSplitter(normalized) { t in
            var bytes = Array(t.content.utf8)
            normalizer?.normalize(&bytes)
            return bytes
        }
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.model = model
        self.template = template
        self.decoder = decoder
        var table = idToToken
        for t in addedTokens where t.id >= 0 {
            if Int(t.id) >= table.count { table += [String?](repeating: nil, count: Int(t.id) + 1 - table.count) }
            table[Int(t.id)] = t.content
        }
        self.idToToken = table
        specialIds = Set(addedTokens.filter(\.special).map(\.id))
        self.bos = bos
        self.eos = eos
        self.pad = pad
    }
}

/// Builds a pipeline from Hugging Face `tokenizer.json` (plus `special_tokens_map.json` beside it, when
/// present, for which tokens are bos/eos/pad).
enum TokenizerJSONLoader {
    static func load(_ url: URL) throws(TokenizerError) -> TokenizerPipeline {
        let file = url.path
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw .unreadable(file: file, message: "cannot read: \(error.localizedDescription)")
        }
        let root: JSON
        do { root = try JSONParser.parse(data) } catch {
            throw .invalidJSON(file: file, offset: error.offset, message: error.message)
        }
        let f = JSONFields(file: file)
        guard root.members != nil else { throw .invalidJSON(file: file, offset: 0, message: "top level is not an object") }

        var added: [AddedToken] = []
        if let list = root["added_tokens"], !list.isNull {
            for (i, t) in try f.array(list, "added_tokens").enumerated() {
                let p = "added_tokens[\(i)]"
                added.append(AddedToken(
                    id: try f.tokenID(t["id"], p + ".id"), content: try f.string(t["content"], p + ".content"),
                    special: try f.bool(t["special"], p + ".special", default: false),
                    normalized: try f.bool(t["normalized"], p + ".normalized", default: false),
                    lstrip: try f.bool(t["lstrip"], p + ".lstrip", default: false),
                    rstrip: try f.bool(t["rstrip"], p + ".rstrip", default: false),
                    singleWord: try f.bool(t["single_word"], p + ".single_word", default: false)))
            }
        }
        let normalizer = try NormalizerFactory.make(root["normalizer"], path: "normalizer", fields: f)
        let preTokenizer = try PreTokenizerFactory.make(root["pre_tokenizer"], path: "pre_tokenizer", fields: f)
        let (model, idToToken, vocab) = try ModelFactory.make(try f.require(root["model"], "model"), fields: f)
        // Added tokens extend the id → token table up to their ids: bounded the same way as the vocabulary's.
        let idLimit = 2 * (idToToken.count + added.count)
        for (i, t) in added.enumerated() where Int(t.id) > idLimit {
            throw TokenizerError.invalidValue(file: f.file, field: "added_tokens[\(i)].id",
                                              message: "token id \(t.id) is far past the vocabulary's \(idToToken.count) tokens")
        }
        let template = try SpecialTokenTemplate.make(root["post_processor"], path: "post_processor", fields: f)
        let decoder = try DecoderFactory.make(root["decoder"], path: "decoder", fields: f)

        // bos/eos/pad: names from special_tokens_map.json if it is there, else Gemma's defaults.
        var names = ["bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"]
        let mapURL = url.deletingLastPathComponent().appendingPathComponent("special_tokens_map.json")
        if let d = try? Data(contentsOf: mapURL), let m = try? JSONParser.parse(d) {
            for key in names.keys {
                if let s = m[key]?.string ?? m[key]?["content"]?.string { names[key] = s }
            }
        }
        func id(_ key: String) -> Int32? {
            guard let name = names[key] else { return nil }
            return added.first { $0.content == name }?.id ?? vocab.lookup(name)
        }
        return TokenizerPipeline(addedTokens: added, normalizer: normalizer, preTokenizer: preTokenizer,
                                 model: model, template: template, decoder: decoder, idToToken: idToToken,
                                 bos: id("bos_token"), eos: id("eos_token"), pad: id("pad_token"))
    }
}

/// The `model` section; only BPE is implemented (Gemma's tokenizer.json is BPE with byte fallback).
enum ModelFactory {
    static func make(_ json: JSON, fields f: JSONFields) throws(TokenizerError) -> (any TokenModel, [String?], TokenTextTable) {
        let type = try f.string(json["type"], "model.type")
        guard type == "BPE" else { throw .unsupportedType(file: f.file, field: "model.type", type: type) }
        if let d = json["dropout"], !d.isNull, case .number(let p) = d, p > 0 {
            throw .unsupportedType(file: f.file, field: "model.dropout", type: "dropout \(p)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let s = json[key]?.string, !s.isEmpty { throw .unsupportedType(file: f.file, field: "model." + key, type: s) }
        }
        guard let vocabMembers = json["vocab"]?.members else { throw .missingField(file: f.file, field: "model.vocab") }

        var table = TokenTextTable(capacity: vocabMembers.count)
        var idToToken = [String?](repeating: nil, count: vocabMembers.count)
        var charIds = [Int32](repeating: -1, count: 0x110000)
        for (token, value) in vocabMembers {
            guard let n = value.int, n >= 0, n < Int(Int32.max) else {
                throw .invalidValue(file: f.file, field: "model.vocab[\(token)]", message: "not a token id")
            }
            // The id sizes the id → token table: a crafted id of 2^31 must not ask for 32 GB. Vocabularies
            // are dense (ids 0..<count); twice the count leaves room for gaps.
            guard n <= 2 * vocabMembers.count else {
                throw .invalidValue(file: f.file, field: "model.vocab[\(token)]",
                                    message: "token id \(n) is far past the vocabulary's \(vocabMembers.count) tokens")
            }
            let id = Int32(n)
            table.insert(token, id: id)
            if n >= idToToken.count { idToToken += [String?](repeating: nil, count: n + 1 - idToToken.count) }
            idToToken[n] = token
            if token.utf8.count <= 4 {
                var it = token.unicodeScalars.makeIterator()
                if let c = it.next(), it.next() == nil, charIds[Int(c.value)] < 0 { charIds[Int(c.value)] = id }
            }
        }

        guard let mergeList = json["merges"]?.array else { throw .missingField(file: f.file, field: "model.merges") }
        var merges = PairTable(capacity: mergeList.count)
        let empty = UnsafeBufferPointer<UInt8>(start: nil, count: 0)
        for (rank, m) in mergeList.enumerated() {
            var a: String, b: String
            if let pair = m.array, pair.count == 2, let x = pair[0].string, let y = pair[1].string {
                (a, b) = (x, y)
            } else if let s = m.string, let space = s.firstIndex(of: " ") {
                (a, b) = (String(s[..<space]), String(s[s.index(after: space)...]))
            } else {
                throw .invalidValue(file: f.file, field: "model.merges[\(rank)]", message: "expected a pair of tokens")
            }
            let ids = a.withUTF8 { ua in
                b.withUTF8 { ub in (table.lookup(ua, empty), table.lookup(ub, empty), table.lookup(ua, ub)) }
            }
            guard let l = ids.0, let r = ids.1, let merged = ids.2 else {
                throw .invalidValue(file: f.file, field: "model.merges[\(rank)]",
                                    message: "merge \(a) + \(b) uses or produces a token outside the vocabulary")
            }
            merges.set(l, r, value: UInt64(rank) << 32 | UInt64(UInt32(bitPattern: merged)))
        }

        let byteIds = (0..<256).map { b in table.lookup(String(format: "<0x%02X>", b)) ?? -1 }
        let unkId = json["unk_token"]?.string.flatMap { table.lookup($0) }
        let model = BPEModel(
            charIds: charIds, byteIds: byteIds,
            byteFallback: try f.bool(json["byte_fallback"], "model.byte_fallback", default: false),
            unkId: unkId, fuseUnk: try f.bool(json["fuse_unk"], "model.fuse_unk", default: false),
            merges: merges,
            wholeWords: try f.bool(json["ignore_merges"], "model.ignore_merges", default: false) ? table : nil)
        return (model, idToToken, table)
    }
}
