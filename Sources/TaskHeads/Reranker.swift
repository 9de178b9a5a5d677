import EncoderKernels
import Foundation
import GemmaEncoder

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

extension TextEncoder {
    /// A pair tokenized for the cross-encoder. When it exceeds `maxLength` tokens the document is cut first
    /// (at a token boundary of the document alone, then re-tokenized in place); only a query that does not fit
    /// by itself loses its end as well.
    public func tokenizePair(query: String, document: String, template: PairTemplate, maxLength: Int) -> EncoderInput {
        let full = tokenizer.encode(template.render(query: query, document: document))
        guard full.count > maxLength else { return EncoderInput(ids: full) }
        let withoutDocument = tokenizer.encode(template.render(query: query, document: "")).count
        var budget = maxLength - withoutDocument
        let documentIds = tokenizer.encode(document, addSpecialTokens: false)
        // Tokens can merge across the cut: re-tokenize, and shrink the budget by any overshoot.
        for _ in 0..<4 where budget > 0 {
            let cut = tokenizer.decode(Array(documentIds.prefix(budget)))
            let ids = tokenizer.encode(template.render(query: query, document: cut))
            if ids.count <= maxLength { return EncoderInput(ids: ids, truncated: true) }
            budget -= ids.count - maxLength
        }
        let cut = tokenizer.encode(template.render(query: query, document: ""), maxLength: maxLength)
        return EncoderInput(ids: cut.ids, truncated: true)
    }
}

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

/// How the reranker is trained: the listwise loss (softmax over the positive and its negatives) or the
/// pairwise one (RankNet: the positive above each negative).
public enum RankingLoss: String, Codable, Sendable, CaseIterable {
    case listwise, pairwise
}

public struct RerankerTrainingPlan: Sendable {
    public var pooling: HeadPooling = .attention
    public var attentionHeads = 4
    public var hiddenSize: Int? = 256
    public var dropout: Float = 0.1
    public var hiddenDropout: Float = 0.1
    public var loss: RankingLoss = .listwise
    /// Negatives per group (rows with more are sampled, seeded; rows with fewer are an error).
    public var negatives = 3
    public var template = PairTemplate.embeddingGemma
    public var maxLength = 512
    public var validFraction = 0.1
    public var options = TrainingOptions()
    public var attention: AttentionMode = .bidirectional
    /// Fuse the cross score with the bi-encoder cosine, weights fitted on the validation groups (ScoreFusion).
    /// Off by default: it doubles the encoder work per reranked document, and on the README's task it only
    /// ties vector search.
    public var fuseSimilarity = false
    /// With `fuseSimilarity`: train the head on top of the cosine (its weight first fitted on the training
    /// groups alone), so the head learns what the cosine gets wrong instead of repeating what it gets right.
    public var residual = false

    public init() {}
}

/// Trains and applies cross-encoder rerankers: encoder + pooling + a one-score head.
public enum RerankerBuilder {
    public static func train(encoder: TextEncoder, modelName: String, examples: [RerankExample], valid: [RerankExample]?,
                             plan: RerankerTrainingPlan, cache: TokenStateCache?,
                             progress: HeadBuilder.ProgressHandler? = nil,
                             onEpoch: ((EpochReport) -> Void)? = nil) throws -> HeadDirectory {
        guard plan.negatives > 0 else { throw HeadError.invalidData("--negatives must be positive") }
        var rng = SeededGenerator(seed: plan.options.seed &+ 0x5EED_0F)
        var trainRows = examples, validRows: [RerankExample]
        if let valid {
            validRows = valid
        } else {
            guard examples.count >= 2 else { throw HeadError.invalidData("too few rows to hold out a validation split (give --valid)") }
            let order = Array(examples.indices).shuffled(using: &rng)
            let held = min(examples.count - 1, max(1, Int((Double(examples.count) * plan.validFraction).rounded())))
            validRows = order.prefix(held).sorted().map { examples[$0] }
            trainRows = order.dropFirst(held).sorted().map { examples[$0] }
        }
        for row in trainRows + validRows where row.negatives.count < plan.negatives {
            throw HeadError.invalidData("line \(row.line): \(row.negatives.count) negatives, --negatives asks for \(plan.negatives)")
        }
        let digest = try ModelFingerprint.digest(of: encoder.location)
        func groups(_ rows: [RerankExample], label: String) throws -> (states: TokenStateSet, documents: [[String]]) {
            // One group per row: the positive first, then sampled negatives.
            var inputs: [EncoderInput] = []
            var documents: [[String]] = []
            for row in rows {
                let negatives = Array(row.negatives.shuffled(using: &rng).prefix(plan.negatives))
                documents.append([row.positive] + negatives)
                for document in documents[documents.count - 1] {
                    inputs.append(encoder.tokenizePair(query: row.query, document: document, template: plan.template,
                                                       maxLength: plan.maxLength))
                }
            }
            let states = try pairStates(inputs, encoder: encoder, digest: digest, attention: plan.attention, cache: cache,
                                        progress: progress.map { p in { p("encoding \(label) pairs", $0, $1) } })
            return (states, documents)
        }
        let (trainStates, trainDocuments) = try groups(trainRows, label: "training")
        let (validStates, validDocuments) = try groups(validRows, label: "validation")
        let size = plan.negatives + 1
        let queryPrompt = encoder.prompts["query"], documentPrompt = encoder.prompts["document"]
        func similarities(_ rows: [RerankExample], _ documents: [[String]], label: String) throws -> [Float] {
            try encoder.similarities(groups: zip(rows, documents).map { ($0.query, $1) }, queryPrompt: queryPrompt,
                                     documentPrompt: documentPrompt, attention: plan.attention,
                                     progress: progress.map { p in { p("embedding \(label) groups apart", $0, $1) } })
        }
        let validSimilarity = plan.fuseSimilarity ? try similarities(validRows, validDocuments, label: "validation") : []
        var offsets: (train: [Float], valid: [Float])?
        if plan.fuseSimilarity && plan.residual {
            let trainSimilarity = try similarities(trainRows, trainDocuments, label: "training")
            let weight = Float(ScoreFusion.fit(cross: [Float](repeating: 0, count: trainSimilarity.count), similarity: trainSimilarity,
                                               groupSize: size, queryPrompt: nil, documentPrompt: nil).similarityWeight)
            offsets = (trainSimilarity.map { weight * $0 }, validSimilarity.map { weight * $0 })
        }
        let architecture = HeadArchitecture(inputDimension: encoder.transformer.config.hiddenSize, outputs: 1, pooling: plan.pooling,
                                            attentionHeads: plan.attentionHeads, hiddenSize: plan.hiddenSize,
                                            dropout: plan.dropout, hiddenDropout: plan.hiddenDropout)
        let targets: Targets = plan.loss == .listwise ? .groups(size: size) : .pairs(size: size)
        let result = try HeadTrainer.train(architecture: architecture, train: trainStates, trainTargets: targets,
                                           valid: validStates, validTargets: targets, options: plan.options,
                                           trainOffsets: offsets?.train, validOffsets: offsets?.valid,
                                           onStep: progress.map { p in { p("training", $0, $1) } }, onEpoch: onEpoch)
        var config = HeadConfig(task: .rerank, architecture: architecture, baseModel: .init(name: modelName, digest: digest),
                                attention: plan.attention, prompt: nil)
        config.pairTemplate = plan.template.text
        config.maxLength = plan.maxLength
        config.rankingLoss = plan.loss
        if plan.fuseSimilarity {
            config.fusion = ScoreFusion.fit(cross: result.network.predict(validStates), similarity: validSimilarity, groupSize: size,
                                            queryPrompt: queryPrompt, documentPrompt: documentPrompt)
            config.fusion?.residual = plan.residual
        }
        config.training = TrainingSummary(options: plan.options, trainRows: trainRows.count, validRows: validRows.count,
                                          bestEpoch: result.bestEpoch, epochs: result.epochs)
        return HeadDirectory(config: config, network: result.network)
    }

    /// Token states of tokenized pairs, through the cache when given (keyed by the exact token ids).
    static func pairStates(_ inputs: [EncoderInput], encoder: TextEncoder, digest: String, attention: AttentionMode,
                           cache: TokenStateCache?, progress: ((Int, Int) -> Void)?) throws -> TokenStateSet {
        let request = TokenStateCache.Request(tokenized: inputs, attention: attention, modelDigest: digest)
        if let cache { return try cache.states(request, encoder: encoder, progress: progress).states }
        return try TokenStateCache.compute(request, encoder: encoder, progress: progress)
    }
}

/// A trained reranker ready to score: its head and the encoder it was trained on.
public struct Reranker: Sendable {
    public let head: HeadDirectory
    public let encoder: TextEncoder
    public let template: PairTemplate
    public let maxLength: Int

    public init(head: HeadDirectory, encoder: TextEncoder) throws {
        guard head.config.task == .rerank else {
            throw HeadError.invalidHead("this is a \(head.config.task.rawValue) head, not a reranker (train one with --task rerank)")
        }
        try head.checkBaseModel(encoder)
        self.head = head
        self.encoder = encoder
        template = try PairTemplate(head.config.pairTemplate ?? PairTemplate.embeddingGemma.text)
        maxLength = head.config.maxLength ?? encoder.maxSequenceLength
    }

    /// A relevance score per document (higher is more relevant), in input order.
    public func scores(query: String, documents: [String]) throws -> [Float] {
        try scoreVariants(query: query, documents: documents)["reranked"]!
    }

    /// "reranked" (the final scores) and, for a fused reranker, "reranked_cross_only" (the head alone), from
    /// one pass over the pairs.
    public func scoreVariants(query: String, documents: [String]) throws -> [String: [Float]] {
        guard !documents.isEmpty else { return ["reranked": []] }
        let pairs = inputs(query: query, documents: documents)
        let cross = crossScores(states: try encoder.tokenStates(pairs, attention: head.config.attention))
        guard let fusion = head.config.fusion else { return ["reranked": cross] }
        let similarity = try encoder.similarities(query: query, documents: documents, queryPrompt: fusion.queryPrompt,
                                                  documentPrompt: fusion.documentPrompt, attention: head.config.attention)
        return ["reranked": fusion.combine(cross: cross, similarity: similarity), "reranked_cross_only": cross]
    }

    /// The tokenized pairs, for a caller that runs the encoder itself (the server batches them with others).
    public func inputs(query: String, documents: [String]) -> [EncoderInput] {
        documents.map { encoder.tokenizePair(query: query, document: $0, template: template, maxLength: maxLength) }
    }

    /// For a fused reranker, the query then each document tokenized with their prompts, to embed for the
    /// cosine (nil when the reranker does not fuse).
    public func similarityInputs(query: String, documents: [String]) -> [EncoderInput]? {
        head.config.fusion.map { f in
            encoder.similarityInputs(query: query, documents: documents, queryPrompt: f.queryPrompt, documentPrompt: f.documentPrompt)
        }
    }

    /// The options those inputs are embedded with.
    public var similarityOptions: EmbeddingOptions { TextEncoder.similarityOptions(attention: head.config.attention) }

    /// Final scores from the pairs' token states (encoded with `head.config.attention`) and, for a fused
    /// reranker, the embeddings of `similarityInputs` (query first).
    public func scores(states: [[Float]], similarityEmbeddings: [[Float]]?) -> [Float] {
        let cross = crossScores(states: states)
        guard let fusion = head.config.fusion, let similarityEmbeddings else { return cross }
        return fusion.combine(cross: cross, similarity: TextEncoder.cosines(similarityEmbeddings))
    }

    func crossScores(states: [[Float]]) -> [Float] {
        var set = TokenStateSet(dimension: encoder.transformer.config.hiddenSize)
        for s in states { set.append(s) }
        return head.network.predict(set)
    }

    /// Document indices, best first, with their scores.
    public func rank(query: String, documents: [String]) throws -> [(index: Int, score: Float)] {
        let scores = try scores(query: query, documents: documents)
        return scores.enumerated().map { ($0, $1) }.sorted { $0.score != $1.score ? $0.score > $1.score : $0.index < $1.index }
    }
}
