import Foundation

extension DecodingError {
    /// "rope_parameters.full_attention.rope_theta": where in the JSON the problem is.
    public var codingPathDescription: String {
        let path: [CodingKey]
        switch self {
        case .typeMismatch(_, let c), .valueNotFound(_, let c), .dataCorrupted(let c): path = c.codingPath
        case .keyNotFound(let key, let c): path = c.codingPath + [key]
        @unknown default: path = []
        }
        return Self.describe(path)
    }

    /// "input[2].text": keys joined by dots, array positions in brackets.
    public static func describe(_ path: [CodingKey]) -> String {
        var text = ""
        for key in path {
            if let i = key.intValue { text += "[\(i)]" } else { text += (text.isEmpty ? "" : ".") + key.stringValue }
        }
        return text
    }

    public var shortDescription: String {
        switch self {
        case .typeMismatch(let type, _): return "expected a value of type \(type)"
        case .valueNotFound(let type, _): return "expected a value of type \(type), found null"
        case .keyNotFound: return "missing field"
        case .dataCorrupted(let c): return c.debugDescription
        @unknown default: return "invalid"
        }
    }
}
