import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// fsync helpers: a rename is durable only once the new file's data and the directory entry pointing at it
/// have reached the disk; without them a power cut can leave the new name on an empty file.
enum Durability {
    /// fsyncs the file or directory at `path`; errors name `destination` (what the caller was writing).
    static func sync(_ path: String, for destination: String, step: AtomicWriteError.Step) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw AtomicWriteError.system(destination, step) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw AtomicWriteError.system(destination, step) }
    }

    static func syncParent(of url: URL, for destination: String) throws {
        try sync(url.deletingLastPathComponent().path, for: destination, step: .syncDirectory)
    }

    /// fsyncs every regular file and directory under `root`, and `root` itself. Symbolic links are not
    /// followed: what they point at is not part of the tree being published.
    static func syncTree(_ root: URL, for destination: String) throws {
        let keys: [URLResourceKey] = [.isRegularFileKey, .isDirectoryKey]
        if let walk = FileManager.default.enumerator(at: root, includingPropertiesForKeys: keys) {
            for case let url as URL in walk {
                let values = try? url.resourceValues(forKeys: Set(keys))
                if values?.isRegularFile == true || values?.isDirectory == true {
                    try sync(url.path, for: destination, step: .syncFile)
                }
            }
        }
        try sync(root.path, for: destination, step: .syncFile)
    }

    /// write(2) until every byte is out: it may write fewer than asked, or be interrupted by a signal.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, for destination: String) throws {
        var offset = 0
        while offset < bytes.count {
            let n = write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw AtomicWriteError.system(destination, .write)
            }
            offset += n
        }
    }
}
