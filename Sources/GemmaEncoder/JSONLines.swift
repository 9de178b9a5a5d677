import Foundation
#if canImport(Glibc)
import Glibc
#endif

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

    /// Every row of a file ("-": standard input) at once.
    public static func read(path: String) throws(ReadError) -> [Row] {
        let reader = try Reader(path: path)
        var rows: [Row] = []
        while let row = try reader.next() { rows.append(row) }
        return rows
    }

    /// Lines in a regular file (for a progress total; blank lines included), nil for a stream or an unreadable
    /// file. The file is mapped, not read into memory.
    public static func lineCount(path: String) -> Int? {
        var info = stat()
        guard stat(path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG,
              let data = try? Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) else { return nil }
        let newlines = data.withUnsafeBytes { bytes in bytes.reduce(0) { $0 + ($1 == 0x0A ? 1 : 0) } }
        return newlines + (data.last.map { $0 == 0x0A ? 0 : 1 } ?? 0)
    }

    /// Rows one at a time, from a file or a stream (standard input for "-"), in bounded memory: the file is
    /// read in 1 MiB blocks and only the current line is kept, however long the stream (a Spark partition
    /// piped through `embed --input -`).
    public final class Reader {
        /// The name errors give: the path, or "stdin".
        public let name: String
        private let fd: Int32
        private let ownsDescriptor: Bool
        private var buffer: [UInt8] = []
        /// Where the unread part of `buffer` starts.
        private var position = 0
        private var atEnd = false
        private var lineNumber = 0
        private static let blockSize = 1 << 20

        public init(path: String) throws(ReadError) {
            if path == "-" {
                name = "stdin"
                fd = 0
                ownsDescriptor = false
            } else {
                name = path
                fd = open(path, O_RDONLY | O_CLOEXEC)
                guard fd >= 0 else {
                    throw ReadError(file: path, line: nil, message: "cannot read: \(String(cString: strerror(errno)))")
                }
                ownsDescriptor = true
            }
        }

        deinit {
            // Standard input stays open.
            if ownsDescriptor { close(fd) }
        }

        /// The next non-blank line as an object, nil at the end. Invalid UTF-8 or a line that is not a JSON
        /// object is an error naming the file and line.
        public func next() throws(ReadError) -> Row? {
            while let line = try nextLine() {
                lineNumber += 1
                let trimmed = line.last == UInt8(ascii: "\r") ? line.dropLast() : line[...]
                if trimmed.allSatisfy({ $0 == 0x20 || $0 == 0x09 }) { continue }
                guard isValidUTF8(trimmed) else { throw ReadError(file: name, line: lineNumber, message: "invalid UTF-8") }
                guard let object = (try? JSONSerialization.jsonObject(with: Data(trimmed), options: [.fragmentsAllowed])) as? [String: Any] else {
                    throw ReadError(file: name, line: lineNumber, message: "not a JSON object")
                }
                return Row(line: lineNumber, object: object)
            }
            return nil
        }

        /// The next line without its newline (the last one may lack it), nil at the end of the input.
        private func nextLine() throws(ReadError) -> [UInt8]? {
            var searchFrom = position
            while true {
                if let newline = buffer[searchFrom...].firstIndex(of: UInt8(ascii: "\n")) {
                    let line = Array(buffer[position..<newline])
                    position = newline + 1
                    return line
                }
                if atEnd {
                    guard position < buffer.count else { return nil }
                    let line = Array(buffer[position...])
                    position = buffer.count
                    return line
                }
                // Keep the unread tail and read the next block after it.
                buffer.removeFirst(position)
                position = 0
                searchFrom = buffer.count
                try fill()
            }
        }

        private func fill() throws(ReadError) {
            let old = buffer.count
            buffer.append(contentsOf: repeatElement(0, count: Self.blockSize))
            var got = -1
            repeat {
                got = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + old, Self.blockSize) }
            } while got < 0 && errno == EINTR
            guard got >= 0 else {
                throw ReadError(file: name, line: lineNumber + 1, message: "cannot read: \(String(cString: strerror(errno)))")
            }
            buffer.removeLast(Self.blockSize - got)
            if got == 0 { atEnd = true }
        }
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
