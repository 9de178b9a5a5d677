import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One writer at a time on something stored in files: an exclusive `flock` on a lock file, taken without
/// waiting. The kernel drops it when the holder exits, however it exits (kill -9 included), so a crashed
/// writer never leaves the resource locked. Readers take no lock. The holder's pid is written into the file
/// for the message another writer gets.
public final class WriterLock {
    public struct Held: Error, CustomStringConvertible, Equatable {
        public let path: String
        public let holder: Int32?
        public var description: String {
            "\(path) is held by another writer" + (holder.map { " (process \($0))" } ?? "") + ": wait for it to finish"
        }
    }

    private var fd: Int32

    /// Takes the lock on `url` (created when missing), or throws `Held` at once when another writer has it.
    public init(_ url: URL) throws {
        fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw AtomicWriteError.system(url.path, .openLock) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = try? String(contentsOf: url, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            release()
            throw Held(path: url.deletingLastPathComponent().path, holder: holder.flatMap { Int32($0) })
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pwrite(fd, pid, pid.count, 0)
    }

    /// Releases the lock (also done when the object goes away).
    public func release() {
        guard fd >= 0 else { return }
        _ = flock(fd, LOCK_UN)
        close(fd)
        fd = -1
    }

    deinit { release() }
}
