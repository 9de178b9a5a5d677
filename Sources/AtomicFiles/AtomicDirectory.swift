import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Replaces a whole directory so that a reader, or a process started after a crash, finds the complete old
/// version or the complete new one: the new one is built beside the destination, fsynced, and swapped in
/// with `renameat2(RENAME_EXCHANGE)`; the old one, now under the temporary name, is then removed.
public enum AtomicDirectory {
    /// How the new directory takes the destination's place.
    public enum Swap: Sendable {
        /// One atomic exchange (Linux); falls back to `moveAside` where the file system cannot exchange.
        case exchange
        /// Rename the old version aside, rename the new one in. A writer killed between the two leaves no
        /// destination until `recover` (run by every `publish`) renames the old version back.
        case moveAside
    }

    /// Builds the new version with `build` (given an empty directory beside `destination`) and publishes it.
    /// Errors of `build` are rethrown unchanged, after the partial directory is removed.
    public static func replace(_ destination: URL, swap: Swap = .exchange, build: (URL) throws -> Void) throws {
        let temporary = SiblingNames.sibling(of: destination, .temporary)
        guard mkdir(temporary.path, 0o777) == 0 else {
            throw AtomicWriteError.system(destination.path, .createDirectory)
        }
        do {
            try build(temporary)
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw error
        }
        try publish(temporary, at: destination, swap: swap)
    }

    /// Publishes the complete directory `built` (on the destination's file system) at `destination`,
    /// replacing what is there. `built` is consumed: afterwards it holds nothing, or the old version for
    /// removal. What killed writers left beside `destination` is cleaned up first (`recover`).
    public static func publish(_ built: URL, at destination: URL, swap: Swap = .exchange) throws {
        let path = destination.path
        do {
            try recover(destination)
            try Durability.syncTree(built, for: path)
        } catch {
            try? FileManager.default.removeItem(at: built)
            throw error
        }
        let old: URL
        if !exists(destination) {
            guard rename(built.path, path) == 0 else {
                let failure = AtomicWriteError.system(path, .rename)
                try? FileManager.default.removeItem(at: built)
                throw failure
            }
            try Durability.syncParent(of: destination, for: path)
            return
        } else if swap == .exchange, try exchange(built, destination) {
            old = built
        } else {
            old = try moveAside(built, destination)
        }
        try Durability.syncParent(of: destination, for: path)
        if old.deletingLastPathComponent() != destination.deletingLastPathComponent() {
            try Durability.syncParent(of: old, for: path)
        }
        // The new version is in place: a failure to remove the old one only leaves a leftover, which the
        // next writer removes once this process is gone.
        try? FileManager.default.removeItem(at: old)
    }

    /// Undoes what a killed writer left: a moved-aside version when the destination is missing is renamed
    /// back, and the temporary and moved-aside siblings of dead writers are removed. Live writers' are kept.
    public static func recover(_ destination: URL) throws {
        var leftovers = SiblingNames.leftovers(of: destination)
        if !exists(destination), let index = leftovers.firstIndex(where: { $0.kind == .movedAside }) {
            guard rename(leftovers[index].url.path, destination.path) == 0 else {
                throw AtomicWriteError.system(destination.path, .restore)
            }
            try Durability.syncParent(of: destination, for: destination.path)
            leftovers.remove(at: index)
        }
        for leftover in leftovers { try? FileManager.default.removeItem(at: leftover.url) }
    }

    /// true when swapped; false when the file system cannot exchange (the caller moves aside instead).
    private static func exchange(_ built: URL, _ destination: URL) throws -> Bool {
        switch RenameExchange.swap(built.path, destination.path) {
        case .swapped: return true
        case .unsupported: return false
        case .failed:
            let failure = AtomicWriteError.system(destination.path, .swap)
            try? FileManager.default.removeItem(at: built)
            throw failure
        }
    }

    /// Returns where the old version now is.
    private static func moveAside(_ built: URL, _ destination: URL) throws -> URL {
        let aside = SiblingNames.sibling(of: destination, .movedAside)
        guard rename(destination.path, aside.path) == 0 else {
            let failure = AtomicWriteError.system(destination.path, .swap)
            try? FileManager.default.removeItem(at: built)
            throw failure
        }
        guard rename(built.path, destination.path) == 0 else {
            let failure = AtomicWriteError.system(destination.path, .swap)
            rename(aside.path, destination.path)
            try? FileManager.default.removeItem(at: built)
            throw failure
        }
        return aside
    }

    private static func exists(_ url: URL) -> Bool {
        var status = stat()
        return lstat(url.path, &status) == 0
    }
}
