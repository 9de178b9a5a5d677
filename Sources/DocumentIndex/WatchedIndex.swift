import Dispatch
import Foundation
import GemmaEncoder

/// An index directory served while another process writes it (`index build/add/delete`): a timer compares
/// `manifest.json` with the version being served, and when it changed opens the new version (its files
/// checked as any open checks them) and swaps it in. A search takes the version current when it starts and
/// finishes on it, so no request fails across a swap; a version that does not open (caught mid-write, say)
/// is left for the next look, and the served one stays.
public final class WatchedIndex: SearchableIndex, @unchecked Sendable {
    public let directory: URL
    private let encoder: TextEncoder
    private let lock = NSLock()
    // Guarded by `lock`.
    private var current: SearchIndex
    private var failure: String?
    private var timer: DispatchSourceTimer?
    /// Why a new version may not be served (nil: it may), beyond opening: shards must keep embedding alike.
    private let refusal: @Sendable (IndexManifest) -> String?

    /// Serves `index` (already open) until its directory publishes another version.
    public init(_ index: SearchIndex, refusing refusal: @escaping @Sendable (IndexManifest) -> String? = { _ in nil }) {
        directory = index.directory
        encoder = index.model
        current = index
        self.refusal = refusal
    }

    deinit { timer?.cancel() }

    /// The version searches use now.
    public var index: SearchIndex { lock.withLock { current } }

    /// Why the newest version on disk is not served, when it could not be opened.
    public var lastFailure: String? { lock.withLock { failure } }

    /// Opens the directory's version when its manifest differs from the one served; true when it swapped.
    @discardableResult
    public func reloadIfChanged() -> Bool {
        // The manifest is rewritten (by rename) with every published version.
        // A manifest announcing a file (`publishing`) is the middle of a rebuild: the next look finds its end.
        guard let manifest = try? SearchIndex.manifest(in: directory), manifest.publishing == nil,
              manifest != index.manifest else { return false }
        // Refused from its manifest, before its files are read and hashed (the next look refuses it again).
        if let reason = refusal(manifest) {
            lock.withLock { failure = reason }
            return false
        }
        do {
            let next = try SearchIndex(directory: directory, encoder: encoder)
            lock.withLock {
                current = next
                failure = nil
            }
            return true
        } catch {
            lock.withLock { failure = "\(error)" }
            return false
        }
    }

    /// Looks for a new version every `seconds`, on a background queue, until `stopWatching` (or deinit).
    public func startWatching(every seconds: Double) {
        let source = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "index-watch \(directory.lastPathComponent)"))
        source.schedule(deadline: .now() + seconds, repeating: seconds)
        source.setEventHandler { [weak self] in self?.reloadIfChanged() }
        lock.withLock {
            timer?.cancel()
            timer = source
        }
        source.resume()
    }

    public func stopWatching() {
        lock.withLock {
            timer?.cancel()
            timer = nil
        }
    }

    public var snapshot: any SearchableIndex { index }

    // SearchableIndex: each call on the version current when it starts.
    public var manifest: IndexManifest { index.manifest }
    public var count: Int { index.count }
    public var model: TextEncoder { encoder }
    public var queryEmbeddingOptions: EmbeddingOptions { index.queryEmbeddingOptions }

    public func search(_ queries: [String], embeddings: [[Float]], k: Int, mode: SearchMode,
                       tuning: SearchTuning) throws -> [[SearchResult]] {
        try index.search(queries, embeddings: embeddings, k: k, mode: mode, tuning: tuning)
    }

    public func storesEmbeddings(of similarity: FusedSimilarity) -> Bool { index.storesEmbeddings(of: similarity) }

    public func storedCosines(query: [Float], results: [SearchResult]) throws -> [Float]? {
        try index.storedCosines(query: query, results: results)
    }
}

/// Shards of one collection (`IndexShards`), each directory watched as `WatchedIndex` watches one: a shard
/// rewritten by another process is served in its new version without a restart. A request searches the set
/// of versions current when it starts (`snapshot`), so it never mixes two versions of a shard. A new version
/// that embeds differently from the first shard as served at start (another model, prompt or pooling) is
/// not swapped in; its watcher reports why (`lastFailure`).
public final class WatchedShards: SearchableIndex, @unchecked Sendable {
    public let shards: [WatchedIndex]

    /// Serves `shards` (already open), refused as `IndexShards` refuses shards that do not embed alike.
    public init(_ shards: [SearchIndex]) throws {
        let first = try IndexShards(shards).shards[0].manifest
        self.shards = shards.map { shard in
            let path = shard.directory.path   // not the shard: its first version would be held for good
            return WatchedIndex(shard) { next in
                let differences = ShardCompatibility.embeddingDifferences(first, next)
                return differences.isEmpty ? nil
                    : "\(path) cannot be searched with the other shards: different \(differences.joined(separator: ", "))"
            }
        }
    }

    public func startWatching(every seconds: Double) { shards.forEach { $0.startWatching(every: seconds) } }
    public func stopWatching() { shards.forEach { $0.stopWatching() } }

    /// The shards' current versions searched as one.
    public var current: IndexShards { IndexShards(compatible: shards.map(\.index)) }

    public var snapshot: any SearchableIndex { current }

    // SearchableIndex: each call on the set current when it starts.
    public var manifest: IndexManifest { current.manifest }
    public var count: Int { current.count }
    public var model: TextEncoder { shards[0].model }
    public var queryEmbeddingOptions: EmbeddingOptions { current.queryEmbeddingOptions }

    public func search(_ queries: [String], embeddings: [[Float]], k: Int, mode: SearchMode,
                       tuning: SearchTuning) throws -> [[SearchResult]] {
        try current.search(queries, embeddings: embeddings, k: k, mode: mode, tuning: tuning)
    }

    public func storesEmbeddings(of similarity: FusedSimilarity) -> Bool { current.storesEmbeddings(of: similarity) }

    public func storedCosines(query: [Float], results: [SearchResult]) throws -> [Float]? {
        try current.storedCosines(query: query, results: results)
    }
}
