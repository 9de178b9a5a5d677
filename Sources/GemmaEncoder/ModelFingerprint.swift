import Foundation
import ModelFormats

/// A digest that identifies a model's weights without reading all of them: every JSON config, and for each
/// weight file its name, size, header and 16 evenly spaced 64 KiB samples of its data. Changing a tensor's
/// shape, dtype or (almost surely) its values changes the digest; reading ~1 MB per file keeps it instant.
public enum ModelFingerprint {
    public static func digest(of source: ModelSource) throws -> String {
        let (root, files) = try source.identifyingFiles()
        guard !files.isEmpty else {
            throw EncoderError.modelNotFound("\(source.location.path): no model files (configs, weights) to identify")
        }
        var hash = SHA256()
        for file in files {
            let name = String(file.path.dropFirst(root.path.count))
            let mapped = try MappedFile(url: file)
            hash.update("\(name)\0\(mapped.size)\0")
            if file.pathExtension == "json" || mapped.size <= 1 << 20 {
                hash.update(mapped.bytes(at: 0, count: mapped.size))
                continue
            }
            let sample = 64 << 10
            hash.update(mapped.bytes(at: 0, count: min(mapped.size, 1 << 16)))  // header
            for i in 0..<16 {
                let offset = (mapped.size - sample) / 15 * i
                hash.update(mapped.bytes(at: offset, count: sample))
            }
        }
        return hash.hexDigest()
    }
}

extension ModelSource {
    /// The files that make up the model, sorted, and the folder their names are taken relative to: the GGUF
    /// file alone, or every config, safetensors and GGUF file below a directory. Symlinks are followed
    /// (a shared cache is often linked in; the enumerator does not descend into a link).
    func identifyingFiles() throws(EncoderError) -> (root: URL, files: [URL]) {
        let location = location.resolvingSymlinksInPath()
        guard FileManager.default.fileExists(atPath: location.path) else {
            throw .modelNotFound("\(location.path): no such file or directory")
        }
        if case .gguf = self { return (location.deletingLastPathComponent(), [location]) }
        let e = FileManager.default.enumerator(at: location, includingPropertiesForKeys: nil)
        let files = (e?.compactMap { $0 as? URL } ?? [])
            .filter { ["json", "safetensors", "gguf"].contains($0.pathExtension) }
            .sorted { $0.path < $1.path }
        return (location, files)
    }
}
