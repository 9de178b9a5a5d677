import AtomicFiles
import Foundation
import ModelFormats

/// Size and sha256 of one file of an index directory, recorded in the manifest when the file is written.
public struct IndexFileRecord: Codable, Sendable, Equatable {
    public var bytes: Int
    public var sha256: String
}

/// The FAISS files of an index are checked against the manifest before FAISS reads them: FAISS trusts the
/// sizes and offsets inside its files, so a truncated download or a flipped byte would otherwise fail (or
/// crash) deep inside it. The check is the size first (cheap, catches truncation) and then the digest.
enum IndexFiles {
    static func record(of url: URL) throws -> IndexFileRecord {
        let bytes = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int ?? 0
        return IndexFileRecord(bytes: bytes, sha256: try SHA256.hexDigest(ofFile: url))
    }

    /// Throws `IndexError.corrupt` naming the file unless it is the version the manifest records (or the one it
    /// is publishing). Indexes written before the manifest recorded files are not checked.
    /// `sizeOnly`: for files too large to read at every open (on-disk inverted lists, memory-mapped for
    /// indexes larger than memory): truncation is caught, an altered byte is not.
    static func verify(_ name: String, in directory: URL, manifest: IndexManifest, sizeOnly: Bool = false) throws {
        guard let files = manifest.files else { return }
        let url = directory.appendingPathComponent(name)
        let accepted = [files[name], manifest.publishing?[name]].compactMap { $0 }
        guard !accepted.isEmpty else { return }
        let hint = "restore it, or rebuild the index from its documents (index build)"
        guard let size = try? FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int else {
            throw IndexError.corrupt("\(url.path): missing, though \(directory.path)/manifest.json records it: \(hint)")
        }
        guard accepted.contains(where: { $0.bytes == size }) else {
            throw IndexError.corrupt("\(url.path): \(size) bytes where the manifest records \(accepted[0].bytes) (truncated or altered): \(hint)")
        }
        if sizeOnly { return }
        let digest = try SHA256.hexDigest(ofFile: url)
        guard accepted.contains(where: { $0.sha256 == digest }) else {
            throw IndexError.corrupt("\(url.path): its sha256 (\(digest.prefix(12))…) is not the one the manifest records (\(accepted[0].sha256.prefix(12))…): the file was altered: \(hint)")
        }
    }
}
