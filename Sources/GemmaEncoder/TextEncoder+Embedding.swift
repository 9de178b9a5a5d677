import EncoderKernels
import Foundation
import GemmaModel

/// Embeddings: tokenize, encode, pool, Dense layers, normalize, Matryoshka-truncate.
extension TextEncoder {
    /// Embeds texts with the options' prompt.
    public func embed(_ texts: [String], options: EmbeddingOptions = EmbeddingOptions()) throws -> [[Float]] {
        try embed(tokenize(texts, prompt: options.prompt), options: options)
    }

    /// Output dimension for the given options.
    public func dimension(options: EmbeddingOptions) -> Int {
        options.dimension ?? pipeline(for: options).outputDimension
    }

    func pipeline(for options: EmbeddingOptions) -> EmbeddingPipeline {
        var p = pipeline
        if let pooling = options.pooling { p.pooling.modes = [pooling] }
        if let normalize = options.normalize { p.normalize = normalize }
        return p
    }

    /// Embeds pre-tokenized inputs, in input order.
    public func embed(_ inputs: [EncoderInput], options: EmbeddingOptions = EmbeddingOptions()) throws -> [[Float]] {
        let pipeline = try pipeline(checking: options)
        let plan = BatchPlan(lengths: inputs.map(\.ids.count), tokenBudget: options.batchTokens, workers: options.workers)
        let vectors = try plan.run(workers: options.workers) { batch, threads in
            let states = try model.forward(batch.map { inputs[$0].ids }, mode: options.attention, threads: threads)
            let rows = batch.enumerated().map { row, index in
                (states: states.sequence(row), length: states.length(row), promptTokens: inputs[index].promptTokens)
            }
            return finish(rows, pipeline: pipeline, options: options)
        }
        return plan.inInputOrder(vectors)
    }

    /// Embeddings from token states computed earlier (`tokenStates`, e.g. by a server that batches requests
    /// of different kinds together): the same pooling, Dense layers, normalization and Matryoshka as `embed`.
    public func embed(states: [[Float]], inputs: [EncoderInput], options: EmbeddingOptions = EmbeddingOptions()) throws -> [[Float]] {
        precondition(states.count == inputs.count, "one state array per input")
        let pipeline = try pipeline(checking: options)
        let h = hiddenSize
        return finish(zip(states, inputs).map { (states: $0[...], length: $0.count / h, promptTokens: $1.promptTokens) },
                      pipeline: pipeline, options: options)
    }

    /// The pipeline for these options, or an error for options it cannot honour.
    private func pipeline(checking options: EmbeddingOptions) throws(EncoderError) -> EmbeddingPipeline {
        if let pooling = options.pooling, pooling.isLearned {
            throw .invalidInput("\(pooling.rawValue) pooling has learned parameters: it belongs to a trained head, not to an embedding")
        }
        let pipeline = pipeline(for: options)
        if let d = options.dimension, d <= 0 || d > pipeline.outputDimension {
            throw .invalidInput("dimension \(d) must be between 1 and the model's \(pipeline.outputDimension)")
        }
        return pipeline
    }

    /// Pools each sequence's states, applies the Dense layers to all of them at once, then normalizes and
    /// truncates (Matryoshka).
    private func finish(_ rows: [(states: ArraySlice<Float>, length: Int, promptTokens: Int)], pipeline: EmbeddingPipeline,
                        options: EmbeddingOptions) -> [[Float]] {
        var pooled: [Float] = []
        pooled.reserveCapacity(rows.count * pipeline.pooling.outputDimension)
        for row in rows {
            pooled += pipeline.pooling.pool(row.states, length: row.length, firstToken: row.promptTokens)
        }
        for layer in pipeline.dense { pooled = layer.apply(pooled, rows: rows.count) }
        let width = pipeline.outputDimension
        return (0..<rows.count).map { row -> [Float] in
            var v = Array(pooled[(row * width)..<((row + 1) * width)])
            if pipeline.normalize { v.withUnsafeMutableBufferPointer { l2NormalizeInPlace($0.baseAddress!, count: width) } }
            if let d = options.dimension, d < width {
                v = Array(v.prefix(d))
                v.withUnsafeMutableBufferPointer { l2NormalizeInPlace($0.baseAddress!, count: d) }
            }
            return v
        }
    }
}
