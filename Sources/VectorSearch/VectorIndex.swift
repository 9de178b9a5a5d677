import AtomicFiles
import CFaissShim
import Foundation

/// How vectors are compared. Scores in `SearchHit` are FAISS's raw values:
/// the inner product (higher is better) or the squared L2 distance (lower is better).
public enum VectorMetric: Int32, Sendable {
    case innerProduct = 0
    case l2 = 1
}

/// Search parameters for one search instead of those stored in the index (nil: the stored one).
public struct SearchTuning: Sendable, Equatable, Codable {
    /// IVF: inverted lists visited per query.
    public var nprobe: Int?
    /// HNSW (or an IVF's HNSW quantizer): candidates explored per query.
    public var efSearch: Int?

    public init(nprobe: Int? = nil, efSearch: Int? = nil) {
        self.nprobe = nprobe
        self.efSearch = efSearch
    }

    public var isEmpty: Bool { nprobe == nil && efSearch == nil }

    enum CodingKeys: String, CodingKey {
        case nprobe, efSearch = "ef_search"
    }
}

public struct SearchHit: Sendable, Hashable {
    public let id: Int64
    public let score: Float

    public init(id: Int64, score: Float) {
        self.id = id
        self.score = score
    }
}

/// A FAISS index addressed by 64-bit external ids.
///
/// Thread safety: FAISS searches are safe for concurrent readers, but training,
/// adding, removing and changing search parameters are not. Reads (search,
/// rangeSearch, reconstruct, write, count) take a shared lock; mutations take
/// an exclusive one, so the class can be shared across threads.
public final class VectorIndex: @unchecked Sendable {
    private let handle: OpaquePointer
    private let lock = ReadWriteLock()
    public let dimension: Int
    public let metric: VectorMetric

    /// - Parameter factory: a FAISS index_factory string, e.g. "Flat", "HNSW32",
    ///   "IVF1024,Flat", "IVF256,PQ16", "SQ8". See `defaultFactory(count:)`.
    public convenience init(dimension: Int, factory: String = "Flat", metric: VectorMetric = .innerProduct) throws {
        guard dimension > 0, dimension <= Int(Int32.max) else {
            throw VectorSearchError.invalidArgument("create", "dimension must be in 1...\(Int32.max), got \(dimension)")
        }
        var raw: OpaquePointer?
        try checkShim(faiss_shim_create(Int32(dimension), factory, metric.rawValue, &raw), "create")
        try self.init(adopting: raw, operation: "create")
    }

    /// Takes ownership of a handle returned by the shim.
    private init(adopting raw: OpaquePointer?, operation: String) throws {
        guard let raw else { throw VectorSearchError.invalidArgument(operation, "shim returned no index") }
        guard let metric = VectorMetric(rawValue: faiss_shim_metric(raw)) else {
            faiss_shim_free(raw)
            throw VectorSearchError.invalidArgument(operation, "unsupported metric (only inner product and L2 are supported)")
        }
        self.handle = raw
        self.dimension = Int(faiss_shim_dimension(raw))
        self.metric = metric
    }

    deinit {
        faiss_shim_free(handle)
    }

    // MARK: Persistence

    public static func read(from url: URL) throws -> VectorIndex {
        var raw: OpaquePointer?
        try checkShim(faiss_shim_read(url.path, &raw), "read")
        return try VectorIndex(adopting: raw, operation: "read")
    }

    /// Writes atomically (`AtomicFile`): FAISS writes a temporary sibling, which is fsynced and renamed over
    /// `url`, so readers never observe a partial index. File-system failures are `AtomicWriteError`s.
    /// Written whole beside `url` and renamed over it; `beforePublishing` sees the complete file first.
    public func write(to url: URL, beforePublishing: (URL) throws -> Void = { _ in }) throws {
        try AtomicFile.write(to: url) { temporary in
            try lock.withReadLock { try checkShim(faiss_shim_write(handle, temporary.path), "write") }
            try beforePublishing(temporary)
        }
    }

    // MARK: Properties

    public var count: Int { lock.withReadLock { Int(faiss_shim_ntotal(handle)) } }
    public var isTrained: Bool { lock.withReadLock { faiss_shim_is_trained(handle) != 0 } }

    // MARK: Mutation

    /// Trains quantizers (IVF, PQ, SQ); a no-op for Flat and HNSW.
    /// `vectors` holds n * dimension floats, row-major.
    public func train(_ vectors: [Float]) throws {
        let n = try rowCount(vectors, "train")
        try lock.withWriteLock {
            try checkShim(faiss_shim_train(handle, Int64(n), vectors), "train")
        }
    }

    /// Adds n vectors (n * dimension floats) under the given non-negative, unique ids.
    public func add(_ vectors: [Float], ids: [Int64]) throws {
        let n = try rowCount(vectors, "add")
        guard ids.count == n else {
            throw VectorSearchError.invalidArgument("add", "\(n) vectors but \(ids.count) ids")
        }
        try lock.withWriteLock {
            try checkShim(faiss_shim_add_with_ids(handle, Int64(n), vectors, ids), "add")
        }
    }

    /// Removes the ids that are present; returns how many were removed.
    /// Supported for Flat, SQ, PQ and IVF indexes; HNSW cannot remove (throws).
    @discardableResult
    public func remove(ids: [Int64]) throws -> Int {
        var removed: Int64 = 0
        try lock.withWriteLock {
            try checkShim(faiss_shim_remove_ids(handle, Int64(ids.count), ids, &removed), "remove")
        }
        return Int(removed)
    }

    /// Moves every vector of `other` into this index, ids kept (FAISS's IVF merge: inverted lists appended),
    /// leaving `other` empty. Both must be plain IVF indexes from the same trained quantizer (FAISS compares
    /// the centroids; the caller compares quantizer digests first, for a clearer error) with no id in both.
    public func merge(from other: VectorIndex) throws {
        guard other !== self else { throw VectorSearchError.invalidArgument("merge", "an index cannot be merged into itself") }
        try lock.withWriteLock {
            try other.lock.withWriteLock {
                try checkShim(faiss_shim_merge_ivf(handle, other.handle), "merge")
            }
        }
    }

    /// Fills this index — the empty trained index (quantizer) the sources were started from — with the
    /// inverted lists of the IVF index files `sources`, kept in the file `lists` on disk (FAISS's
    /// OnDiskInvertedLists) instead of memory. The sources are memory-mapped, not loaded. Write this index
    /// into the directory of `lists`: reading finds the lists' file beside the index file.
    public func mergeOnDisk(_ sources: [URL], lists: URL) throws {
        var paths = sources.map { strdup($0.path) }
        defer { paths.forEach { free($0) } }
        try lock.withWriteLock {
            try paths.withUnsafeMutableBufferPointer { buffer in
                try buffer.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buffer.count) { pointer in
                    try checkShim(faiss_shim_merge_ivf_ondisk(handle, pointer, Int32(buffer.count), lists.path), "merge")
                }
            }
        }
    }

    /// Number of inverted lists visited per query (IVF indexes only).
    public func setNProbe(_ nprobe: Int) throws {
        try lock.withWriteLock {
            try checkShim(faiss_shim_set_nprobe(handle, Int64(nprobe)), "setNProbe")
        }
    }

    /// Size of the HNSW candidate list at query time (HNSW indexes only).
    public func setEfSearch(_ efSearch: Int) throws {
        guard efSearch > 0, efSearch <= Int(Int32.max) else {
            throw VectorSearchError.invalidArgument("setEfSearch", "efSearch must be in 1...\(Int32.max), got \(efSearch)")
        }
        try lock.withWriteLock {
            try checkShim(faiss_shim_set_ef_search(handle, Int32(efSearch)), "setEfSearch")
        }
    }

    // MARK: Queries

    /// k nearest neighbours for each of the n queries (n * dimension floats),
    /// best first. Fewer than k hits are returned when the index holds fewer.
    /// `tuning` overrides the stored search parameters for this call only; such a search holds the index
    /// exclusively (FAISS reads them from the index), plain searches run concurrently.
    public func search(_ queries: [Float], k: Int, tuning: SearchTuning = SearchTuning()) throws -> [[SearchHit]] {
        guard k > 0 else { throw VectorSearchError.invalidArgument("search", "k must be positive, got \(k)") }
        let n = try rowCount(queries, "search")
        if let nprobe = tuning.nprobe, nprobe <= 0 { throw VectorSearchError.invalidArgument("search", "nprobe must be positive, got \(nprobe)") }
        if let ef = tuning.efSearch, ef <= 0 || ef > Int(Int32.max) {
            throw VectorSearchError.invalidArgument("search", "ef_search must be in 1...\(Int32.max), got \(ef)")
        }
        let tuned = !tuning.isEmpty
        let search = { () throws -> [[SearchHit]] in
            // Clamp k so a huge k on a small index does not allocate n * k slots.
            let total = Int(faiss_shim_ntotal(self.handle))
            guard n > 0, total > 0 else { return Array(repeating: [], count: n) }
            let kk = min(k, total)
            var distances = [Float](repeating: 0, count: n * kk)
            var labels = [Int64](repeating: -1, count: n * kk)
            if tuned {
                try checkShim(faiss_shim_search_tuned(self.handle, Int64(n), queries, Int64(kk), Int64(tuning.nprobe ?? 0),
                                                      Int32(tuning.efSearch ?? 0), &distances, &labels), "search")
            } else {
                try checkShim(faiss_shim_search(self.handle, Int64(n), queries, Int64(kk), &distances, &labels), "search")
            }
            return (0..<n).map { q in
                (q * kk..<(q + 1) * kk).compactMap { j in
                    labels[j] < 0 ? nil : SearchHit(id: labels[j], score: distances[j]) // -1 = padding
                }
            }
        }
        return try tuned ? lock.withWriteLock(search) : lock.withReadLock(search)
    }

    /// Seconds FAISS itself takes for these searches, timed inside the shim with no Swift in the loop: the
    /// baseline for this wrapper's overhead. One query per FAISS call when `onePerCall`, else one batch.
    public func timeDirectSearches(_ queries: [Float], k: Int, onePerCall: Bool) throws -> Double {
        let n = try rowCount(queries, "timeDirectSearches")
        var seconds = 0.0
        try lock.withReadLock {
            try checkShim(faiss_shim_time_searches(handle, Int64(n), queries, Int64(k), onePerCall ? 1 : 0, &seconds),
                          "timeDirectSearches")
        }
        return seconds
    }

    /// All vectors within `radius` of one query, best first: inner product
    /// score >= radius, or squared L2 distance <= radius.
    public func rangeSearch(_ query: [Float], radius: Float) throws -> [SearchHit] {
        guard query.count == dimension else {
            throw VectorSearchError.invalidArgument("rangeSearch", "query has \(query.count) floats, expected \(dimension)")
        }
        // FAISS compares strictly (> for IP, < for L2); nudge by one ulp for inclusive bounds.
        let faissRadius = metric == .innerProduct ? radius.nextDown : radius.nextUp
        let hits: [SearchHit] = try lock.withReadLock {
            var result: OpaquePointer?
            try checkShim(faiss_shim_range_search(handle, query, faissRadius, &result), "rangeSearch")
            defer { faiss_shim_range_result_free(result) }
            let count = Int(faiss_shim_range_result_count(result))
            var ids = [Int64](repeating: 0, count: count)
            var distances = [Float](repeating: 0, count: count)
            faiss_shim_range_result_copy(result, &ids, &distances)
            return zip(ids, distances).map { SearchHit(id: $0, score: $1) }
        }
        return metric == .innerProduct ? hits.sorted { $0.score > $1.score } : hits.sorted { $0.score < $1.score }
    }

    /// The stored vector for `id` (exact for Flat, decoded for quantized indexes).
    public func reconstruct(id: Int64) throws -> [Float] {
        var vector = [Float](repeating: 0, count: dimension)
        try lock.withReadLock {
            try checkShim(faiss_shim_reconstruct(handle, id, &vector), "reconstruct")
        }
        return vector
    }

    // MARK: Process-wide tuning

    /// Minimum number of queries in one exhaustive (Flat) search call for FAISS
    /// to use BLAS instead of its own distance loop; FAISS defaults to 20.
    /// Debian's libfaiss is a generic SSE build, so OpenBLAS's product is faster
    /// than FAISS's own loop even for one query (`bench-index` measures it).
    /// Process-global: set once at startup, before any search runs.
    public static func setBLASThreshold(_ queries: Int) throws {
        guard queries > 0, queries <= Int(Int32.max) else {
            throw VectorSearchError.invalidArgument("setBLASThreshold", "threshold must be in 1...\(Int32.max), got \(queries)")
        }
        try checkShim(faiss_shim_set_blas_threshold(Int32(queries)), "setBLASThreshold")
    }

    /// Threads FAISS's OpenMP regions may use, process-wide. One is what this project runs with: on few cores
    /// OpenMP's idle workers spin and starve OpenBLAS, which FAISS's exhaustive search calls (`bench-index
    /// --omp-threads` shows the difference); our own callers parallelize across queries and requests instead.
    public static func setOpenMPThreads(_ threads: Int) throws {
        guard threads > 0, threads <= Int(Int32.max) else {
            throw VectorSearchError.invalidArgument("setOpenMPThreads", "threads must be in 1...\(Int32.max), got \(threads)")
        }
        try checkShim(faiss_shim_set_omp_threads(Int32(threads)), "setOpenMPThreads")
    }

    public static var openMPThreads: Int { Int(faiss_shim_omp_threads()) }

    // MARK: Defaults

    /// Factory string for a corpus of `count` vectors.
    ///
    /// Below 50,000 vectors exact search ("Flat") is fast enough and needs no
    /// training. Above, "IVF{nlist},Flat" with nlist ≈ 4·√N rounded to a power of
    /// two. IVF rather than HNSW32 because FAISS's HNSW cannot remove vectors
    /// (documents get deleted), costs ~256 extra bytes of graph per vector, and
    /// builds much more slowly; IVF needs a training pass and an nprobe setting
    /// (start around nlist/32 and raise it for recall).
    public static func defaultFactory(count: Int) -> String {
        guard count >= 50_000 else { return "Flat" }
        let target = 4 * Double(count).squareRoot()
        let nlist = 1 << Int((log2(target)).rounded())
        return "IVF\(nlist),Flat"
    }

    // MARK: Helpers

    private func rowCount(_ vectors: [Float], _ operation: String) throws -> Int {
        guard vectors.count % dimension == 0 else {
            throw VectorSearchError.invalidArgument(
                operation, "\(vectors.count) floats is not a multiple of the dimension \(dimension)")
        }
        return vectors.count / dimension
    }
}
