import AtomicFiles
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
    try JSONLines.read(path: path).map { try inputRow($0, file: path, allowIds: allowIds) }
}

/// One `{"text": …}` / `{"ids": […]}` row; a bad row is an error naming the file and line.
func inputRow(_ row: JSONLines.Row, file: String, allowIds: Bool) throws -> InputRow {
    let at = "\(file):\(row.line)"
    if let text = row.object["text"] {
        guard let text = text as? String else { throw InputError(description: "\(at): field \"text\" must be a string") }
        return .text(text)
    } else if allowIds, let ids = row.object["ids"] {
        guard let numbers = ids as? [NSNumber],
              numbers.allSatisfy({ Double($0.int32Value) == $0.doubleValue }) else {
            throw InputError(description: "\(at): field \"ids\" must be an array of integers")
        }
        return .ids(numbers.map(\.int32Value))
    }
    throw InputError(description: "\(at): row has no \"text\"" + (allowIds ? " or \"ids\"" : "") + " field")
}

/// A row's `"id"` as JSON text to copy into the output (a string or an integer, as given), nil without one.
func rowID(_ row: JSONLines.Row, file: String) throws -> String? {
    guard let id = row.object["id"] else { return nil }
    // JSON true and false arrive as NSNumber too, of type "c" (`is Bool` would also take the numbers 0 and 1).
    if let n = id as? NSNumber, String(cString: n.objCType) != "c", Double(n.int64Value) == n.doubleValue {
        return String(n.int64Value)
    }
    // A one-element array is valid JSON on every Foundation; its brackets come off.
    if let text = id as? String, let data = try? JSONSerialization.data(withJSONObject: [text], options: .withoutEscapingSlashes) {
        return String(decoding: data.dropFirst().dropLast(), as: UTF8.self)
    }
    throw InputError(description: "\(file):\(row.line): field \"id\" must be a string or an integer")
}

/// Shortest round-trip text of a float, valid JSON.
@inline(__always)
func jsonNumber(_ v: Float) -> String { v.isFinite ? "\(v)" : "null" }

func jsonArray(_ values: some Sequence<Float>) -> String {
    "[" + values.map(jsonNumber).joined(separator: ",") + "]"
}

/// The output of a command: standard output, or a file streamed through `AtomicFileWriter` and renamed over
/// the old one only when complete, so an interrupted run leaves the previous file, never a half-written one
/// that looks finished. A failed write is reported by `commit()`, which then leaves the old file in place.
final class AtomicOutput {
    let path: String?
    private let file: AtomicFileWriter?
    private var failure: Error?

    init(path: String?) throws {
        self.path = path
        file = try path.map { try AtomicFileWriter(destination: URL(fileURLWithPath: $0)) }
    }

    func write(_ s: String) {
        guard let file else { return FileHandle.standardOutput.write(Data(s.utf8)) }
        record { try file.write(s) }
    }

    func write(_ d: Data) {
        guard let file else { return FileHandle.standardOutput.write(d) }
        record { try file.write(d) }
    }

    /// Keeps the first failure for `commit()`; later writes are skipped, the output is lost anyway.
    private func record(_ body: () throws -> Void) {
        guard failure == nil else { return }
        do { try body() } catch { failure = error }
    }

    /// Replaces bytes written earlier (a file only: standard output cannot go back).
    func overwrite(_ d: Data, at offset: Int) {
        guard let file else { preconditionFailure("overwrite needs a file output") }
        record { try file.overwrite(d, at: offset) }
    }

    /// Drops a file output (nothing is published); standard output has already gone.
    func abandon() { file?.abandon() }

    /// Throws the first write failure recorded so far (the output is then abandoned by `commit`).
    func check() throws {
        if let failure { throw failure }
    }

    func commit() throws {
        guard let file else { return }
        if let failure {
            file.abandon()
            throw failure
        }
        try file.commit()
    }
}

/// NumPy .npy (format 1.0) header for a little-endian float32 array of the given shape, padded with spaces to
/// a multiple of 64 bytes, or to `length` (a header written before the row count was known, rewritten in place).
func npyHeader(rows: Int, columns: Int, length: Int? = nil) -> Data {
    var dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (\(rows), \(columns)), }"
    let unpadded = 10 + dict.utf8.count + 1
    let padding = length.map { $0 - unpadded } ?? (64 - unpadded % 64) % 64
    precondition(padding >= 0, "npy header longer than the space reserved for it")
    dict += String(repeating: " ", count: padding) + "\n"
    var header = Data([0x93]) + Data("NUMPY".utf8) + Data([1, 0])
    let length = UInt16(dict.utf8.count)
    header += Data([UInt8(length & 0xFF), UInt8(length >> 8)])
    header += Data(dict.utf8)
    return header
}
