import CFaissShim

/// A failure reported by the FAISS shim or rejected by `VectorIndex` itself.
public struct VectorSearchError: Error, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Bad input caught before reaching FAISS (shape, dimension, ids, ...).
        case invalidArgument
        /// FAISS threw (unknown factory, untrained index, unsupported operation, I/O).
        case faiss
        case unknown
    }

    public let kind: Kind
    /// The operation that failed, e.g. "add" or "read".
    public let operation: String
    public let message: String

    public init(kind: Kind, operation: String, message: String) {
        self.kind = kind
        self.operation = operation
        self.message = message
    }

    public var description: String { "VectorSearchError.\(kind) in \(operation): \(message)" }

    static func invalidArgument(_ operation: String, _ message: String) -> VectorSearchError {
        VectorSearchError(kind: .invalidArgument, operation: operation, message: message)
    }

    /// Converts a shim status into an error carrying the shim's thread-local message.
    /// Must be called on the thread that made the failing call.
    static func fromShim(status: Int32, operation: String) -> VectorSearchError {
        let kind: Kind
        switch status {
        case Int32(FAISS_SHIM_INVALID_ARGUMENT.rawValue): kind = .invalidArgument
        case Int32(FAISS_SHIM_FAISS_ERROR.rawValue): kind = .faiss
        default: kind = .unknown
        }
        return VectorSearchError(kind: kind, operation: operation, message: String(cString: faiss_shim_last_error()))
    }
}

/// Throws if a shim call did not return FAISS_SHIM_OK.
@inline(__always)
func checkShim(_ status: Int32, _ operation: String) throws {
    if status != 0 { throw VectorSearchError.fromShim(status: status, operation: operation) }
}
