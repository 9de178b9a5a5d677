import Foundation
import GemmaEncoder

/// A trained reranker ready to score: its head, the encoder it was trained on, and, for a fused one, the encoder
/// whose cosine it fuses.
public struct Reranker: PairScorer {
    public let head: HeadDirectory
    public let encoder: TextEncoder
    /// Embeds the query and documents apart for a fused reranker's cosine: `encoder`, or the base model a
    /// fine-tuned cross-encoder records (`ScoreFusion.similarityModel`).
    public let similarityEncoder: TextEncoder
    public let template: PairTemplate
    public let maxLength: Int

    /// `similarityEncoder` is needed, and checked against the recorded digest, when the fusion names its own
    /// model; otherwise the cosine comes from `encoder`.
    public init(head: HeadDirectory, encoder: TextEncoder, similarityEncoder: TextEncoder? = nil) throws {
        guard head.config.task == .rerank else {
            throw HeadError.invalidHead("this is a \(head.config.task.rawValue) head, not a reranker (one trained for the rerank task)")
        }
        try head.checkBaseModel(encoder)
        self.head = head
        self.encoder = encoder
        if let model = head.config.fusion?.similarityModel {
            guard let similarityEncoder else {
                throw HeadError.invalidHead("this reranker fuses the cosine of its base model '\(model.name)': load that model too")
            }
            let digest = try ModelFingerprint.digest(of: similarityEncoder.source)
            guard digest == model.digest else {
                throw HeadError.baseModelMismatch("this reranker fuses the cosine of '\(model.name)' (digest \(model.digest.prefix(12))), but \(similarityEncoder.location.path) has digest \(digest.prefix(12))")
            }
            self.similarityEncoder = similarityEncoder
        } else {
            self.similarityEncoder = encoder
        }
        template = try PairTemplate(head.config.pairTemplate ?? PairTemplate.embeddingGemma.text)
        maxLength = head.config.maxLength ?? encoder.maxSequenceLength
    }

    public var fusedSimilarity: FusedSimilarity? {
        head.config.fusion.map {
            FusedSimilarity(modelDigest: $0.similarityModel?.digest ?? head.config.baseModel.digest, queryPrompt: $0.queryPrompt,
                            documentPrompt: $0.documentPrompt, attention: head.config.attention)
        }
    }

    /// The final scores and, for a fused reranker, the head's alone, from one pass over the pairs; the cosine
    /// is computed here unless `similarity` brings it.
    public func rerankScores(query: String, documents: [String], similarity: [Float]?) throws -> RerankScores {
        guard !documents.isEmpty else { return RerankScores(final: []) }
        let states = try encoder.tokenStates(inputs(query: query, documents: documents), attention: head.config.attention)
        guard let fusion = head.config.fusion else { return RerankScores(final: crossScores(states: states)) }
        let cosine = try similarity ?? similarityEncoder.similarities(query: query, documents: documents, queryPrompt: fusion.queryPrompt,
                                                            documentPrompt: fusion.documentPrompt, attention: head.config.attention)
        return try scores(states: states, similarity: cosine)
    }

    /// The tokenized pairs, for a caller that runs the encoder itself (the server batches them with others).
    public func inputs(query: String, documents: [String]) -> [EncoderInput] {
        documents.map { encoder.tokenizePair(query: query, document: $0, template: template, maxLength: maxLength) }
    }

    /// For a fused reranker, the query then each document tokenized with their prompts, to embed with
    /// `similarityEncoder` for the cosine (nil when the reranker does not fuse).
    public func similarityInputs(query: String, documents: [String]) -> [EncoderInput]? {
        head.config.fusion.map { f in
            similarityEncoder.similarityInputs(query: query, documents: documents, queryPrompt: f.queryPrompt, documentPrompt: f.documentPrompt)
        }
    }

    /// The options those inputs are embedded with.
    public var similarityOptions: EmbeddingOptions { TextEncoder.similarityOptions(attention: head.config.attention) }

    /// The cosines from the embeddings of `similarityInputs` (query first).
    public func similarity(embeddings: [[Float]]) -> [Float] { TextEncoder.cosines(embeddings) }

    /// Scores from the pairs' token states (encoded with `head.config.attention`) and, for a fused reranker,
    /// each document's cosine with the query.
    public func scores(states: [[Float]], similarity: [Float]?) throws(HeadError) -> RerankScores {
        let cross = crossScores(states: states)
        guard let fusion = head.config.fusion else { return RerankScores(final: cross) }
        guard let similarity, similarity.count == cross.count else {
            throw .invalidData("a fused reranker needs one cosine per document: \(similarity?.count ?? 0) for \(cross.count)")
        }
        return RerankScores(final: fusion.combine(cross: cross, similarity: similarity), crossOnly: cross)
    }

    func crossScores(states: [[Float]]) -> [Float] {
        var set = TokenStateSet(dimension: encoder.hiddenSize)
        for s in states { set.append(s) }
        return head.network.predict(set)
    }
}
