import AtomicFiles
import Foundation
import GemmaEncoder
import VectorSearch

public enum SearchMode: String, Sendable, CaseIterable, Codable {
    case vector, keyword, hybrid
}

/// Per-query search parameters (IVF nprobe, HNSW ef_search) instead of the index's stored ones.
public typealias SearchTuning = VectorSearch.SearchTuning

public struct SearchResult: Sendable, Equatable {
    public var id: String
    public var score: Double
    public var text: String
    public var metadataJSON: String

    public init(id: String, score: Double, text: String, metadataJSON: String) {
        self.id = id
        self.score = score
        self.text = text
        self.metadataJSON = metadataJSON
    }
}

/// Reports progress of a long build: documents done, total.
public typealias IndexProgress = (_ done: Int, _ total: Int) throws -> Void

/// An index directory: `index.faiss` (vectors by internal id), `documents.sqlite` (documents, their vectors,
/// an FTS5 table) and `manifest.json`. Documents and their vectors are committed together in batches, and the
/// FAISS file and manifest are replaced by rename only when complete, so a killed build leaves the previous
/// index readable and a re-run embeds only what was not committed.
public final class SearchIndex: @unchecked Sendable {
    public let directory: URL
    public private(set) var manifest: IndexManifest
    let store: DocumentStore
    var vectors: VectorIndex
    let encoder: TextEncoder

    static let faissName = "index.faiss", storeName = "documents.sqlite", manifestName = "manifest.json"
    static let quantizerName = "quantizer.faiss", lockName = "write.lock"
    /// On-disk inverted lists of an index merged with `onDisk` (beside index.faiss, which refers to it).
    static let ivfdataName = "index.ivfdata"

    var manifestURL: URL { directory.appendingPathComponent(Self.manifestName) }
    var faissURL: URL { directory.appendingPathComponent(Self.faissName) }
    var quantizerURL: URL { directory.appendingPathComponent(Self.quantizerName) }

    /// Opens an existing index; the encoder must be the model that built it.
    public init(directory: URL, encoder: TextEncoder) throws {
        self.directory = directory
        self.encoder = encoder
        manifest = try IndexManifest.load(directory.appendingPathComponent(Self.manifestName))
        let digest = try ModelFingerprint.digest(of: encoder.source)
        guard digest == manifest.modelDigest else {
            throw IndexError.modelMismatch("\(directory.path) was built with model '\(manifest.model)' (digest \(manifest.modelDigest.prefix(12))…), not \(encoder.location.path) (digest \(digest.prefix(12))…): open it with its own model")
        }
        store = try DocumentStore(url: directory.appendingPathComponent(Self.storeName))
        // Checked before FAISS reads them; a file the manifest records must be there.
        let faiss = directory.appendingPathComponent(Self.faissName)
        try IndexFiles.verify(Self.faissName, in: directory, manifest: manifest)
        try IndexFiles.verify(Self.ivfdataName, in: directory, manifest: manifest, sizeOnly: true)
        vectors = FileManager.default.fileExists(atPath: faiss.path)
            ? try VectorIndex.read(from: faiss)
            : try VectorIndex(dimension: manifest.dimension, factory: manifest.factory, metric: .innerProduct)
    }

    /// The manifest of the index in `directory`.
    public static func manifest(in directory: URL) throws -> IndexManifest {
        try IndexManifest.load(directory.appendingPathComponent(manifestName))
    }

    /// Opens an index with the model its manifest names (a cache name or a path), or with `model` when given.
    public static func open(directory: URL, model: String? = nil) throws -> SearchIndex {
        let manifest = try manifest(in: directory)
        return try SearchIndex(directory: directory, encoder: TextEncoder(model: ModelStore().resolve(model ?? manifest.model).path))
    }

    /// Creates an empty index directory for `encoder` (or opens the one there, for resuming a build).
    /// `attention` and `pooling` override the model's own (for a decoder adapted as an encoder). With `trained`
    /// (a directory made by `train`), the index is a shard: it starts from that quantizer, and takes its
    /// factory, attention and pooling from it.
    /// `titleField`: the metadata field of document titles, recorded when the model's document prompt has a title
    /// slot (`IndexManifest.titleField`).
    public static func create(directory: URL, encoder: TextEncoder, modelName: String, factory: String?,
                              expectedCount: Int, attention: AttentionMode? = nil,
                              pooling: Pooling? = nil, trained: URL? = nil, titleField: String? = nil) throws -> SearchIndex {
        let manifestURL = directory.appendingPathComponent(manifestName)
        let quantizer = try trained.map { try TrainedQuantizer(directory: $0, encoder: encoder) }
        if FileManager.default.fileExists(atPath: manifestURL.path) {
            let index = try SearchIndex(directory: directory, encoder: encoder)
            if let quantizer, index.manifest.quantizer != quantizer.manifest.quantizer {
                throw IndexError.quantizerMismatch("\(directory.path) was started from another quantizer than \(quantizer.directory.path)")
            }
            return index
        }
        try createDestinationDirectory(directory)
        var manifest: IndexManifest
        if let quantizer {
            manifest = quantizer.manifest
            manifest.model = modelName
            manifest.created = Date()
            manifest.updated = manifest.created
            let copy = directory.appendingPathComponent(quantizerName)
            try AtomicFile.write(try Data(contentsOf: quantizer.file), to: copy)
            manifest.files = [quantizerName: try IndexFiles.record(of: copy)]
            manifest.publishing = nil
        } else {
            manifest = try newManifest(encoder: encoder, modelName: modelName, factory: factory ?? VectorIndex.defaultFactory(count: expectedCount),
                                       attention: attention, pooling: pooling)
        }
        manifest.titleField = IndexManifest.takesTitles(manifest.documentPrompt) ? titleField : nil
        try manifest.write(to: manifestURL)
        return try SearchIndex(directory: directory, encoder: encoder)
    }

    /// The manifest of a new, empty index; the factory string is checked before anything is written.
    static func newManifest(encoder: TextEncoder, modelName: String, factory: String, attention: AttentionMode?,
                            pooling: Pooling?) throws -> IndexManifest {
        if let pooling, pooling.isLearned { throw IndexError.invalidCorpus("\(pooling.rawValue) pooling has learned parameters: an index needs a parameter-free pooling") }
        let now = Date()
        var manifest = IndexManifest(
            model: modelName, modelDigest: try ModelFingerprint.digest(of: encoder.source),
            dimension: encoder.dimension(options: EmbeddingOptions(attention: attention ?? .bidirectional, pooling: pooling)),
            queryPrompt: encoder.prompts["query"], documentPrompt: encoder.prompts["document"],
            factory: factory, count: 0, created: now, updated: now)
        manifest.attention = attention
        manifest.pooling = pooling?.rawValue
        _ = try VectorIndex(dimension: manifest.dimension, factory: manifest.factory, metric: .innerProduct)
        return manifest
    }

    public var count: Int { manifest.count }

    /// Embeds and stores the documents not yet in the index. With `resume`, documents already stored (from an
    /// interrupted run) are skipped; without it, an id already in the index is an error unless its stored text
    /// and metadata are the same (then it is what an interrupted add committed, and is skipped).
    /// `firstID`: the first internal id of an empty index (shards of one index take disjoint ranges, so that
    /// their vectors keep their ids when merged); later documents continue after the largest id.
    @discardableResult
    public func add(_ documents: [CorpusDocument], batch: Int = 256, resume: Bool, firstID: Int64? = nil,
                    progress: IndexProgress? = nil) throws -> Int {
        let lock = try writerLock()
        defer { lock.release() }
        var pending: [CorpusDocument] = []
        for doc in documents {
            if let stored = try store.id(forExternalID: doc.id) {
                if resume { continue }
                // The same document (text and metadata) is what a re-run of an interrupted add finds: skipped.
                let same = try store.documents(ids: [stored])[stored].map { $0.text == doc.text && $0.metadataJSON == doc.metadataJSON }
                if same == true { continue }
                throw IndexError.invalidCorpus("id \"\(doc.id)\" is already in the index \(directory.path), with other text or metadata (delete it first to replace it)")
            }
            pending.append(doc)
        }
        var nextID = try store.maxID.map { $0 + 1 } ?? firstID ?? 1
        var done = documents.count - pending.count
        try progress?(done, documents.count)
        let options = embeddingOptions(prompt: manifest.documentPrompt)
        for start in stride(from: 0, to: pending.count, by: max(batch, 1)) {
            let chunk = Array(pending[start..<min(start + batch, pending.count)])
            // Each document's prompt, its title in the prompt's slot when it has one.
            let inputs = chunk.flatMap { doc in
                encoder.tokenize([doc.text], prompt: manifest.documentPrompt(title: manifest.title(metadataJSON: doc.metadataJSON)))
            }
            let embeddings = try encoder.embed(inputs, options: options)
            let rows = chunk.map { doc -> Document in
                defer { nextID += 1 }
                return Document(id: nextID, externalID: doc.id, text: doc.text, metadataJSON: doc.metadataJSON)
            }
            try store.insert(rows, vectors: embeddings)
            done += chunk.count
            try progress?(done, documents.count)
        }
        try rebuildVectors()
        return pending.count
    }

    /// Stores `fusion` in the manifest (nil: back to `HybridFusion.standard`), under the writer lock.
    public func setFusion(_ fusion: HybridFusion?) throws {
        let lock = try writerLock()
        defer { lock.release() }
        var current = try IndexManifest.load(manifestURL)
        current.fusion = fusion
        try current.write(to: manifestURL)
        manifest = current
    }

    /// Removes documents by external id; returns how many were found.
    @discardableResult
    public func delete(ids: [String]) throws -> Int {
        let lock = try writerLock()
        defer { lock.release() }
        let removed = try store.delete(externalIDs: ids)
        // A delete killed after its commit left vectors of removed documents behind: its re-run finds nothing
        // to remove, and rebuilds them.
        if try !removed.isEmpty || store.count != vectors.count { try rebuildVectors() }
        return removed.count
    }

    /// One writer at a time per index directory (`write.lock`, released by the kernel if the writer dies);
    /// another writer is refused at once, naming the holder. Searches take no lock.
    func writerLock() throws -> WriterLock { try Self.writerLock(in: directory) }

    /// The writer lock of the index in `directory` (merge takes its shards' and its destination's).
    static func writerLock(in directory: URL) throws -> WriterLock {
        do { return try WriterLock(directory.appendingPathComponent(lockName)) } catch let held as WriterLock.Held {
            throw IndexError.locked("\(held): the index is being written (index build/add/delete/merge); searches go on meanwhile")
        }
    }

    /// Rebuilds the FAISS index from every stored vector, then publishes it and the manifest by rename.
    func rebuildVectors() throws {
        let (ids, flat) = try store.allVectors(dimension: manifest.dimension)
        // A shard adds to the quantizer it was started from; an index of its own trains one on its vectors.
        if manifest.quantizer != nil { try IndexFiles.verify(Self.quantizerName, in: directory, manifest: manifest) }
        let index = manifest.quantizer != nil ? try VectorIndex.read(from: quantizerURL)
            : try VectorIndex(dimension: manifest.dimension, factory: manifest.factory, metric: .innerProduct)
        if !index.isTrained, !ids.isEmpty { try index.train(flat) }
        if !ids.isEmpty { try index.add(flat, ids: ids) }
        try Self.tuneSearch(index, factory: manifest.factory)
        // The new file is announced in the manifest before it replaces the old one, so a kill between the two
        // renames leaves a file the manifest accepts.
        var record: IndexFileRecord?
        try index.write(to: faissURL) { written in
            record = try IndexFiles.record(of: written)
            var announcing = manifest
            announcing.publishing = [Self.faissName: record!]
            try announcing.write(to: manifestURL)
        }
        vectors = index
        manifest.count = ids.count
        manifest.updated = Date()
        var files = manifest.files ?? [:]
        files[Self.faissName] = record
        files[Self.ivfdataName] = nil
        if manifest.quantizer != nil, files[Self.quantizerName] == nil {
            files[Self.quantizerName] = try IndexFiles.record(of: quantizerURL)
        }
        manifest.files = files
        manifest.publishing = nil
        try manifest.write(to: manifestURL)
        // Rebuilt in memory: on-disk lists of an earlier merge are no longer referred to — removed only now,
        // after the manifest stopped recording them (a reader that still maps them keeps its mapping).
        try? FileManager.default.removeItem(at: directory.appendingPathComponent(Self.ivfdataName))
    }

    /// Search-time parameters, which FAISS saves in the index file. IVF probes nlist/32 lists (at least 8, at
    /// most all) instead of FAISS's default of one, the usual balance for clustered embeddings; HNSW explores
    /// 128 candidates instead of 16 (recall@10 ≥ 0.95 against exact search in VectorIndexTests).
    static func tuneSearch(_ index: VectorIndex, factory: String) throws {
        if let match = factory.firstMatch(of: /IVF(\d+)/), let nlist = Int(match.1) {
            try index.setNProbe(min(nlist, max(8, nlist / 32)))
        } else if factory.contains("HNSW") {
            try index.setEfSearch(128)
        }
    }

    /// How hybrid search fuses: the index's fitted fusion (`index tune`), else `HybridFusion.standard`.
    public var fusion: HybridFusion { manifest.fusion ?? .standard }

    /// The k best documents for a query: vector (cosine on the query-prompted embedding), keyword (BM25) or
    /// hybrid (`fusion` of both, each taking max(k, `HybridFusion.candidates`) candidates).
    public func search(_ query: String, k: Int = 10, mode: SearchMode = .vector) throws -> [SearchResult] {
        try search([query], k: k, mode: mode)[0]
    }

    /// `search` for many queries, their embeddings computed in one batch.
    public func search(_ queries: [String], k: Int, mode: SearchMode) throws -> [[SearchResult]] {
        let embeddings = mode != .keyword && vectors.count > 0
            ? try encoder.embed(queries, options: queryEmbeddingOptions) : []
        return try search(queries, embeddings: embeddings, k: k, mode: mode)
    }

    /// How a query must be embedded for this index (its model's query prompt, the index's attention and
    /// pooling), for callers that embed it themselves and pass `embeddings` to `search(_:embeddings:k:mode:)`.
    public var queryEmbeddingOptions: EmbeddingOptions { embeddingOptions(prompt: manifest.queryPrompt) }

    private func embeddingOptions(prompt: String?) -> EmbeddingOptions {
        EmbeddingOptions(prompt: prompt, attention: manifest.attention ?? .bidirectional,
                         pooling: manifest.pooling.flatMap(Pooling.init(rawValue:)))
    }
    public var model: TextEncoder { encoder }

    /// `search` with the queries' embeddings given (empty for keyword search or an empty index).
    /// `tuning` overrides the index's stored search parameters (nprobe, ef_search) for these queries.
    public func search(_ queries: [String], embeddings: [[Float]], k: Int, mode: SearchMode,
                       tuning: SearchTuning = SearchTuning()) throws -> [[SearchResult]] {
        guard k > 0, !queries.isEmpty else { return queries.map { _ in [] } }
        let depth = HybridFusion.depth(k: k, mode: mode)
        return try queries.indices.map { q in
            let (vectorHits, keywordHits) = try candidates(queries[q], embedding: embeddings.isEmpty ? nil : embeddings[q],
                                                          keyword: mode != .vector, depth: depth, tuning: tuning)
            let ranked: [(id: Int64, score: Double)]
            switch mode {
            case .vector: ranked = vectorHits
            case .keyword: ranked = keywordHits
            case .hybrid: ranked = fusion.fuse(vector: vectorHits, keyword: keywordHits)
            }
            let top = Array(ranked.prefix(k))
            let documents = try store.documents(ids: top.map(\.id))
            // A vector whose document was deleted by an interrupted run is skipped, never shown half-resolved.
            return top.compactMap { hit in
                documents[hit.id].map { SearchResult(id: $0.externalID, score: hit.score, text: $0.text, metadataJSON: $0.metadataJSON) }
            }
        }
    }

    /// A query's first `depth` vector hits (with its embedding) and keyword hits (when asked), by internal id, best
    /// first: what every search mode ranks.
    func candidates(_ query: String, embedding: [Float]?, keyword: Bool, depth: Int, tuning: SearchTuning = SearchTuning()) throws
        -> (vector: [(id: Int64, score: Double)], keyword: [(id: Int64, score: Double)]) {
        let vectorHits = try embedding.map { try vectors.search($0, k: depth, tuning: tuning)[0].map { (id: $0.id, score: Double($0.score)) } } ?? []
        return (vectorHits, keyword ? try store.keywordSearch(query, limit: depth) : [])
    }

    /// The stored text of documents by external id (nil for an id not in the index).
    public func documentText(ids: [String]) throws -> [String?] {
        let internalIDs = try ids.map { try store.id(forExternalID: $0) }
        let documents = try store.documents(ids: internalIDs.compactMap { $0 })
        return internalIDs.map { $0.flatMap { documents[$0]?.text } }
    }
}
