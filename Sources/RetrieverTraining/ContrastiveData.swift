import Foundation
import GemmaEncoder
import TaskHeads

public enum RetrieverTrainingError: Error, Equatable, CustomStringConvertible {
    case invalidOption(String)
    case invalidData(String)

    public var description: String {
        switch self {
        case let .invalidOption(m), let .invalidData(m): m
        }
    }
}

/// Bi-encoder training rows, as sentence-transformers' datasets hold them: (query, positive, hard negatives)
/// for the multiple-negatives loss, or (sentence1, sentence2, score) for CoSENT.
public enum ContrastiveData: Sendable, Equatable {
    public struct Triplet: Sendable, Equatable {
        /// The query (or anchor): embedded with the query prompt.
        public var anchor: String
        /// Embedded, like the negatives, with the document prompt.
        public var positive: String
        public var negatives: [String]
        /// The 1-based line, for error messages.
        public var line: Int

        public init(anchor: String, positive: String, negatives: [String] = [], line: Int = 0) {
            self.anchor = anchor
            self.positive = positive
            self.negatives = negatives
            self.line = line
        }

        var texts: [String] { [anchor, positive] + negatives }
    }

    public struct ScoredPair: Sendable, Equatable {
        public var first: String
        public var second: String
        public var score: Double
        public var line: Int

        public init(first: String, second: String, score: Double, line: Int = 0) {
            self.first = first
            self.second = second
            self.score = score
            self.line = line
        }
    }

    case triplets([Triplet])
    case scored([ScoredPair])

    public var count: Int {
        switch self {
        case let .triplets(rows): rows.count
        case let .scored(rows): rows.count
        }
    }

    /// Reads JSON Lines of one kind throughout: {"query" or "anchor", "positive", optional "negatives": […] or
    /// "negative"} rows (what `mine-negatives` writes), or {"sentence1", "sentence2", "score"} rows.
    public static func read(path: String) throws -> ContrastiveData {
        let rows = try JSONLines.read(path: path)
        guard !rows.isEmpty else { throw RetrieverTrainingError.invalidData("\(path): no rows") }
        var triplets: [Triplet] = [], scored: [ScoredPair] = []
        for row in rows {
            func bad(_ message: String) -> RetrieverTrainingError { .invalidData("\(path):\(row.line): \(message)") }
            func text(_ field: String) throws -> String {
                guard let value = row.object[field] as? String else { throw bad("missing or non-string field \"\(field)\"") }
                guard !value.isEmpty else { throw bad("field \"\(field)\" is empty") }
                return value
            }
            if row.object["sentence1"] != nil || row.object["score"] != nil {
                guard let number = row.object["score"] as? NSNumber, !LabeledData.isBoolean(number),
                      number.doubleValue.isFinite else { throw bad("field \"score\" must be a finite number") }
                scored.append(ScoredPair(first: try text("sentence1"), second: try text("sentence2"), score: number.doubleValue,
                                         line: row.line))
            } else {
                let anchor = try text(row.object["query"] != nil ? "query" : "anchor")
                var negatives: [String] = []
                if let value = row.object["negatives"] {
                    guard let list = value as? [Any], let strings = list as? [String], !strings.contains("") else {
                        throw bad("field \"negatives\" must be an array of non-empty strings")
                    }
                    negatives = strings
                } else if row.object["negative"] != nil {
                    negatives = [try text("negative")]
                }
                triplets.append(Triplet(anchor: anchor, positive: try text("positive"), negatives: negatives, line: row.line))
            }
            if !triplets.isEmpty, !scored.isEmpty {
                throw bad("mixes (query, positive) rows and (sentence1, sentence2, score) rows")
            }
        }
        return scored.isEmpty ? .triplets(triplets) : .scored(scored)
    }
}
