import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Streams a new version of a file into a temporary sibling and publishes it with `commit()`: fsync the file,
/// rename it over the destination (atomic on POSIX), fsync the directory. Until then the destination keeps
/// its old content, whatever happens to this process; an uncommitted writer removes its temporary file when
/// abandoned or released, and one left by a killed process is removed by the next writer of the same file.
///
/// Code that writes to a path itself (FAISS) writes to `temporaryURL` and then calls `commit()`.
public final class AtomicFileWriter {
    public let destination: URL
    public let temporaryURL: URL
    private var fd: Int32
    private var state = State.open
    /// Small writes (a line of JSON) are gathered so that each does not cost a system call.
    private var buffer: [UInt8] = []
    private static let bufferSize = 1 << 16

    private enum State { case open, committed, abandoned }

    public init(destination: URL) throws {
        self.destination = destination
        for leftover in SiblingNames.leftovers(of: destination) { try? FileManager.default.removeItem(at: leftover.url) }
        temporaryURL = SiblingNames.sibling(of: destination, .temporary)
        // 0666 before the umask, as any other new file: the published file gets the usual permissions.
        fd = open(temporaryURL.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o666)
        guard fd >= 0 else { throw AtomicWriteError.system(destination.path, .createTemporary) }
        buffer.reserveCapacity(Self.bufferSize)
    }

    deinit { abandon() }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        precondition(state == .open, "write to a committed or abandoned AtomicFileWriter")
        if buffer.count + bytes.count > Self.bufferSize { try flush() }
        if bytes.count >= Self.bufferSize {
            try Durability.writeAll(fd, bytes, for: destination.path)
        } else {
            buffer.append(contentsOf: bytes)
        }
    }

    public func write(_ data: Data) throws { try data.withUnsafeBytes { try write($0) } }

    public func write(_ string: String) throws {
        var string = string
        try string.withUTF8 { try write(UnsafeRawBufferPointer($0)) }
    }

    /// Overwrites bytes already written, at `offset` from the start (a header whose counts are known only at the
    /// end, e.g. an .npy file's row count).
    public func overwrite(_ data: Data, at offset: Int) throws {
        precondition(state == .open, "write to a committed or abandoned AtomicFileWriter")
        try flush()
        try data.withUnsafeBytes { bytes in
            guard pwrite(fd, bytes.baseAddress, bytes.count, off_t(offset)) == bytes.count else {
                throw AtomicWriteError.system(destination.path, .write)
            }
        }
    }

    /// Publishes the new content. On failure the temporary file is removed and the destination is untouched
    /// (unless only the final directory fsync failed: then the new content is in place but not yet durable).
    public func commit() throws {
        precondition(state == .open, "commit of a committed or abandoned AtomicFileWriter")
        do {
            try flush()
            // fsync reaches the data of the file whichever descriptor wrote it (FAISS writes through its own).
            guard fsync(fd) == 0 else { throw AtomicWriteError.system(destination.path, .syncFile) }
            close(fd)
            fd = -1
            guard rename(temporaryURL.path, destination.path) == 0 else {
                throw AtomicWriteError.system(destination.path, .rename)
            }
        } catch {
            abandon()
            throw error
        }
        state = .committed
        try Durability.syncParent(of: destination, for: destination.path)
    }

    /// Drops the new content: the temporary file is removed, the destination keeps its old one.
    public func abandon() {
        guard state == .open else { return }
        state = .abandoned
        if fd >= 0 { close(fd) }
        fd = -1
        unlink(temporaryURL.path)
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        try buffer.withUnsafeBytes { try Durability.writeAll(fd, $0, for: destination.path) }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// Whole-file writes through `AtomicFileWriter`.
public enum AtomicFile {
    /// Replaces the file at `url` with `data`: readers see the old content or the new one, never a part.
    public static func write(_ data: Data, to url: URL) throws {
        let writer = try AtomicFileWriter(destination: url)
        try writer.write(data)
        try writer.commit()
    }

    /// Lets `produce` write the new version to a temporary path (for writers that open files themselves),
    /// then publishes it. Errors of `produce` are rethrown unchanged, after the temporary file is removed.
    public static func write(to url: URL, _ produce: (URL) throws -> Void) throws {
        let writer = try AtomicFileWriter(destination: url)
        try produce(writer.temporaryURL)
        try writer.commit()
    }
}
