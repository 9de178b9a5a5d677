import Foundation
import GemmaEncoder

/// One input row: a text or pre-tokenized ids, with the line it came from for error messages.
enum InputRow {
    case text(String)
    case ids([Int32])
}

struct InputError: Error, CustomStringConvertible {
    var description: String
}

/// Reads `{"text": …}` / `{"ids": […]}` rows; a bad row is an error naming the file and line.
func readRows(path: String, allowIds: Bool) throws -> [InputRow] {
    var rows: [InputRow] = []
    for row in try JSONLines.read(path: path) {
        let at = "\(path):\(row.line)"
        if let text = row.object["text"] {
            guard let text = text as? String else { throw InputError(description: "\(at): field \"text\" must be a string") }
            rows.append(.text(text))
        } else if allowIds, let ids = row.object["ids"] {
            guard let numbers = ids as? [NSNumber],
                  numbers.allSatisfy({ Double($0.int32Value) == $0.doubleValue }) else {
                throw InputError(description: "\(at): field \"ids\" must be an array of integers")
            }
            rows.append(.ids(numbers.map(\.int32Value)))
        } else {
            throw InputError(description: "\(at): row has no \"text\"" + (allowIds ? " or \"ids\"" : "") + " field")
        }
    }
    return rows
}

/// Shortest round-trip text of a float, valid JSON.
@inline(__always)
func jsonNumber(_ v: Float) -> String { v.isFinite ? "\(v)" : "null" }

func jsonArray(_ values: some Sequence<Float>) -> String {
    "[" + values.map(jsonNumber).joined(separator: ",") + "]"
}

/// An output file written under a temporary name and renamed into place only when complete, so an
/// interrupted run never leaves a half-written file that looks finished.
final class AtomicOutput {
    let path: String?
    private let temporary: String?
    private let handle: FileHandle

    init(path: String?) throws {
        self.path = path
        if let path {
            let temporary = path + ".tmp-\(ProcessInfo.processInfo.processIdentifier)"
            guard FileManager.default.createFile(atPath: temporary, contents: nil) else {
                throw InputError(description: "\(path): cannot create output file")
            }
            self.temporary = temporary
            handle = try FileHandle(forWritingTo: URL(fileURLWithPath: temporary))
        } else {
            temporary = nil
            handle = FileHandle.standardOutput
        }
    }

    func write(_ s: String) { handle.write(Data(s.utf8)) }
    func write(_ d: Data) { handle.write(d) }

    func commit() throws {
        guard let path, let temporary else { return }
        try handle.close()
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        try FileManager.default.moveItem(atPath: temporary, toPath: path)
    }

    deinit {
        if let temporary, FileManager.default.fileExists(atPath: temporary) {
            try? FileManager.default.removeItem(atPath: temporary)
        }
    }
}

/// NumPy .npy (format 1.0) header for a little-endian float32 array of the given shape.
func npyHeader(rows: Int, columns: Int) -> Data {
    var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(columns)), }"
    let unpadded = 10 + dict.utf8.count + 1
    dict += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
    var header = Data([0x93]) + Data("NUMPY".utf8) + Data([1, 0])
    let length = UInt16(dict.utf8.count)
    header += Data([UInt8(length & 0xFF), UInt8(length >> 8)])
    header += Data(dict.utf8)
    return header
}
