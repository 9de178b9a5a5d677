import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed step of an atomic write: which destination, which step, and the system's reason.
/// The destination keeps its previous content whenever this is thrown.
public struct AtomicWriteError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Step: String, Sendable {
        case createTemporary = "create a temporary file beside it"
        case createDirectory = "create a temporary directory beside it"
        case write = "write the temporary file"
        case syncFile = "fsync the new content"
        case rename = "rename the new version into place"
        case swap = "swap the new directory into place"
        case syncDirectory = "fsync the parent directory"
        case restore = "restore the version a killed writer moved aside"
        case createFolder = "create the folder it goes in"
        case openLock = "open its writer lock"
    }

    /// The destination the write was for.
    public let path: String
    public let step: Step
    /// `errno` of the failing call (0 when the failure was not a system call's).
    public let code: Int32
    /// `strerror(code)`, or what went wrong when `code` is 0.
    public let reason: String

    public init(path: String, step: Step, code: Int32, reason: String) {
        self.path = path
        self.step = step
        self.code = code
        self.reason = reason
    }

    /// The error for a system call that just failed: reads `errno` now, before anything can change it.
    static func system(_ path: String, _ step: Step) -> AtomicWriteError {
        let code = errno
        return AtomicWriteError(path: path, step: step, code: code, reason: String(cString: strerror(code)))
    }

    public var description: String { "\(path): cannot \(step.rawValue): \(reason)" }
}

extension AtomicWriteError {
    /// Any other error met while writing `path` (Foundation's file APIs), in this type's terms.
    public init(_ error: any Error, path: String, step: Step) {
        if let error = error as? AtomicWriteError { self = error; return }
        self.init(path: path, step: step, code: 0, reason: (error as NSError).localizedDescription)
    }
}

/// Creates `url` (and its parents) as a writer's destination folder; a failure is an `AtomicWriteError`.
public func createDestinationDirectory(_ url: URL) throws(AtomicWriteError) {
    do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
        throw AtomicWriteError(error, path: url.path, step: .createFolder)
    }
}
