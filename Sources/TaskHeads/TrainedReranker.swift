import Foundation
import GemmaEncoder

/// A reranker directory as `train --task rerank` writes it, loaded for scoring: a cross-encoder head (on the
/// frozen encoder it names, or with its fine-tuned `encoder/`), or a T5Gemma checkpoint trained as a first-token
/// ranker (`--scoring first-token:TOKEN`, recorded in `first_token_ranker.json`). `rerank`, `search --rerank`,
/// `eval-retrieval --rerank` and `serve --reranker` all load through here, so each takes both kinds.
public enum TrainedReranker: Sendable {
    case head(Reranker)
    /// The checkpoint's scorer, with the pair tokenization it was trained with, and that tokenization's maximum.
    case firstToken(FirstTokenScorer, maxLength: Int)

    /// Reads `directory`. `model` overrides a head's base model (a first-token ranker has its own and refuses
    /// one); `encoder` opens a model by name or path (a server shares one encoder per model file).
    public static func load(_ directory: URL, model: String? = nil,
                            encoder: (String) throws -> TextEncoder = { try TextEncoder(model: $0) }) throws -> TrainedReranker {
        if let ranker = try FirstTokenRankerConfig.read(directory) {
            guard model == nil else {
                throw HeadError.invalidHead("\(directory.path) is a trained first-token ranker (a T5Gemma checkpoint): it scores with its own encoder and decoder; drop --model")
            }
            let checkpoint = try encoder(directory.path)
            let template = try PairTemplate(ranker.template), maxLength = ranker.maxLength, tokenizer = checkpoint.tokenizer
            let scorer = try FirstTokenScorer(model: checkpoint, token: "#\(ranker.tokenID)", template: ranker.template) { query, document in
                TextEncoder.tokenizePair(query: query, document: document, template: template, maxLength: maxLength, with: tokenizer)
            }
            return .firstToken(scorer, maxLength: maxLength)
        }
        let head = try HeadDirectory.read(directory)
        guard head.config.task == .rerank else {
            throw HeadError.invalidHead("\(directory.path) is a \(head.config.task.rawValue) head, not a reranker (train one with `train --task rerank`)")
        }
        // A fine-tuned cross-encoder carries its encoder (encoder/); a head on a frozen one names its base model.
        return .head(try Reranker(head: head, encoder: try encoder(model ?? head.encoderLocation?.path ?? head.config.baseModel.name),
                                  similarityEncoder: try head.config.fusion?.similarityModel.map { try encoder($0.name) }))
    }

    public var scorer: any PairScorer {
        switch self {
        case let .head(reranker): return reranker
        case let .firstToken(scorer, _): return scorer
        }
    }

    /// The encoder whose forward reads the pairs.
    public var encoder: TextEncoder {
        switch self {
        case let .head(reranker): return reranker.encoder
        case let .firstToken(scorer, _): return scorer.encoder
        }
    }

    /// The longest pair, in tokens, before the document is cut.
    public var maxLength: Int {
        switch self {
        case let .head(reranker): return reranker.maxLength
        case let .firstToken(_, maxLength): return maxLength
        }
    }

    /// The tokenized pairs, for a caller that runs the encoder itself (the server batches them with others).
    public func inputs(query: String, documents: [String]) -> [EncoderInput] {
        switch self {
        case let .head(reranker): return reranker.inputs(query: query, documents: documents)
        case let .firstToken(scorer, _): return scorer.inputs(query: query, documents: documents)
        }
    }
}
