import Foundation

/// A `normalizer` stage of tokenizer.json, applied to each text segment between added tokens.
protocol Normalizer: Sendable {
    func normalize(_ text: inout [UInt8])
}

/// `{"type": "Replace", "pattern": {"String": p}, "content": c}`: every occurrence of p becomes c.
struct ReplaceNormalizer: Normalizer {
    let pattern: [UInt8]
    let content: [UInt8]

    func normalize(_ text: inout [UInt8]) {
        text = replaceAll(text, pattern, content)
    }
}

/// `{"type": "Prepend", "prepend": s}`: prefixes non-empty text with s.
struct PrependNormalizer: Normalizer {
    let prefix: [UInt8]

    func normalize(_ text: inout [UInt8]) {
        if !text.isEmpty { text.insert(contentsOf: prefix, at: 0) }
    }
}

/// `{"type": "Sequence", "normalizers": [...]}`.
struct SequenceNormalizer: Normalizer {
    let stages: [any Normalizer]

    func normalize(_ text: inout [UInt8]) {
        for s in stages { s.normalize(&text) }
    }
}

/// Non-overlapping left-to-right replacement over bytes (UTF-8 is self-synchronizing, so byte matches of
/// a valid UTF-8 pattern are character matches).
func replaceAll(_ text: [UInt8], _ pattern: [UInt8], _ content: [UInt8]) -> [UInt8] {
    guard let first = pattern.first, text.count >= pattern.count else { return text }
    var out: [UInt8] = []
    // Room for the text only: a guess scaled by a long replacement (a crafted file's megabyte `content`)
    // could overflow or ask for far more than the result needs; appends grow it as they must.
    out.reserveCapacity(text.count)
    var i = 0
    let n = text.count, m = pattern.count
    text.withUnsafeBufferPointer { t in
        pattern.withUnsafeBufferPointer { p in
            while i < n {
                if t[i] == first, i + m <= n, m == 1 || memcmp(t.baseAddress! + i + 1, p.baseAddress! + 1, m - 1) == 0 {
                    out.append(contentsOf: content)
                    i += m
                } else {
                    out.append(t[i])
                    i += 1
                }
            }
        }
    }
    return out
}

enum NormalizerFactory {
    static func make(_ json: JSON?, path: String, fields: JSONFields) throws(TokenizerError) -> (any Normalizer)? {
        guard let json, !json.isNull else { return nil }
        let type = try fields.string(json["type"], path + ".type")
        switch type {
        case "Replace":
            let pattern = try fields.stringPattern(json["pattern"], path + ".pattern")
            let content = try fields.string(json["content"], path + ".content")
            guard !pattern.isEmpty else {
                throw .invalidValue(file: fields.file, field: path + ".pattern", message: "empty pattern")
            }
            return ReplaceNormalizer(pattern: Array(pattern.utf8), content: Array(content.utf8))
        case "Prepend":
            return PrependNormalizer(prefix: Array(try fields.string(json["prepend"], path + ".prepend").utf8))
        case "Sequence":
            return SequenceNormalizer(stages: try fields.stages(json, "normalizers", path) { item, itemPath throws(TokenizerError) in
                try make(item, path: itemPath, fields: fields)
            })
        default:
            throw .unsupportedType(file: fields.file, field: path + ".type", type: type)
        }
    }
}
