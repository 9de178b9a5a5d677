/// Errors from `DocumentStore`; each names the database file.
public enum DocumentStoreError: Error, Equatable, CustomStringConvertible {
    /// SQLite reported `code` (extended result code) while doing `operation`.
    case sqlite(path: String, operation: String, code: Int32, message: String)
    /// An inserted document's external id already exists (in the store or earlier in the batch).
    case duplicateExternalID(String, path: String)
    /// An inserted document's internal id already exists.
    case duplicateID(Int64, path: String)
    /// The store was closed.
    case closed(path: String)
    /// Inconsistent input or stored data (e.g. vector count or size mismatch).
    case invalidInput(String, path: String)
    /// `merge(from:)`: a document of the store at `path` (what, e.g. `internal id 7`) is already in this one.
    case mergeClash(String, path: String)

    public var description: String {
        switch self {
        case let .sqlite(path, operation, code, message):
            return "\(path): \(operation) failed: \(message) (SQLite code \(code))"
        case let .duplicateExternalID(externalID, path):
            return "\(path): a document with external id \"\(externalID)\" already exists"
        case let .duplicateID(id, path):
            return "\(path): a document with id \(id) already exists"
        case let .closed(path):
            return "\(path): the document store is closed"
        case let .invalidInput(message, path):
            return "\(path): \(message)"
        case let .mergeClash(what, path):
            return "\(path): \(what) is already in the store it is merged into"
        }
    }
}
