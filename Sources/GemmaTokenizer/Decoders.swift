/// A `decoder` stage: HF decoders map the token strings to new strings (`decode_chain`); the final text is
/// their concatenation.
protocol Decoder: Sendable {
    func decode(_ tokens: [String]) -> [String]
}

/// `{"type": "Replace", "pattern": {"String": p}, "content": c}` on every token.
struct ReplaceDecoder: Decoder {
    let pattern: String
    let content: String

    func decode(_ tokens: [String]) -> [String] {
        tokens.map { String(decoding: replaceAll(Array($0.utf8), Array(pattern.utf8), Array(content.utf8)), as: UTF8.self) }
    }
}

/// `{"type": "ByteFallback"}`: runs of `<0xXX>` tokens become the UTF-8 text they spell, or one U+FFFD per
/// byte when the run is not valid UTF-8 (HF's rule, not per-sequence replacement).
struct ByteFallbackDecoder: Decoder {
    func decode(_ tokens: [String]) -> [String] {
        var out: [String] = []
        var bytes: [UInt8] = []
        func flush() {
            guard !bytes.isEmpty else { return }
            if let s = String(validating: bytes, as: UTF8.self) {
                out.append(s)
            } else {
                out.append(contentsOf: repeatElement("\u{FFFD}", count: bytes.count))
            }
            bytes.removeAll()
        }
        for t in tokens {
            if let b = Self.byteValue(t) {
                bytes.append(b)
            } else {
                flush()
                out.append(t)
            }
        }
        flush()
        return out
    }

    static func byteValue(_ token: String) -> UInt8? {
        let u = Array(token.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
              u[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }
}

/// `{"type": "Fuse"}`: all tokens become one string.
struct FuseDecoder: Decoder {
    func decode(_ tokens: [String]) -> [String] { [tokens.joined()] }
}

/// `{"type": "Strip", "content": c, "start": n, "stop": m}`: removes up to n leading and m trailing
/// occurrences of c from each token.
struct StripDecoder: Decoder {
    let content: Character
    let start: Int
    let stop: Int

    func decode(_ tokens: [String]) -> [String] {
        tokens.map { t in
            var chars = Array(t)
            var lead = 0
            while lead < start, lead < chars.count, chars[lead] == content { lead += 1 }
            chars.removeFirst(lead)
            var trail = 0
            while trail < stop, !chars.isEmpty, chars.last == content { chars.removeLast(); trail += 1 }
            return String(chars)
        }
    }
}

/// `{"type": "Sequence", "decoders": [...]}`.
struct SequenceDecoder: Decoder {
    let stages: [any Decoder]

    func decode(_ tokens: [String]) -> [String] {
        stages.reduce(tokens) { $1.decode($0) }
    }
}

enum DecoderFactory {
    static func make(_ json: JSON?, path: String, fields: JSONFields) throws(TokenizerError) -> (any Decoder)? {
        guard let json, !json.isNull else { return nil }
        let type = try fields.string(json["type"], path + ".type")
        switch type {
        case "Replace":
            return ReplaceDecoder(pattern: try fields.stringPattern(json["pattern"], path + ".pattern"),
                                  content: try fields.string(json["content"], path + ".content"))
        case "ByteFallback":
            return ByteFallbackDecoder()
        case "Fuse":
            return FuseDecoder()
        case "Strip":
            let content = try fields.string(json["content"], path + ".content")
            guard content.count == 1 else {
                throw .invalidValue(file: fields.file, field: path + ".content", message: "expected one character")
            }
            return StripDecoder(content: content.first!, start: try fields.int(json["start"], path + ".start"),
                                stop: try fields.int(json["stop"], path + ".stop"))
        case "Sequence":
            return SequenceDecoder(stages: try fields.stages(json, "decoders", path) { item, itemPath throws(TokenizerError) in
                try make(item, path: itemPath, fields: fields)
            })
        default:
            throw .unsupportedType(file: fields.file, field: path + ".type", type: type)
        }
    }
}
