import Foundation

/// What a person reads of a search result: a headline (the document's title, or else its first sentence that says
/// something) and a snippet of its text around the query's words, with where those words are.
public struct ResultSummary: Sendable, Equatable {
    public var headline: String
    public var snippet: String
    /// The query's words in `snippet` (character offsets, for highlighting).
    public var highlights: [Range<Int>]

    /// `titleField`: the metadata field holding titles (the index's, else "title").
    public init(text: String, metadataJSON: String, query: String, titleField: String? = nil, width: Int = 160) {
        headline = IndexManifest.title(in: metadataJSON, field: titleField ?? "title") ?? Self.firstInformativeSentence(text)
        (snippet, highlights) = Self.snippet(text, query: query, width: width)
    }

    /// The text's first sentence that is not an announcement of what follows ("This package contains two
    /// programs:"): not ending in a colon, at least four words; else the first sentence. Whitespace collapsed.
    static func firstInformativeSentence(_ text: String) -> String {
        let flat = collapsed(text)
        var sentences: [String] = []
        var current = ""
        for c in flat {
            current.append(c)
            if ".!?:".contains(c) {
                sentences.append(current.trimmingCharacters(in: .whitespaces))
                current = ""
            }
        }
        if !current.trimmingCharacters(in: .whitespaces).isEmpty { sentences.append(current.trimmingCharacters(in: .whitespaces)) }
        let informative = sentences.first { !$0.hasSuffix(":") && $0.split(separator: " ").count >= 4 }
        return informative ?? sentences.first ?? ""
    }

    /// English words too common to mark.
    static let stopWords: Set<String> = ["the", "and", "for", "with", "from", "that", "this", "into", "are", "was", "you", "your",
                                         "its", "not", "but", "all", "any", "can", "how", "what", "which", "who", "use", "using"]

    /// Words of the query (lowercased; three letters or more, or any digit; not a stop word) that a snippet marks.
    static func queryWords(_ query: String) -> Set<String> {
        Set(query.lowercased().split { !$0.isLetter && !$0.isNumber }.map(String.init)
            .filter { ($0.count >= 3 || $0.contains(where: \.isNumber)) && !stopWords.contains($0) })
    }

    /// Whether a text word (lowercased) is one of the query's: the same, or, for query words of four letters or
    /// more, a word it starts ("compress" marks "compression").
    static func matches(_ word: String, _ words: Set<String>) -> Bool {
        words.contains(word) || words.contains { $0.count >= 4 && word.hasPrefix($0) }
    }

    /// About `width` characters of the text around its densest run of query words (word starts matched, so
    /// "compress" marks "compression"), cut at word boundaries with "…" where the text goes on.
    static func snippet(_ text: String, query: String, width: Int) -> (String, [Range<Int>]) {
        let flat = Array(collapsed(text))
        let words = queryWords(query)
        // Word spans of the text, and which of them a query word starts.
        var spans: [(range: Range<Int>, hit: Bool)] = []
        var i = 0
        while i < flat.count {
            guard flat[i].isLetter || flat[i].isNumber else { i += 1; continue }
            let start = i
            while i < flat.count, flat[i].isLetter || flat[i].isNumber { i += 1 }
            let word = String(flat[start..<i]).lowercased()
            spans.append((start..<i, matches(word, words)))
        }
        guard flat.count > width else {
            return (String(flat), spans.filter(\.hit).map(\.range))
        }
        // The window start (at a word) whose `width` characters hold the most hits; the first on ties.
        var bestStart = 0, bestHits = -1
        for (n, span) in spans.enumerated() where n == 0 || span.hit {
            let end = span.range.lowerBound + width
            let hits = spans[n...].prefix { $0.range.upperBound <= end }.filter(\.hit).count
            if hits > bestHits { (bestStart, bestHits) = (span.range.lowerBound, hits) }
        }
        // Back up a little so that the first hit has some context: to the first word that starts at or after that
        // point (never into a word that began earlier, which could be longer than the window).
        var start = bestStart
        if let word = spans.first(where: { $0.range.lowerBound >= max(0, bestStart - width / 4) }) { start = min(word.range.lowerBound, bestStart) }
        // End at the last word that fits, or mid-word when none does (one word longer than the window).
        var end = min(flat.count, start + width)
        if end < flat.count, let last = spans.last(where: { $0.range.upperBound <= end }), last.range.upperBound > start {
            end = last.range.upperBound
        }
        let prefix = start > 0 ? "… " : "", suffix = end < flat.count ? " …" : ""
        let shift = prefix.count - start
        let highlights = spans.filter { $0.hit && $0.range.lowerBound >= start && $0.range.upperBound <= end }
            .map { ($0.range.lowerBound + shift)..<($0.range.upperBound + shift) }
        return (prefix + String(flat[start..<end]) + suffix, highlights)
    }

    /// Runs of whitespace (line breaks included) as one space, trimmed.
    static func collapsed(_ text: String) -> String {
        text.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    }
}
