import CSQLite

/// One SQLite connection with a cache of prepared statements. Not thread-safe;
/// `DocumentStore` serializes access.
final class SQLiteConnection {
    let path: String
    private var db: OpaquePointer?
    private var statements: [String: Statement] = [:]

    init(path: String) throws {
        self.path = path
        var handle: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let status = sqlite3_open_v2(path, &handle, flags, nil)
        guard status == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            sqlite3_close_v2(handle)
            throw DocumentStoreError.sqlite(path: path, operation: "open", code: status, message: message)
        }
        sqlite3_extended_result_codes(handle, 1)
        db = handle
    }

    deinit { close() }

    func close() {
        for statement in statements.values { statement.finalize() }
        statements.removeAll()
        sqlite3_close_v2(db)
        db = nil
    }

    /// Runs one or more SQL statements without results (schema, pragmas, BEGIN/COMMIT).
    func execute(_ sql: String, operation: String) throws {
        let db = try open()
        var errorMessage: UnsafeMutablePointer<CChar>?
        let status = sqlite3_exec(db, sql, nil, nil, &errorMessage)
        defer { sqlite3_free(errorMessage) }
        guard status == SQLITE_OK else {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(db))
            throw DocumentStoreError.sqlite(path: path, operation: operation,
                                            code: sqlite3_extended_errcode(db), message: message)
        }
    }

    /// A cached prepared statement, reset and with bindings cleared.
    func prepared(_ sql: String) throws -> Statement {
        if let cached = statements[sql] { return cached }
        let db = try open()
        var handle: OpaquePointer?
        let status = sqlite3_prepare_v3(db, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &handle, nil)
        guard status == SQLITE_OK, let handle else {
            throw error(operation: "prepare \(sql)", status: status)
        }
        let statement = Statement(handle: handle, connection: self)
        statements[sql] = statement
        return statement
    }

    /// Runs `body` in a write transaction, rolling back if it throws.
    func transaction<T>(operation: String, _ body: () throws -> T) throws -> T {
        // IMMEDIATE takes the write lock up front, so a batch cannot fail halfway on SQLITE_BUSY.
        try execute("BEGIN IMMEDIATE", operation: operation)
        do {
            let result = try body()
            try execute("COMMIT", operation: operation)
            return result
        } catch {
            try? execute("ROLLBACK", operation: operation)
            throw error
        }
    }

    func error(operation: String, status: Int32) -> DocumentStoreError {
        guard let db else { return .closed(path: path) }
        return .sqlite(path: path, operation: operation, code: sqlite3_extended_errcode(db),
                       message: String(cString: sqlite3_errmsg(db)))
    }

    private func open() throws -> OpaquePointer {
        guard let db else { throw DocumentStoreError.closed(path: path) }
        return db
    }
}

/// A prepared statement. Use as `let s = try c.prepared(sql); defer { s.reset() }`.
final class Statement {
    private var handle: OpaquePointer?
    private unowned let connection: SQLiteConnection

    init(handle: OpaquePointer, connection: SQLiteConnection) {
        self.handle = handle
        self.connection = connection
    }

    func finalize() {
        sqlite3_finalize(handle)
        handle = nil
    }

    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func bind(_ index: Int32, _ value: Int64) throws {
        try check(sqlite3_bind_int64(handle, index, value), "bind")
    }

    func bind(_ index: Int32, _ value: String) throws {
        // Transient: SQLite copies the bytes, so the Swift string may go away.
        try check(sqlite3_bind_text(handle, index, value, -1, csqlite_transient()), "bind")
    }

    func bind(_ index: Int32, floats: [Float]) throws {
        // Native (little-endian on all supported targets) Float32 bytes.
        let status = floats.withUnsafeBytes { bytes in
            sqlite3_bind_blob(handle, index, bytes.baseAddress, Int32(bytes.count), csqlite_transient())
        }
        try check(status, "bind")
    }

    /// Advances; true while a row is available.
    func step(_ operation: String) throws -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        case let status: throw connection.error(operation: operation, status: status)
        }
    }

    func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }
    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    /// Appends a Float32 blob to `out`; returns the number of floats, or nil if
    /// the blob size is not a whole number of floats.
    func appendFloats(_ column: Int32, to out: inout [Float]) -> Int? {
        let byteCount = Int(sqlite3_column_bytes(handle, column))
        guard byteCount % MemoryLayout<Float>.size == 0 else { return nil }
        let count = byteCount / MemoryLayout<Float>.size
        guard count > 0, let blob = sqlite3_column_blob(handle, column) else { return count == 0 ? 0 : nil }
        let start = out.count
        out.append(contentsOf: repeatElement(0, count: count))
        out.withUnsafeMutableBytes { dst in
            dst.baseAddress!.advanced(by: start * MemoryLayout<Float>.size).copyMemory(from: blob, byteCount: byteCount)
        }
        return count
    }

    func text(_ column: Int32) -> String {
        guard let bytes = sqlite3_column_text(handle, column) else { return "" }
        let length = Int(sqlite3_column_bytes(handle, column)) // call after column_text
        return String(decoding: UnsafeBufferPointer(start: bytes, count: length), as: UTF8.self)
    }

    private func check(_ status: Int32, _ operation: String) throws {
        guard status == SQLITE_OK else { throw connection.error(operation: operation, status: status) }
    }
}
