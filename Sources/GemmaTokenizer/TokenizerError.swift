import Foundation
import ModelFormats

/// Why a tokenizer could not be loaded; always names the file and the field at fault.
public enum TokenizerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file is not valid JSON (byte offset of the syntax error).
    case invalidJSON(file: String, offset: Int, message: String)
    /// A required field is absent or has the wrong JSON type.
    case missingField(file: String, field: String)
    /// A field has a value we understand the type of but not the content (bad id, merge out of vocabulary...).
    case invalidValue(file: String, field: String, message: String)
    /// A pipeline stage (`normalizer`, `decoder`, ...) or model type this implementation does not know.
    case unsupportedType(file: String, field: String, type: String)
    /// The underlying file could not be read or is malformed at the container level (GGUF).
    case unreadable(file: String, message: String)

    public var description: String {
        switch self {
        case .invalidJSON(let file, let offset, let message):
            "\(file): invalid JSON at byte \(offset): \(message)"
        case .missingField(let file, let field):
            "\(file): missing or mistyped field '\(field)'"
        case .invalidValue(let file, let field, let message):
            "\(file): field '\(field)': \(message)"
        case .unsupportedType(let file, let field, let type):
            "\(file): field '\(field)': unsupported type '\(type)'"
        case .unreadable(let file, let message):
            "\(file): \(message)"
        }
    }

    init(_ e: FormatError) {
        if let item = e.item {
            self = .invalidValue(file: e.file, field: item, message: e.message)
        } else {
            self = .unreadable(file: e.file, message: e.message)
        }
    }
}

/// Field access on parsed tokenizer.json that turns absences into `TokenizerError`s with a path.
struct JSONFields {
    let file: String

    func require(_ v: JSON?, _ path: String) throws(TokenizerError) -> JSON {
        guard let v, !v.isNull else { throw .missingField(file: file, field: path) }
        return v
    }

    func string(_ v: JSON?, _ path: String) throws(TokenizerError) -> String {
        guard let s = v?.string else { throw .missingField(file: file, field: path) }
        return s
    }

    func array(_ v: JSON?, _ path: String) throws(TokenizerError) -> [JSON] {
        guard let a = v?.array else { throw .missingField(file: file, field: path) }
        return a
    }

    func int(_ v: JSON?, _ path: String) throws(TokenizerError) -> Int {
        guard let n = v?.int else { throw .missingField(file: file, field: path) }
        return n
    }

    /// A token id: a non-negative integer that fits the 32-bit ids the tokenizer hands out.
    func tokenID(_ v: JSON?, _ path: String) throws(TokenizerError) -> Int32 {
        let n = try int(v, path)
        guard n >= 0, let id = Int32(exactly: n) else {
            throw .invalidValue(file: file, field: path, message: "token id \(n) is outside 0..<2^31")
        }
        return id
    }

    func bool(_ v: JSON?, _ path: String, default d: Bool) throws(TokenizerError) -> Bool {
        guard let v, !v.isNull else { return d }
        guard let b = v.bool else { throw .missingField(file: file, field: path) }
        return b
    }

    /// The stages of a `Sequence` variant: `make` applied to each element of the array `json[key]`,
    /// absent stages dropped.
    func stages<Stage>(_ json: JSON, _ key: String, _ path: String,
                       make: (JSON?, String) throws(TokenizerError) -> Stage?) throws(TokenizerError) -> [Stage] {
        var stages: [Stage] = []
        for (i, item) in try array(json[key], "\(path).\(key)").enumerated() {
            if let stage = try make(item, "\(path).\(key)[\(i)]") { stages.append(stage) }
        }
        return stages
    }

    /// The `"pattern": {"String": s}` form; `{"Regex": ...}` patterns are not supported.
    func stringPattern(_ v: JSON?, _ path: String) throws(TokenizerError) -> String {
        let p = try require(v, path)
        if let s = p["String"]?.string { return s }
        if let s = p.string { return s }
        if p["Regex"] != nil { throw .unsupportedType(file: file, field: path, type: "Regex") }
        throw .missingField(file: file, field: path + ".String")
    }
}
