import Foundation

/// Reranker training rows from an index: for each query, its first relevant document as the positive and the
/// index's best-ranked documents that are not relevant as hard negatives.
public enum NegativeMining {
    public struct Row: Sendable, Equatable {
        public var queryID: String
        public var query: String
        public var positive: String
        public var negatives: [String]
    }

    public static func mine(_ index: SearchIndex, queries: [RetrievalQuery], negatives: Int, mode: SearchMode,
                            skip: Int = 0) throws -> [Row] {
        guard negatives > 0, skip >= 0 else {
            throw IndexError.invalidCorpus("negatives per query must be positive and skipped results not negative (negatives \(negatives), skip \(skip))")
        }
        let positives = try index.documentText(ids: queries.map { $0.relevant[0] })
        let depth = negatives + skip + (queries.map(\.relevant.count).max() ?? 1)
        let rankings = try index.search(queries.map(\.text), k: depth, mode: mode)
        return try zip(queries, zip(positives, rankings)).map { query, pair in
            guard let positive = pair.0 else {
                throw IndexError.invalidCorpus("query \(query.id): relevant document \(query.relevant[0]) is not in the index")
            }
            let relevant = Set(query.relevant)
            let hard = pair.1.filter { !relevant.contains($0.id) }.dropFirst(skip).prefix(negatives).map(\.text)
            return Row(queryID: query.id, query: query.text, positive: positive, negatives: Array(hard))
        }
    }
}
