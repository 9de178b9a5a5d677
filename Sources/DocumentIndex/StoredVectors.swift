import Foundation
import GemmaEncoder

extension SearchIndex {
    /// Whether the stored document vectors are the embeddings `similarity` describes: the same model,
    /// prompts and attention, and the model's own pooling (the cosine normalizes, so normalization may differ).
    /// Vectors embedded with titles in the document prompt are not (the similarity's prompt says "title: none").
    public func storesEmbeddings(of similarity: FusedSimilarity) -> Bool {
        similarity.modelDigest == manifest.modelDigest && similarity.queryPrompt == manifest.queryPrompt
            && similarity.documentPrompt == manifest.documentPrompt && manifest.titleField == nil
            && similarity.attention == (manifest.attention ?? .bidirectional) && manifest.pooling == nil
    }

    /// The cosine of `query` (an embedding from `queryEmbedding`) with each result's stored vector, or nil
    /// when a result has none (its document changed under a concurrent build).
    public func storedCosines(query: [Float], results: [SearchResult]) throws -> [Float]? {
        var internalIDs: [Int64] = []
        for result in results {
            guard let id = try store.id(forExternalID: result.id) else { return nil }
            internalIDs.append(id)
        }
        let vectors = try store.vectors(ids: internalIDs, dimension: manifest.dimension)
        var cosines: [Float] = []
        for id in internalIDs {
            guard let vector = vectors[id] else { return nil }
            cosines.append(Self.cosine(query, vector))
        }
        return cosines
    }

    static func cosine(_ a: [Float], _ b: [Float]) -> Float {
        var dot: Float = 0, aa: Float = 0, bb: Float = 0
        for (x, y) in zip(a, b) {
            dot += x * y
            aa += x * x
            bb += y * y
        }
        return aa > 0 && bb > 0 ? dot / (aa.squareRoot() * bb.squareRoot()) : 0
    }
}
