import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Write-to-temp, fsync, rename: the destination either keeps its old content
/// or gets the complete new one, even if the process dies mid-write.
enum AtomicFile {
    static func write(to url: URL, operation: String, _ produce: (String) throws -> Void) throws {
        let directory = url.deletingLastPathComponent()
        let tempURL = directory.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
        let tempPath = tempURL.path
        do {
            try produce(tempPath)
            try fsyncFile(tempPath, operation: operation)
            guard rename(tempPath, url.path) == 0 else {
                throw ioError(operation, "rename \(tempPath) -> \(url.path)")
            }
        } catch {
            unlink(tempPath)
            throw error
        }
    }

    private static func fsyncFile(_ path: String, operation: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw ioError(operation, "open \(path)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw ioError(operation, "fsync \(path)") }
    }

    private static func ioError(_ operation: String, _ what: String) -> VectorSearchError {
        VectorSearchError(kind: .io, operation: operation, message: "\(what): \(String(cString: strerror(errno)))")
    }
}
