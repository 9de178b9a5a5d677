import EncoderKernels
import Foundation
import GemmaEncoder

/// A head's prediction for one text.
public enum HeadPrediction: Sendable, Equatable {
    /// The best class and every class's probability (softmax; sigmoid per label when multi-label, where
    /// `labels` holds every class at or above 0.5).
    case classes(label: String, labels: [String], scores: [String: Double])
    case values([Double])
}

/// Encoder + head: texts in, predictions out.
public struct HeadPredictor: Sendable {
    public let head: HeadDirectory
    public let encoder: TextEncoder

    /// Loads the head and checks the encoder is the model it was trained on.
    public init(head: HeadDirectory, encoder: TextEncoder) throws {
        try head.checkBaseModel(encoder)
        self.head = head
        self.encoder = encoder
    }

    /// Token states for texts with the head's prompt and attention mode, through `cache` when given.
    public func states(_ texts: [String], cache: TokenStateCache? = nil,
                       progress: ((Int, Int) -> Void)? = nil) throws -> TokenStateSet {
        let config = head.config
        return try cache.states(TokenStateCache.Request(texts: texts, prompt: config.prompt, attention: config.attention,
                                                        modelDigest: config.baseModel.digest),
                                encoder: encoder, progress: progress)
    }

    public func predict(_ texts: [String], cache: TokenStateCache? = nil,
                        progress: ((Int, Int) -> Void)? = nil) throws -> [HeadPrediction] {
        guard !texts.isEmpty else { return [] }
        return interpret(head.network.predict(try states(texts, cache: cache, progress: progress)), count: texts.count)
    }

    /// The tokenized texts (the head's prompt, the model's truncation), for a caller that runs the encoder
    /// itself (the server batches them with others).
    public func inputs(_ texts: [String]) -> [EncoderInput] { encoder.tokenize(texts, prompt: head.config.prompt) }

    /// Predictions from the texts' token states (encoded with `head.config.attention`).
    public func predictions(states: [[Float]]) -> [HeadPrediction] {
        var set = TokenStateSet(dimension: encoder.hiddenSize)
        for s in states { set.append(s) }
        return interpret(head.network.predict(set), count: states.count)
    }

    /// Maps raw outputs to predictions.
    public func interpret(_ logits: [Float], count: Int) -> [HeadPrediction] {
        let config = head.config, c = config.architecture.outputs
        return (0..<count).map { i in
            let row = Array(logits[(i * c)..<((i + 1) * c)])
            switch config.task {
            case .classification:
                let names = config.labels ?? (0..<c).map(String.init)
                var p = row
                if config.multiLabel {
                    p = row.map(sigmoid)
                } else {
                    p.withUnsafeMutableBufferPointer { softmaxInPlace($0.baseAddress!, count: c) }
                }
                let best = argmax(p)
                let chosen = config.multiLabel ? names.indices.filter { p[$0] >= 0.5 }.map { names[$0] } : [names[best]]
                return .classes(label: names[best], labels: chosen,
                                scores: Dictionary(uniqueKeysWithValues: zip(names, p.map(Double.init))))
            case .regression:
                return .values(row.enumerated().map { j, v in
                    Double(v) * (config.targetStd?[j] ?? 1) + (config.targetMean?[j] ?? 0)
                })
            case .rerank:
                return .values([Double(row[0])])
            }
        }
    }
}
