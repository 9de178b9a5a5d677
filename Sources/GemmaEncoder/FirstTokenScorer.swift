import EncoderKernels
import Foundation
import GemmaModel
import GemmaTokenizer

/// RankT5-style scoring with a T5Gemma checkpoint: each (query, document) pair is written into one text by a
/// template, read once by the encoder, and the decoder runs a single step from its start token; the pair's score
/// is that step's logit of one chosen token (e.g. "▁yes", or a sentinel a ranker was trained to emit).
public final class FirstTokenScorer: PairScorer {
    public static let defaultTemplate = "Query: {query} Document: {document}"

    public let encoder: TextEncoder
    public let decoder: T5GemmaDecoder
    /// The token whose first-step logit is the score.
    public let token: Int32
    public let template: String
    /// How a pair becomes encoder input, when not `template` filled in and tokenized to the model's maximum length:
    /// a trained ranker's own pair tokenization (its template, its document cut to its maximum length).
    public let pairInput: (@Sendable (_ query: String, _ document: String) -> EncoderInput)?

    /// `token`: the token's text as the vocabulary spells it, or `#ID` for an id.
    public init(encoder: TextEncoder, decoder: T5GemmaDecoder, token: String, template: String = defaultTemplate,
                pairInput: (@Sendable (_ query: String, _ document: String) -> EncoderInput)? = nil) throws(EncoderError) {
        guard template.contains("{query}"), template.contains("{document}") else {
            throw .invalidInput("the pair template needs both {query} and {document}: '\(template)'")
        }
        let id = try Self.tokenID(token, tokenizer: encoder.tokenizer)
        guard decoder.config.encoder.hiddenSize == encoder.hiddenSize else {
            throw .invalidInput("the decoder reads states of width \(decoder.config.encoder.hiddenSize), the encoder writes \(encoder.hiddenSize): not one checkpoint")
        }
        guard id >= 0, Int(id) < decoder.vocabularySize else {
            throw .invalidInput("token id \(id) is outside the decoder's vocabulary (0..<\(decoder.vocabularySize))")
        }
        self.encoder = encoder
        self.decoder = decoder
        self.token = id
        self.template = template
        self.pairInput = pairInput
    }

    /// The id of `token`, given as the vocabulary spells it or as `#ID`.
    public static func tokenID(_ token: String, tokenizer: GemmaTokenizer) throws(EncoderError) -> Int32 {
        if token.hasPrefix("#"), let n = Int32(token.dropFirst()) { return n }
        guard let n = tokenizer.id(ofToken: token) else {
            throw .invalidInput("'\(token)' is not a token of this model's vocabulary (give it as the vocabulary spells it, e.g. ▁yes, or as #ID)")
        }
        return n
    }

    /// A T5Gemma checkpoint directory, or an error saying the model is not one.
    public convenience init(model: TextEncoder, token: String, template: String = defaultTemplate,
                            precision: WeightPrecision = .f32,
                            pairInput: (@Sendable (_ query: String, _ document: String) -> EncoderInput)? = nil) throws {
        guard case .huggingFace(let directory) = model.source,
              try T5GemmaConfig.isCheckpoint(directory) else {
            throw EncoderError.invalidInput("\(model.location.path): first-token scoring needs a T5Gemma checkpoint (model_type t5gemma or t5gemma2)")
        }
        try self.init(encoder: model, decoder: try T5GemmaDecoder(directory: directory, precision: precision), token: token,
                      template: template, pairInput: pairInput)
    }

    /// The pair text of one document.
    public func pairText(query: String, document: String) -> String {
        template.replacingOccurrences(of: "{query}", with: query).replacingOccurrences(of: "{document}", with: document)
    }

    /// Every pair encoded once (batched over the cores as `embed` is), then one decoder step each.
    public func rerankScores(query: String, documents: [String], similarity: [Float]?) throws -> RerankScores {
        RerankScores(final: try scores(encoding: inputs(query: query, documents: documents)))
    }

    /// The pairs as encoder input: the trained ranker's own tokenization, else the template filled in and
    /// tokenized to the model's maximum length.
    public func inputs(query: String, documents: [String]) -> [EncoderInput] {
        if let pairInput { return documents.map { pairInput(query, $0) } }
        return encoder.tokenize(documents.map { pairText(query: query, document: $0) })
    }

    /// The scores of pairs whose encoder states a caller computed (a server, batching them with other requests):
    /// `states[i]` is pair i's token states, `hiddenSize` floats per token, from a bidirectional forward.
    public func scores(states: [[Float]], threads: Int = 1) throws -> [Float] {
        let h = encoder.hiddenSize
        if let bad = states.firstIndex(where: { $0.isEmpty || $0.count % h != 0 }) {
            throw EncoderError.invalidInput("pair \(bad)'s states hold \(states[bad].count) floats: not whole tokens of width \(h)")
        }
        return try decoderScores(states.map { (ArraySlice($0), $0.count / h) }, threads: threads)
    }

    /// One decoder step from the start token for every pair at once (its rows share each product's weight
    /// reads): the step's logit of `token` per pair.
    private func decoderScores(_ pairs: [(states: ArraySlice<Float>, length: Int)], threads: Int) throws -> [Float] {
        guard !pairs.isEmpty else { return [] }
        let caches = pairs.map { decoder.start(encoderStates: $0.states, length: $0.length, threads: threads) }
        let start = Int32(decoder.config.decoderStartTokenId)
        let hidden = try decoder.hidden(next: Array(repeating: start, count: caches.count), caches: caches, threads: threads)
        let h = decoder.config.decoder.hiddenSize
        return (0..<pairs.count).map { row in decoder.logit(of: Int(token), hidden: hidden[(row * h)..<((row + 1) * h)]) }
    }

    /// The scores of tokenized pair texts: batches of pairs spread over the cores as `embed` spreads them, each
    /// batch encoded in one forward, then its pairs' decoder steps in one decoder call on the same core(s).
    public func scores(encoding inputs: [EncoderInput],
                       workers: Int = CPUBudget.threads) throws -> [Float] {
        let plan = BatchPlan(lengths: inputs.map(\.ids.count), tokenBudget: 2048, workers: workers)
        let model = encoder.model
        let scores = try plan.run(workers: workers) { batch, threads in
            let states = try model.forward(batch.map { inputs[$0].ids }, mode: .bidirectional, threads: threads)
            return try decoderScores((0..<batch.count).map { (states.sequence($0), states.length($0)) }, threads: threads)
        }
        return plan.inInputOrder(scores)
    }
}
