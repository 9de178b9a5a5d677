import Foundation
import GemmaEncoder

/// One training row: a query, its relevant document and documents that are not relevant.
public struct RerankExample: Sendable, Equatable {
    public var query: String
    public var positive: String
    public var negatives: [String]
    public var line: Int

    public init(query: String, positive: String, negatives: [String], line: Int = 0) {
        self.query = query
        self.positive = positive
        self.negatives = negatives
        self.line = line
    }

    /// `{"query", "positive", "negatives": [...]}` rows; errors name the file and line.
    public static func read(path: String) throws -> [RerankExample] {
        let rows = try JSONLines.read(path: path)
        guard !rows.isEmpty else { throw HeadError.invalidData("\(path): no rows") }
        return try rows.map { row in
            func bad(_ message: String) -> HeadError { .invalidData("\(path):\(row.line): \(message)") }
            guard let query = row.object["query"] as? String else { throw bad("missing or non-string field \"query\"") }
            guard let positive = row.object["positive"] as? String else { throw bad("missing or non-string field \"positive\"") }
            guard let negatives = row.object["negatives"] as? [String], !negatives.isEmpty else {
                throw bad("field \"negatives\" must be a non-empty array of strings")
            }
            return RerankExample(query: query, positive: positive, negatives: negatives, line: row.line)
        }
    }
}
