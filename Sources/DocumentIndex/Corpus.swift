import Foundation
import GemmaEncoder

/// One document to index: its external id, its text and its metadata as a JSON object string.
public struct CorpusDocument: Sendable, Equatable {
    public var id: String
    public var text: String
    public var metadataJSON: String

    public init(id: String, text: String, metadataJSON: String = "{}") {
        self.id = id
        self.text = text
        self.metadataJSON = metadataJSON
    }
}

public enum Corpus {
    /// Reads documents from JSON Lines: `idField` (string or integer) and `textField` (string) are required;
    /// metadata is the row's `metadata` object when present, else every other field. Duplicate ids, missing
    /// fields and an empty file are errors naming the file and line. "-" reads standard input (a Spark
    /// partition piped in).
    public static func load(path: String, idField: String = "id", textField: String = "text") throws -> [CorpusDocument] {
        var documents: [CorpusDocument] = []
        var seen: [String: Int] = [:]
        let name = path == "-" ? "stdin" : path
        for row in try JSONLines.read(path: path) {
            let at = "\(name):\(row.line)"
            let id: String
            switch row.object[idField] {
            case let s as String where !s.isEmpty: id = s
            case let n as NSNumber where Double(n.int64Value) == n.doubleValue: id = String(n.int64Value)
            case nil: throw IndexError.invalidCorpus("\(at): missing field \"\(idField)\"")
            default: throw IndexError.invalidCorpus("\(at): field \"\(idField)\" must be a non-empty string or an integer")
            }
            guard let text = row.object[textField] as? String else {
                throw IndexError.invalidCorpus("\(at): missing or non-string field \"\(textField)\"")
            }
            if let first = seen[id] {
                throw IndexError.invalidCorpus("\(at): duplicate id \"\(id)\" (first on line \(first))")
            }
            seen[id] = row.line
            var metadata: Any = row.object.filter { $0.key != idField && $0.key != textField }
            if let nested = row.object["metadata"] as? [String: Any] { metadata = nested }
            let data = try JSONSerialization.data(withJSONObject: metadata, options: [.sortedKeys])
            documents.append(CorpusDocument(id: id, text: text, metadataJSON: String(decoding: data, as: UTF8.self)))
        }
        guard !documents.isEmpty else { throw IndexError.invalidCorpus("\(name): the corpus is empty") }
        return documents
    }
}
