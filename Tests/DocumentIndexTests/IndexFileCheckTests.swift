import AtomicFiles
import DocumentIndex
import Foundation
import GemmaEncoder
import TestSupport
import XCTest

/// The FAISS files of an index are checked against the size and sha256 its manifest records before FAISS
/// reads them: a truncated, altered or missing file is an error naming it, never a crash inside FAISS.
final class IndexFileCheckTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory("index-files") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private var documents: [CorpusDocument] {
        (0..<40).map { CorpusDocument(id: "d\($0)", text: "archive tool \($0) mail server", metadataJSON: "{}") }
    }

    private func build(_ name: String, _ docs: [CorpusDocument], factory: String? = nil, trained: URL? = nil,
                       firstID: Int64? = nil) throws -> URL {
        let url = dir.appendingPathComponent(name)
        let index = try SearchIndex.create(directory: url, encoder: try TestModels.tiny(), modelName: "tiny", factory: factory,
                                           expectedCount: docs.count, trained: trained)
        try index.add(docs, resume: true, firstID: firstID)
        return url
    }

    private func open(_ url: URL) throws -> SearchIndex { try SearchIndex(directory: url, encoder: try TestModels.tiny()) }

    private func assertCorrupt(_ url: URL, naming file: String, saying words: String, line: UInt = #line) {
        XCTAssertThrowsError(try open(url), line: line) { error in
            guard case IndexError.corrupt(let message) = error else { return XCTFail("\(error)", line: line) }
            XCTAssertTrue(message.contains(url.appendingPathComponent(file).path), message, line: line)
            XCTAssertTrue(message.contains(words), message, line: line)
        }
    }

    func testDamagedIndexFilesAreNamedBeforeFAISSReadsThem() throws {
        let original = try build("index", documents)
        let faiss = original.appendingPathComponent("index.faiss")
        let manifest = try SearchIndex.manifest(in: original)
        let record = try XCTUnwrap(manifest.files?["index.faiss"])
        let bytes = try Data(contentsOf: faiss)
        XCTAssertEqual(record.bytes, bytes.count)
        XCTAssertNil(manifest.publishing)
        XCTAssertEqual(try open(original).count, 40)

        func damaged(_ name: String, _ change: (inout Data) -> Void) throws -> URL {
            let copy = dir.appendingPathComponent(name)
            try FileManager.default.copyItem(at: original, to: copy)
            var data = bytes
            change(&data)
            try data.write(to: copy.appendingPathComponent("index.faiss"))
            return copy
        }
        assertCorrupt(try damaged("truncated") { $0 = $0.prefix($0.count / 2) }, naming: "index.faiss", saying: "bytes where the manifest records")
        assertCorrupt(try damaged("flipped") { $0[$0.count / 2] ^= 0x40 }, naming: "index.faiss", saying: "sha256")
        // A header that claims far more vectors than the file holds: same size, caught by the digest.
        assertCorrupt(try damaged("header") { $0[40] = 0xFF; $0[41] = 0xFF }, naming: "index.faiss", saying: "sha256")
        let missing = dir.appendingPathComponent("missing")
        try FileManager.default.copyItem(at: original, to: missing)
        try FileManager.default.removeItem(at: missing.appendingPathComponent("index.faiss"))
        assertCorrupt(missing, naming: "index.faiss", saying: "missing")
    }

    /// A rebuild announces its new file in the manifest (`publishing`) before renaming it into place: a kill
    /// between that rename and the final manifest leaves the new file, which opens; any other file does not.
    func testAFileBeingPublishedIsAccepted() throws {
        let url = try build("index", Array(documents.prefix(20)))
        let before = try SearchIndex.manifest(in: url)
        let index = try open(url)
        try index.add(Array(documents.suffix(20)), resume: false)
        var after = try SearchIndex.manifest(in: url)
        XCTAssertNotEqual(after.files?["index.faiss"], before.files?["index.faiss"])
        // The state a kill leaves between the file's rename and the manifest's: the old manifest, announcing.
        var killed = before
        killed.publishing = ["index.faiss": try XCTUnwrap(after.files?["index.faiss"])]
        try write(killed, to: url)
        XCTAssertEqual(try open(url).search("archive tool 33 mail server", k: 1, mode: .vector).first?.id, "d33")
        // Announced, but neither it nor the recorded version is there.
        after.files?["index.faiss"] = before.files?["index.faiss"]
        after.publishing = ["index.faiss": try XCTUnwrap(before.files?["index.faiss"])]
        try write(after, to: url)
        assertCorrupt(url, naming: "index.faiss", saying: "the manifest records")
    }

    /// Merging reads each shard's file only after checking it; the merged index records its own files,
    /// on-disk lists included.
    func testMergeChecksShardFiles() throws {
        let docs = documents
        let trainedURL = dir.appendingPathComponent("trained")
        try SearchIndex.train(directory: trainedURL, encoder: try TestModels.tiny(), modelName: "tiny", factory: "IVF4,Flat",
                              sample: docs)
        XCTAssertNotNil(try SearchIndex.manifest(in: trainedURL).files?["quantizer.faiss"])
        let a = try build("a", Array(docs.prefix(20)), trained: trainedURL, firstID: 1)
        let b = try build("b", Array(docs.suffix(20)), trained: trainedURL, firstID: 1000)
        let onDisk = dir.appendingPathComponent("merged")
        try SearchIndex.merge(shards: [a, b], into: onDisk, onDisk: true)
        let files = try XCTUnwrap(SearchIndex.manifest(in: onDisk).files)
        XCTAssertEqual(Set(files.keys), ["index.faiss", "index.ivfdata", "quantizer.faiss"])
        XCTAssertEqual(try open(onDisk).count, 40)
        // The on-disk lists cut short: named before FAISS maps them (their size is checked at every open;
        // reading them whole to hash would defeat mapping them).
        let lists = onDisk.appendingPathComponent("index.ivfdata")
        try Data(contentsOf: lists).dropLast(64).write(to: lists)
        assertCorrupt(onDisk, naming: "index.ivfdata", saying: "bytes where")
        // A shard's file cut short: the merge names it and publishes nothing.
        let faiss = b.appendingPathComponent("index.faiss")
        try Data(contentsOf: faiss).prefix(100).write(to: faiss)
        let target = dir.appendingPathComponent("again")
        XCTAssertThrowsError(try SearchIndex.merge(shards: [a, b], into: target)) { error in
            XCTAssertTrue("\(error)".contains(faiss.path) && "\(error)".contains("bytes"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: target.path))
    }

    /// One writer at a time: a second writer (another instance, as another process would be) is refused at
    /// once, naming the holder, while a reader keeps searching; once the first is done the second may write.
    func testOneWriterAtATimeWhileSearchesGoOn() throws {
        let url = try build("index", Array(documents.prefix(10)))
        let first = try open(url), second = try open(url), reader = try open(url)
        var checked = false
        try first.add(Array(documents.suffix(30)), batch: 10, resume: false) { done, _ in
            guard done == 10, !checked else { return }
            checked = true
            XCTAssertThrowsError(try second.add([CorpusDocument(id: "x", text: "x", metadataJSON: "{}")], resume: false)) { error in
                guard case IndexError.locked(let message) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains(url.path) && message.contains("process \(getpid())"), message)
            }
            XCTAssertThrowsError(try second.delete(ids: ["d0"]))
            XCTAssertEqual(try reader.search("archive tool 3 mail server", k: 3, mode: .hybrid).count, 3, "searches go on")
        }
        XCTAssertTrue(checked)
        XCTAssertEqual(try second.delete(ids: ["d0"]), 1, "the lock is free once the first writer is done")
        XCTAssertEqual(try open(url).count, 39)
    }

    /// A merge is a writer too: refused while one of its shards or its existing destination is being
    /// written (their write.lock held, as `index add` holds it), and done once they are free.
    func testMergeWaitsForNoWriter() throws {
        let trainedURL = dir.appendingPathComponent("trained")
        try SearchIndex.train(directory: trainedURL, encoder: try TestModels.tiny(), modelName: "tiny", factory: "IVF4,Flat",
                              sample: documents)
        let a = try build("a", Array(documents.prefix(20)), trained: trainedURL, firstID: 1)
        let b = try build("b", Array(documents.suffix(20)), trained: trainedURL, firstID: 1000)
        let merged = dir.appendingPathComponent("merged")
        try SearchIndex.merge(shards: [a, b], into: merged)
        for busy in [b, merged] {
            let held = try WriterLock(busy.appendingPathComponent("write.lock"))
            XCTAssertThrowsError(try SearchIndex.merge(shards: [a, b], into: merged)) { error in
                guard case IndexError.locked(let message) = error else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains(busy.path) && message.contains("being written"), message)
            }
            held.release()
        }
        try SearchIndex.merge(shards: [a, b], into: merged)
        XCTAssertEqual(try open(merged).count, 40)
    }

    private func write(_ manifest: IndexManifest, to directory: URL) throws {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        try encoder.encode(manifest).write(to: directory.appendingPathComponent("manifest.json"))
    }
}
