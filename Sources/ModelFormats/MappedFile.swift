import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A read-only, memory-mapped file. Tensors point straight into the mapping, so a 1 GB f32 checkpoint
/// costs address space, not resident memory, until its pages are touched.
public final class MappedFile: @unchecked Sendable {
    public let url: URL
    public let size: Int
    /// Start of the mapping; valid for the lifetime of this object (immutable memory, hence Sendable).
    public let base: UnsafeRawPointer

    public init(url: URL) throws(FormatError) {
        self.url = url
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else {
            throw FormatError(file: url.path, message: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw FormatError(file: url.path, message: "cannot stat: \(String(cString: strerror(errno)))")
        }
        size = Int(st.st_size)
        if size == 0 {
            // mmap of length 0 fails; keep a valid dummy pointer so readers report "truncated" themselves.
            base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64))
            return
        }
        guard let p = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), p != MAP_FAILED else {
            throw FormatError(file: url.path, message: "cannot map: \(String(cString: strerror(errno)))")
        }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if size == 0 {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        } else {
            munmap(UnsafeMutableRawPointer(mutating: base), size)
        }
    }

    /// Drops the resident pages that lie wholly inside [offset, offset+count): data that was converted and
    /// will not be read again. The mapping stays valid; a later read faults the pages back in from the file.
    public func discard(offset: Int, count: Int) {
        let page = Int(getpagesize())
        let start = (offset + page - 1) / page * page, end = (offset + count) / page * page
        guard size > 0, end > start else { return }
        madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    /// Bytes [offset, offset+count) as a buffer; the caller has checked the range.
    public func bytes(at offset: Int, count: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + offset, count: count)
    }
}

/// An error in a model file or config, naming the file and (where there is one) the tensor or field.
public struct FormatError: Error, CustomStringConvertible, Equatable, Sendable {
    public var file: String
    public var item: String?
    public var message: String

    public init(file: String, item: String? = nil, message: String) {
        self.file = file
        self.item = item
        self.message = message
    }

    public var description: String {
        if let item { return "\(file): \(item): \(message)" }
        return "\(file): \(message)"
    }
}
