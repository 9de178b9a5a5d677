import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Names of the hidden siblings a writer keeps beside its destination: `.<name>.<pid>.<token>.tmp` while a
/// new version is built (and, after a directory swap, for the old one being removed), `.<name>.<pid>.<token>.old`
/// for a directory moved aside. The writer's pid in the name tells a leftover of a killed writer (its process
/// is gone) from the work of a live one, which must not be touched.
enum SiblingNames {
    enum Kind: String {
        case temporary = "tmp"
        case movedAside = "old"
    }

    static func sibling(of destination: URL, _ kind: Kind) -> URL {
        let token = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        return destination.deletingLastPathComponent()
            .appendingPathComponent(".\(destination.lastPathComponent).\(getpid()).\(token).\(kind.rawValue)")
    }

    /// Siblings of `destination` left by writers whose process no longer exists.
    static func leftovers(of destination: URL) -> [(url: URL, kind: Kind)] {
        let parent = destination.deletingLastPathComponent()
        let prefix = ".\(destination.lastPathComponent)."
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: parent.path) else { return [] }
        return names.compactMap { name in
            guard name.hasPrefix(prefix) else { return nil }
            let parts = name.dropFirst(prefix.count).split(separator: ".", omittingEmptySubsequences: false)
            guard parts.count == 3, let pid = pid_t(parts[0]), UInt64(parts[1], radix: 16) != nil,
                  let kind = Kind(rawValue: String(parts[2])), !isAlive(pid) else { return nil }
            return (parent.appendingPathComponent(name), kind)
        }
    }

    /// Only "no such process" counts as gone: EPERM means it exists under another user. A pid reused since
    /// only keeps a leftover a little longer, never removes live work.
    private static func isAlive(_ pid: pid_t) -> Bool {
        pid == getpid() || kill(pid, 0) == 0 || errno != ESRCH
    }
}
