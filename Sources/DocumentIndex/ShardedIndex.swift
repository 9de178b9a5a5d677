import AtomicFiles
import Foundation
import GemmaEncoder
import ModelFormats
import VectorSearch

/// Sharded indexes, built in pieces (on many machines) and merged: one IVF quantizer is trained once on a
/// sample (`train`), every shard starts from it (`create(…, trained:)`, with its own range of internal ids),
/// and `merge` appends the shards' inverted lists and documents into one index. Because every shard assigns
/// its vectors to the same centroids, the merged index holds exactly what one built in a single process from
/// that quantizer would hold.
extension SearchIndex {
    /// Trains the coarse quantizer (and PQ codebooks) of `factory` on the embeddings of `sample` and writes
    /// `directory` as an empty index holding it (`quantizer.faiss`, its sha256 in the manifest), published
    /// whole or not at all. Factories that need no training (Flat, HNSW) are refused: their shards would have
    /// nothing in common to merge by.
    public static func train(directory: URL, encoder: TextEncoder, modelName: String, factory: String,
                             sample: [CorpusDocument], attention: AttentionMode? = nil, pooling: Pooling? = nil,
                             progress: IndexProgress? = nil) throws -> IndexManifest {
        var manifest = try newManifest(encoder: encoder, modelName: modelName, factory: factory, attention: attention,
                                       pooling: pooling)
        let index = try VectorIndex(dimension: manifest.dimension, factory: factory, metric: .innerProduct)
        guard !index.isTrained else {
            throw IndexError.invalidCorpus("\(factory) has nothing to train: shards merge by a shared IVF quantizer (IVFn,Flat, IVFn,PQm, IVFn,SQ8)")
        }
        guard !sample.isEmpty else { throw IndexError.invalidCorpus("the training sample is empty") }
        let options = EmbeddingOptions(prompt: manifest.documentPrompt, attention: attention ?? .bidirectional, pooling: pooling)
        var vectors: [Float] = []
        vectors.reserveCapacity(sample.count * manifest.dimension)
        try progress?(0, sample.count)
        for start in stride(from: 0, to: sample.count, by: 256) {
            let chunk = sample[start..<min(start + 256, sample.count)]
            for v in try encoder.embed(chunk.map(\.text), options: options) { vectors += v }
            try progress?(start + chunk.count, sample.count)
        }
        try index.train(vectors)
        try tuneSearch(index, factory: factory)
        try createDestinationDirectory(directory.deletingLastPathComponent())
        try AtomicDirectory.replace(directory) { built in
            let quantizer = built.appendingPathComponent(quantizerName)
            try index.write(to: quantizer)
            let record = try IndexFiles.record(of: quantizer)
            manifest.quantizer = record.sha256
            manifest.files = [quantizerName: record]
            try manifest.write(to: built.appendingPathComponent(manifestName))
            try DocumentStore(url: built.appendingPathComponent(storeName)).close()
        }
        return manifest
    }

    /// Merges shard directories (each started from the same trained quantizer, with disjoint internal ids)
    /// into a new index at `destination`, published whole or not at all: documents and vectors copied into
    /// one SQLite store (its full-text index filled as they arrive), the FAISS inverted lists appended in
    /// shard order — in memory, or with `onDisk` into `index.ivfdata` beside the index file (FAISS's on-disk
    /// inverted lists, memory-mapped when searched; the shards are mapped, not loaded), for indexes larger
    /// than memory. Shards of another model, quantizer or embedding setting are refused before anything is
    /// written, naming the shard and what differs.
    @discardableResult
    public static func merge(shards: [URL], into destination: URL, onDisk: Bool = false,
                             progress: ((_ done: Int, _ total: Int) -> Void)? = nil) throws -> IndexManifest {
        guard let first = shards.first else { throw IndexError.invalidCorpus("no shards to merge") }
        let target = destination.standardizedFileURL.resolvingSymlinksInPath()
        for shard in shards where shard.standardizedFileURL.resolvingSymlinksInPath() == target {
            throw IndexError.invalidCorpus("\(destination.path) is one of the shards: merge into a new directory")
        }
        _ = try shards.map { try manifest(in: $0) }   // not an index: that error, before any lock file is made
        // Writers are refused while merging, as for any other write: on each shard (so each is read as one
        // version, its store and vectors together) and on an existing destination (replaced whole). One lock
        // per directory (a shard named twice is the earlier-shard error below, not a lock held by ourselves);
        // a shard in a read-only directory has no writer to refuse.
        var locked = Set<String>()
        var locks: [WriterLock] = []
        let existing = FileManager.default.fileExists(atPath: destination.appendingPathComponent(manifestName).path)
        for directory in shards + (existing ? [destination] : []) {
            let resolved = directory.standardizedFileURL.resolvingSymlinksInPath().path
            guard locked.insert(resolved).inserted, FileManager.default.isWritableFile(atPath: resolved) else { continue }
            locks.append(try SearchIndex.writerLock(in: directory))
        }
        defer { locks.forEach { $0.release() } }
        let manifests = try shards.map { try manifest(in: $0) }
        guard let quantizer = manifests[0].quantizer else {
            throw IndexError.quantizerMismatch("\(first.path) was not started from a trained quantizer (index build --trained): only such shards merge")
        }
        for (shard, m) in zip(shards, manifests).dropFirst() {
            let differences = ShardCompatibility.differences(manifests[0], m)
            guard differences.isEmpty else {
                throw IndexError.quantizerMismatch("\(shard.path) cannot merge with \(first.path): different \(differences.joined(separator: ", "))")
            }
        }
        var merged = manifests[0]
        // One shard's fit is not the merged index's (as `IndexShards` fuses): only one all shards hold.
        merged.fusion = HybridFusion.shared(manifests.map(\.fusion))
        try createDestinationDirectory(destination.deletingLastPathComponent())
        try AtomicDirectory.replace(destination) { built in
            try FileManager.default.copyItem(at: first.appendingPathComponent(quantizerName),
                                             to: built.appendingPathComponent(quantizerName))
            guard try SHA256.hexDigest(ofFile: built.appendingPathComponent(quantizerName)) == quantizer else {
                throw IndexError.corrupt("\(first.appendingPathComponent(quantizerName).path): its sha256 is not the one its manifest records")
            }
            let vectors = try VectorIndex.read(from: built.appendingPathComponent(quantizerName))
            let store = try DocumentStore(url: built.appendingPathComponent(storeName))
            defer { store.close() }
            var files: [URL] = []
            for (done, shard) in shards.enumerated() {
                do {
                    try store.merge(from: shard.appendingPathComponent(storeName))
                } catch let DocumentStoreError.mergeClash(what, _) {
                    let hint = what.hasPrefix("internal") ? "shards must be built with disjoint id ranges, index build --first-id"
                        : "a document belongs in one shard"
                    throw IndexError.invalidCorpus("\(shard.path): \(what) is also in an earlier shard (\(hint))")
                }
                let faiss = shard.appendingPathComponent(faissName)
                try IndexFiles.verify(faissName, in: shard, manifest: manifests[done])
                // A shard that never received a document has no index file.
                if FileManager.default.fileExists(atPath: faiss.path) {
                    if onDisk {
                        files.append(faiss)
                    } else {
                        do {
                            try vectors.merge(from: try VectorIndex.read(from: faiss))
                        } catch {
                            throw IndexError.corrupt("\(faiss.path): \(error)")
                        }
                    }
                }
                progress?(done + 1, shards.count)
            }
            if onDisk, !files.isEmpty {
                do {
                    try vectors.mergeOnDisk(files, lists: built.appendingPathComponent(ivfdataName))
                } catch {
                    throw IndexError.corrupt("merging \(files.map(\.path).joined(separator: ", ")): \(error)")
                }
            }
            let documents = try store.count
            guard documents == vectors.count else {
                throw IndexError.corrupt("the shards hold \(documents) documents but \(vectors.count) vectors")
            }
            try vectors.write(to: built.appendingPathComponent(faissName))
            merged.files = try [faissName, ivfdataName, quantizerName].reduce(into: [:]) { files, name in
                let url = built.appendingPathComponent(name)
                if FileManager.default.fileExists(atPath: url.path) { files[name] = try IndexFiles.record(of: url) }
            }
            merged.publishing = nil
            merged.count = documents
            merged.created = Date()
            merged.updated = merged.created
            try merged.write(to: built.appendingPathComponent(manifestName))
        }
        return merged
    }
}

/// The quantizer a shard was started from, checked before a shard is built on it.
struct TrainedQuantizer {
    let directory: URL
    let manifest: IndexManifest
    var file: URL { directory.appendingPathComponent(SearchIndex.quantizerName) }

    init(directory: URL, encoder: TextEncoder) throws {
        self.directory = directory
        manifest = try SearchIndex.manifest(in: directory)
        guard let digest = manifest.quantizer else {
            throw IndexError.quantizerMismatch("\(directory.path) holds no trained quantizer (make one with index train)")
        }
        let model = try ModelFingerprint.digest(of: encoder.source)
        guard model == manifest.modelDigest else {
            throw IndexError.modelMismatch("\(directory.path) was trained with model '\(manifest.model)' (digest \(manifest.modelDigest.prefix(12))…), not \(encoder.location.path) (digest \(model.prefix(12))…)")
        }
        guard (try? SHA256.hexDigest(ofFile: file)) == digest else {
            throw IndexError.corrupt("\(file.path): missing, or its sha256 is not the one \(directory.path)/manifest.json records")
        }
    }
}

/// What must be equal for two shards to be one index.
enum ShardCompatibility {
    /// To be searched as one (`IndexShards`): they embed alike — model, dimension, prompts, attention, pooling,
    /// and the title field (a titled document's prompt carries its title, so two title fields embed the same
    /// document differently).
    static func embeddingDifferences(_ a: IndexManifest, _ b: IndexManifest) -> [String] {
        var d: [String] = []
        if a.modelDigest != b.modelDigest { d.append("model ('\(a.model)' vs '\(b.model)')") }
        if a.dimension != b.dimension { d.append("dimension (\(a.dimension) vs \(b.dimension))") }
        if a.attention != b.attention { d.append("attention") }
        if a.pooling != b.pooling { d.append("pooling") }
        if a.queryPrompt != b.queryPrompt || a.documentPrompt != b.documentPrompt { d.append("prompts") }
        if a.titleField != b.titleField { d.append("title field (\(a.titleField ?? "none") vs \(b.titleField ?? "none"))") }
        return d
    }

    /// To merge: besides, the same trained quantizer, factory and metric.
    static func differences(_ a: IndexManifest, _ b: IndexManifest) -> [String] {
        var d: [String] = []
        if a.quantizer != b.quantizer { d.append("quantizer (sha256 \(a.quantizer?.prefix(12) ?? "none")… vs \(b.quantizer?.prefix(12) ?? "none")…)") }
        d += embeddingDifferences(a, b)
        if a.factory != b.factory { d.append("factory (\(a.factory) vs \(b.factory))") }
        if a.metric != b.metric { d.append("metric") }
        return d
    }
}
