import Foundation

/// The first 120 rows of corpora/debian.jsonl, copied into the fixtures (see Tests/Fixtures/README.md) so
/// that no test depends on the demo corpus at the repository root, which scripts may regenerate.
public let debianCorpusFixture = fixturesDirectory.appendingPathComponent("debian/debian-120.jsonl")

/// A test asked for more Debian rows than the fixture holds.
public struct DebianFixtureTooShort: Error, CustomStringConvertible {
    public let description: String

    public init(asked: Int, available: Int) {
        description = "the Debian fixture has \(available) rows, a test asked for \(asked)"
    }
}

/// The first `count` rows of the Debian fixture, as JSON Lines text (one row a string, no newline).
public func debianCorpusLines(_ count: Int) throws -> [String] {
    let lines = try String(contentsOf: debianCorpusFixture, encoding: .utf8).split(separator: "\n").map(String.init)
    guard count <= lines.count else { throw DebianFixtureTooShort(asked: count, available: lines.count) }
    return Array(lines.prefix(count))
}
