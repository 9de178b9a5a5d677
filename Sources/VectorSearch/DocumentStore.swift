import Foundation

/// Documents and their full-text index in one SQLite file.
///
/// One connection in WAL mode; every public method holds a lock for its whole
/// duration, so the store can be shared across threads (calls are serialized).
/// Batch writes run in a single transaction: they apply completely or not at all.
public final class DocumentStore: @unchecked Sendable {
    public let url: URL
    private let connection: SQLiteConnection
    private let lock = NSLock()

    private static let schemaVersion = 1

    /// Opens (creating if needed) the database at `url`.
    public init(url: URL) throws {
        self.url = url
        connection = try SQLiteConnection(path: url.path)
        try connection.execute("""
            PRAGMA journal_mode = WAL;
            PRAGMA synchronous = NORMAL;
            PRAGMA busy_timeout = 5000;
            """, operation: "configure")
        try createSchemaIfNeeded()
    }

    /// Closes the connection; later calls throw `DocumentStoreError.closed`.
    /// Also happens on deinit.
    public func close() {
        lock.withLock { connection.close() }
    }

    // MARK: Documents

    /// Inserts all documents in one transaction. On a duplicate id or external id
    /// nothing is inserted and the error names the offending key.
    ///
    /// `vectors`, if given, holds one embedding per document (same order); they
    /// are kept so the vector index can be rebuilt from this file alone
    /// (`allVectors`) and are deleted with their document.
    public func insert(_ documents: [Document], vectors: [[Float]]? = nil) throws {
        if let vectors, vectors.count != documents.count {
            throw DocumentStoreError.invalidInput("\(documents.count) documents but \(vectors.count) vectors", path: url.path)
        }
        try lock.withLock {
            try connection.transaction(operation: "insert") {
                let statement = try connection.prepared(
                    "INSERT INTO documents(id, external_id, text, metadata) VALUES (?1, ?2, ?3, ?4)")
                let vectorStatement = try connection.prepared("INSERT INTO vectors(id, embedding) VALUES (?1, ?2)")
                for (offset, document) in documents.enumerated() {
                    if let vectors {
                        defer { vectorStatement.reset() }
                        try vectorStatement.bind(1, document.id)
                        try vectorStatement.bind(2, floats: vectors[offset])
                        _ = try vectorStatement.step("insert vector \(document.externalID)")
                    }
                    defer { statement.reset() }
                    try statement.bind(1, document.id)
                    try statement.bind(2, document.externalID)
                    try statement.bind(3, document.text)
                    try statement.bind(4, document.metadataJSON)
                    do {
                        _ = try statement.step("insert \(document.externalID)")
                    } catch let DocumentStoreError.sqlite(_, _, code, message) where code == Self.constraintUnique {
                        throw message.contains("external_id")
                            ? DocumentStoreError.duplicateExternalID(document.externalID, path: url.path)
                            : DocumentStoreError.sqlite(path: url.path, operation: "insert \(document.externalID)",
                                                        code: code, message: message)
                    } catch let DocumentStoreError.sqlite(_, _, code, _) where code == Self.constraintPrimaryKey {
                        throw DocumentStoreError.duplicateID(document.id, path: url.path)
                    }
                }
            }
        }
    }

    /// Copies every document and vector of the store at `other` (a shard of the same index) into this one, in
    /// one transaction; the full-text index takes the new documents through its insert trigger. An internal
    /// id or external id already here is refused before anything is copied, and the error names it and the
    /// shard (`mergeClash`).
    public func merge(from other: URL) throws {
        // ATTACH would create a missing file (and then fail on its missing tables).
        guard FileManager.default.fileExists(atPath: other.path) else {
            throw DocumentStoreError.invalidInput("no such database (not an index directory's store?)", path: other.path)
        }
        try lock.withLock {
            let attach = try connection.prepared("ATTACH DATABASE ?1 AS shard")
            try attach.bind(1, other.path)
            _ = try attach.step("attach \(other.path)")
            attach.reset()
            defer { try? connection.execute("DETACH DATABASE shard", operation: "detach \(other.path)") }
            let clash = try connection.prepared("SELECT s.id FROM shard.documents s JOIN main.documents m ON m.id = s.id LIMIT 1")
            if try clash.step("compare ids") {
                let id = clash.int64(0)
                clash.reset()
                throw DocumentStoreError.mergeClash("internal id \(id)", path: other.path)
            }
            clash.reset()
            let external = try connection.prepared(
                "SELECT s.external_id FROM shard.documents s JOIN main.documents m ON m.external_id = s.external_id LIMIT 1")
            if try external.step("compare external ids") {
                let id = external.text(0)
                external.reset()
                throw DocumentStoreError.mergeClash("document id \"\(id)\"", path: other.path)
            }
            external.reset()
            try connection.transaction(operation: "merge \(other.path)") {
                try connection.execute("""
                    INSERT INTO documents(id, external_id, text, metadata) SELECT id, external_id, text, metadata FROM shard.documents;
                    INSERT INTO vectors(id, embedding) SELECT id, embedding FROM shard.vectors;
                    """, operation: "merge \(other.path)")
            }
        }
    }

    /// The documents that exist among `ids`, keyed by id.
    public func documents(ids: [Int64]) throws -> [Int64: Document] {
        try lock.withLock {
            let statement = try connection.prepared(
                "SELECT id, external_id, text, metadata FROM documents WHERE id = ?1")
            var result: [Int64: Document] = [:]
            for id in ids {
                defer { statement.reset() }
                try statement.bind(1, id)
                if try statement.step("fetch document \(id)") {
                    result[id] = Document(id: statement.int64(0), externalID: statement.text(1),
                                          text: statement.text(2), metadataJSON: statement.text(3))
                }
            }
            return result
        }
    }

    public func id(forExternalID externalID: String) throws -> Int64? {
        try lock.withLock {
            let statement = try connection.prepared("SELECT id FROM documents WHERE external_id = ?1")
            defer { statement.reset() }
            try statement.bind(1, externalID)
            return try statement.step("look up \(externalID)") ? statement.int64(0) : nil
        }
    }

    /// Deletes the documents with these external ids (unknown ones are ignored)
    /// and returns the internal ids removed, e.g. to remove them from the vector index.
    @discardableResult
    public func delete(externalIDs: [String]) throws -> [Int64] {
        try lock.withLock {
            try connection.transaction(operation: "delete") {
                let statement = try connection.prepared("DELETE FROM documents WHERE external_id = ?1 RETURNING id")
                var removed: [Int64] = []
                for externalID in externalIDs {
                    defer { statement.reset() }
                    try statement.bind(1, externalID)
                    while try statement.step("delete \(externalID)") { removed.append(statement.int64(0)) }
                }
                return removed
            }
        }
    }

    /// Every stored embedding, ordered by id, as one row-major buffer ready for
    /// `VectorIndex.add`. Throws if a stored vector's length is not `dimension`.
    public func allVectors(dimension: Int) throws -> (ids: [Int64], vectors: [Float]) {
        try lock.withLock {
            let statement = try connection.prepared("SELECT id, embedding FROM vectors ORDER BY id")
            defer { statement.reset() }
            var ids: [Int64] = []
            var flat: [Float] = []
            while try statement.step("read vectors") {
                let id = statement.int64(0)
                let length = statement.appendFloats(1, to: &flat)
                guard length == dimension else {
                    throw DocumentStoreError.invalidInput(
                        "vector for id \(id) has \(length.map(String.init) ?? "a partial") floats, expected \(dimension)", path: url.path)
                }
                ids.append(id)
            }
            return (ids, flat)
        }
    }

    /// The stored embeddings of `ids` that have one, keyed by id (a reranker reuses them instead of
    /// embedding its candidates again). Throws if a stored vector's length is not `dimension`.
    public func vectors(ids: [Int64], dimension: Int) throws -> [Int64: [Float]] {
        try lock.withLock {
            let statement = try connection.prepared("SELECT embedding FROM vectors WHERE id = ?1")
            var result: [Int64: [Float]] = [:]
            for id in ids {
                defer { statement.reset() }
                try statement.bind(1, id)
                guard try statement.step("fetch vector \(id)") else { continue }
                var vector: [Float] = []
                guard statement.appendFloats(0, to: &vector) == dimension else {
                    throw DocumentStoreError.invalidInput("vector for id \(id) has \(vector.count) floats, expected \(dimension)", path: url.path)
                }
                result[id] = vector
            }
            return result
        }
    }

    public var count: Int {
        get throws { try Int(scalar("SELECT count(*) FROM documents", operation: "count") ?? 0) }
    }

    /// The largest internal id, or nil when the store is empty.
    public var maxID: Int64? {
        get throws { try scalar("SELECT max(id) FROM documents", operation: "maxID") }
    }

    // MARK: Keyword search

    /// BM25-ranked full-text search; higher score is better.
    ///
    /// The query is treated as plain words, never as FTS5 syntax: it is split
    /// into letter/digit runs, each quoted as an FTS5 string, and joined with OR
    /// so documents matching more (and rarer) words rank higher.
    public func keywordSearch(_ query: String, limit: Int) throws -> [(id: Int64, score: Double)] {
        guard limit > 0, let match = Self.ftsQuery(query) else { return [] }
        return try lock.withLock {
            // bm25() is lower-is-better (negative); negate for higher-is-better.
            let statement = try connection.prepared("""
                SELECT rowid, -bm25(documents_fts) AS score FROM documents_fts
                WHERE documents_fts MATCH ?1 ORDER BY score DESC LIMIT ?2
                """)
            defer { statement.reset() }
            try statement.bind(1, match)
            try statement.bind(2, Int64(limit))
            var hits: [(id: Int64, score: Double)] = []
            while try statement.step("keyword search") {
                hits.append((id: statement.int64(0), score: statement.double(1)))
            }
            return hits
        }
    }

    /// The FTS5 MATCH expression used for `query`: `"word1" OR "word2" ...`,
    /// or nil when the query has no words.
    public static func ftsQuery(_ query: String, maxTerms: Int = 64) -> String? {
        let words = query.split { !($0.isLetter || $0.isNumber) }.prefix(maxTerms)
        guard !words.isEmpty else { return nil }
        // Words hold only letters and digits, so they contain no quote to escape;
        // doubling is kept in case the split rule ever changes.
        return words.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }
            .joined(separator: " OR ")
    }

    // MARK: Meta

    /// Stores a small key/value pair (e.g. an ingestion resume cursor).
    public func setMeta(_ key: String, _ value: String) throws {
        try lock.withLock {
            let statement = try connection.prepared("""
                INSERT INTO meta(key, value) VALUES (?1, ?2)
                ON CONFLICT(key) DO UPDATE SET value = excluded.value
                """)
            defer { statement.reset() }
            try statement.bind(1, key)
            try statement.bind(2, value)
            _ = try statement.step("set meta \(key)")
        }
    }

    public func meta(_ key: String) throws -> String? {
        try lock.withLock {
            let statement = try connection.prepared("SELECT value FROM meta WHERE key = ?1")
            defer { statement.reset() }
            try statement.bind(1, key)
            return try statement.step("get meta \(key)") ? statement.text(0) : nil
        }
    }

    // MARK: Private

    // Extended result codes (the C macros are not importable).
    private static let constraintUnique: Int32 = 2067     // SQLITE_CONSTRAINT_UNIQUE
    private static let constraintPrimaryKey: Int32 = 1555 // SQLITE_CONSTRAINT_PRIMARYKEY

    private func scalar(_ sql: String, operation: String) throws -> Int64? {
        try lock.withLock {
            let statement = try connection.prepared(sql)
            defer { statement.reset() }
            guard try statement.step(operation), !statement.isNull(0) else { return nil }
            return statement.int64(0)
        }
    }

    private func createSchemaIfNeeded() throws {
        // External-content FTS5 over documents.text, kept in sync by triggers, so
        // the text is stored once and every write path updates the index.
        try connection.transaction(operation: "create schema") {
            try connection.execute("""
                CREATE TABLE IF NOT EXISTS documents (
                    id INTEGER PRIMARY KEY,
                    external_id TEXT NOT NULL UNIQUE,
                    text TEXT NOT NULL,
                    metadata TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata))
                );
                CREATE VIRTUAL TABLE IF NOT EXISTS documents_fts USING fts5(
                    text, content='documents', content_rowid='id',
                    tokenize='unicode61 remove_diacritics 2'
                );
                CREATE TRIGGER IF NOT EXISTS documents_ai AFTER INSERT ON documents BEGIN
                    INSERT INTO documents_fts(rowid, text) VALUES (new.id, new.text);
                END;
                CREATE TRIGGER IF NOT EXISTS documents_ad AFTER DELETE ON documents BEGIN
                    INSERT INTO documents_fts(documents_fts, rowid, text) VALUES ('delete', old.id, old.text);
                END;
                CREATE TRIGGER IF NOT EXISTS documents_au AFTER UPDATE OF text ON documents BEGIN
                    INSERT INTO documents_fts(documents_fts, rowid, text) VALUES ('delete', old.id, old.text);
                    INSERT INTO documents_fts(rowid, text) VALUES (new.id, new.text);
                END;
                CREATE TABLE IF NOT EXISTS vectors (
                    id INTEGER PRIMARY KEY,  -- = documents.id
                    embedding BLOB NOT NULL  -- Float32, native byte order
                );
                CREATE TRIGGER IF NOT EXISTS documents_vectors_ad AFTER DELETE ON documents BEGIN
                    DELETE FROM vectors WHERE id = old.id;
                END;
                CREATE TABLE IF NOT EXISTS meta (
                    key TEXT PRIMARY KEY,
                    value TEXT NOT NULL
                );
                PRAGMA user_version = \(Self.schemaVersion);
                """, operation: "create schema")
        }
    }
}
