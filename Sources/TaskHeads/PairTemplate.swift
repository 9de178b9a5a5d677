import Foundation

/// How a (query, document) pair becomes one text for the cross-encoder: a template with `{query}` and
/// `{document}`, each exactly once.
public struct PairTemplate: Codable, Sendable, Equatable {
    public let text: String

    /// EmbeddingGemma's own prompt style: its retrieval query prompt, then its document prompt.
    public static let embeddingGemma = try! PairTemplate("task: search result | query: {query} | title: none | text: {document}")

    public init(_ text: String) throws(HeadError) {
        for placeholder in ["{query}", "{document}"] where text.components(separatedBy: placeholder).count != 2 {
            throw .invalidData("the pair template must contain \(placeholder) exactly once: \(text.debugDescription)")
        }
        self.text = text
    }

    public func render(query: String, document: String) -> String {
        // Substitute the query first, then the document, so braces inside the query are left alone.
        let parts = text.components(separatedBy: "{document}")
        return parts[0].replacingOccurrences(of: "{query}", with: query) + document
            + parts[1].replacingOccurrences(of: "{query}", with: query)
    }

    public init(from decoder: Decoder) throws {
        try self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: Swift.Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}
