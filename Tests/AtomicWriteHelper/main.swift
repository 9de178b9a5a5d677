import AtomicFiles
import Foundation
import TestSupport

// Test-only writer for AtomicFilesTests' kill test: replaces a file or a directory with successive
// `VersionedContent` versions until killed (or `count` versions are written), so the test can kill it at any
// moment and check what the destination holds.
//
//   atomic-write-helper file <path> <size> <first-version> [count]
//   atomic-write-helper directory <path> <size> <first-version> [count] [move-aside]

/// A directory version: these files, each the same version's content.
let directoryFiles = ["a.bin", "b.bin", "c.bin"]

func writeFile(_ url: URL, version: Int, size: Int) throws {
    let content = VersionedContent.make(version: version, size: size)
    let writer = try AtomicFileWriter(destination: url)
    // Appended in pieces, as a streaming writer does: a kill can land between any two.
    for start in stride(from: 0, to: content.count, by: 1 << 16) {
        try writer.write(content[start..<min(start + 1 << 16, content.count)])
    }
    try writer.commit()
}

func writeDirectory(_ url: URL, version: Int, size: Int, swap: AtomicDirectory.Swap) throws {
    try AtomicDirectory.replace(url, swap: swap) { temporary in
        for name in directoryFiles {
            try VersionedContent.make(version: version, size: size).write(to: temporary.appendingPathComponent(name))
        }
    }
}

let arguments = CommandLine.arguments
guard arguments.count >= 5, let size = Int(arguments[3]), let first = Int(arguments[4]) else {
    FileHandle.standardError.write(Data("usage: atomic-write-helper file|directory <path> <size> <first-version> [count] [move-aside]\n".utf8))
    exit(2)
}
let destination = URL(fileURLWithPath: arguments[2])
let count = arguments.count > 5 ? Int(arguments[5]) ?? Int.max : Int.max
let swap: AtomicDirectory.Swap = arguments.contains("move-aside") ? .moveAside : .exchange
do {
    var version = first
    while version - first < count {
        if arguments[1] == "directory" {
            try writeDirectory(destination, version: version, size: size, swap: swap)
        } else {
            try writeFile(destination, version: version, size: size)
        }
        version += 1
    }
} catch {
    FileHandle.standardError.write(Data("atomic-write-helper: \(error)\n".utf8))
    exit(1)
}
