import AtomicFiles
import Foundation
import GemmaEncoder
import ModelFormats

/// `manifest.json` of an index directory: which model made the vectors (so that queries are embedded by the
/// same one), how they are indexed, and how many there are.
public struct IndexManifest: Codable, Sendable, Equatable {
    public var formatVersion = 1
    /// The model as the user named it (a cache name or a path).
    public var model: String
    /// `ModelFingerprint.digest` of the model's files.
    public var modelDigest: String
    public var dimension: Int
    public var queryPrompt: String?
    public var documentPrompt: String?
    public var factory: String
    /// How documents and queries are embedded when not the model's own pipeline (a decoder adapted as an
    /// encoder): attention mode and pooling. Absent: bidirectional, the model's pooling.
    public var attention: AttentionMode?
    public var pooling: String?
    /// The metadata field whose text fills the document prompt's title slot (EmbeddingGemma's "title: none"),
    /// when the documents carry one; nil: no titles (the prompt as the model gives it).
    public var titleField: String?
    public var metric = "inner_product"
    /// sha256 of `quantizer.faiss`, the trained empty index every shard of a sharded index starts from
    /// (`index train`); nil for an index that trains its own quantizer. Shards merge only when it is equal.
    public var quantizer: String?
    /// Size and sha256 of the FAISS files (`index.faiss`, `index.ivfdata`, `quantizer.faiss`), checked before
    /// FAISS reads them (`IndexFiles.verify`). Absent in indexes written before it was recorded.
    public var files: [String: IndexFileRecord]?
    /// The new version of a file being replaced: publishing it is two renames (the file, then this manifest
    /// without it here), and a process killed between them leaves the new file with a manifest that still
    /// names it here, which is accepted.
    public var publishing: [String: IndexFileRecord]?
    /// How hybrid search fuses vector and keyword results, as `index tune` fitted it on labelled queries; nil:
    /// `HybridFusion.standard`.
    public var fusion: HybridFusion?
    public var count: Int
    public var created: Date
    public var updated: Date

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", model, modelDigest = "model_digest", dimension
        case queryPrompt = "query_prompt", documentPrompt = "document_prompt", factory, attention, pooling, titleField = "title_field"
        case metric, quantizer
        case files, publishing, fusion, count, created, updated
    }

    public static func load(_ url: URL) throws -> IndexManifest {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw IndexError.notAnIndex("\(url.deletingLastPathComponent().path): no manifest.json (not an index directory?)")
        }
        do { return try decoder.decode(IndexManifest.self, from: data) } catch let error as DecodingError {
            throw IndexError.corrupt("\(url.path): \(error.codingPathDescription): \(error.shortDescription)")
        } catch {
            throw IndexError.corrupt("\(url.path): \(error)")
        }
    }

    /// Written to a temporary file and renamed over the old manifest (`AtomicFile`), so a reader never sees
    /// half of one.
    func write(to url: URL) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        try AtomicFile.write(try encoder.encode(self), to: url)
    }

    private static var decoder: JSONDecoder {
        let d = JSONDecoder()
        d.dateDecodingStrategy = .iso8601
        return d
    }
}

extension IndexManifest {
    /// The slot of a document prompt where a title goes (EmbeddingGemma: "title: none | text: ").
    static let titleSlot = "title: none"

    /// Whether `prompt` has a title slot.
    static func takesTitles(_ prompt: String?) -> Bool { prompt?.contains(titleSlot) == true }

    /// The document prompt for a document with `title` (its slot filled, as the model's card writes it:
    /// "title: {title} | text: "); the prompt unchanged without a title or a slot.
    public func documentPrompt(title: String?) -> String? {
        guard let title, !title.isEmpty, let documentPrompt, titleField != nil else { return documentPrompt }
        return documentPrompt.replacingOccurrences(of: Self.titleSlot, with: "title: " + title)
    }

    /// The title of a document whose metadata is `metadataJSON` (nil without a title field or a non-empty string).
    public func title(metadataJSON: String) -> String? {
        titleField.flatMap { Self.title(in: metadataJSON, field: $0) }
    }

    /// The non-empty string under `field` of a document's metadata (trimmed), or nil.
    static func title(in metadataJSON: String, field: String) -> String? {
        guard let object = (try? JSONSerialization.jsonObject(with: Data(metadataJSON.utf8))) as? [String: Any],
              let title = (object[field] as? String)?.trimmingCharacters(in: .whitespacesAndNewlines), !title.isEmpty else { return nil }
        return title
    }

    /// The mode that measured best on the index's labelled queries: hybrid when `index tune` found a fusion above
    /// vector search alone, else vector (what `search` and /search use when no mode is asked for).
    public var bestSearchMode: SearchMode { fusion?.bestMode ?? .vector }
}

public enum IndexError: Error, CustomStringConvertible, Equatable {
    case notAnIndex(String)
    case corrupt(String)
    case modelMismatch(String)
    case invalidCorpus(String)
    /// Shards that do not share a trained quantizer (or settings that must match to merge).
    case quantizerMismatch(String)
    /// Another process is writing the index (one writer at a time; readers are never refused).
    case locked(String)

    public var description: String {
        switch self {
        case let .notAnIndex(m), let .corrupt(m), let .modelMismatch(m), let .invalidCorpus(m), let .quantizerMismatch(m),
             let .locked(m): return m
        }
    }
}
