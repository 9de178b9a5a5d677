import Foundation

/// A JSON Lines file read as objects, each with its 1-based line number; blank lines are skipped.
/// Invalid UTF-8 or a line that is not a JSON object is an error naming the file and line.
public enum JSONLines {
    public struct Row: @unchecked Sendable {
        public var line: Int
        public var object: [String: Any]
    }

    public struct ReadError: Error, CustomStringConvertible, Equatable {
        public var file: String
        public var line: Int?
        public var message: String

        public init(file: String, line: Int?, message: String) {
            self.file = file
            self.line = line
            self.message = message
        }

        public var description: String { line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)" }
    }

    public static func read(path: String) throws(ReadError) -> [Row] {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw ReadError(file: path, line: nil, message: "cannot read: \(error.localizedDescription)")
        }
        var rows: [Row] = []
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            let trimmed = line.last == UInt8(ascii: "\r") ? line.dropLast() : line
            if trimmed.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
            guard isValidUTF8(trimmed) else { throw ReadError(file: path, line: lineNumber, message: "invalid UTF-8") }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(trimmed), options: [.fragmentsAllowed])) as? [String: Any] else {
                throw ReadError(file: path, line: lineNumber, message: "not a JSON object")
            }
            rows.append(Row(line: lineNumber, object: object))
        }
        return rows
    }

    static func isValidUTF8(_ bytes: some Collection<UInt8>) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
