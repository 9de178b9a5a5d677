import EncoderKernels
import Foundation
import ModelFormats

/// A Gemma, Gemma 2 or Gemma 3 transformer stack run as an encoder: all tokens of a batch go through
/// each linear layer as one GEMM; attention runs per sequence, so padding never costs work and a token's
/// output does not depend on its batch-mates.
public final class GemmaTransformer: EncoderModel {
    public let config: GemmaConfig
    /// How the Linear weights are stored (norms and embeddings stay f32).
    public let precision: WeightPrecision
    let embedding: TokenEmbedding
    let layers: [DecoderLayer]
    let finalNorm: RMSNorm
    let rotary: RotaryEmbedding
    /// Time per operation of this model's forward calls, when enabled (`bench --profile`).
    public let profile: OperationProfile? = OperationProfile()

    public init(config: GemmaConfig, weights: some WeightProvider, precision: WeightPrecision = .f32) throws(FormatError) {
        // The forward pass spreads its products over the cores itself; BLAS must not do the same underneath.
        ComputeThreads.configure()
        self.config = config
        self.precision = precision
        let root = WeightScope(weights)
        embedding = try TokenEmbedding(config: config, weights: weights)
        var layers: [DecoderLayer] = []
        for l in 0..<config.numLayers {
            layers.append(try DecoderLayer(config: config, index: l, weights: root.scoped("layers.\(l)"), precision: precision))
        }
        self.layers = layers
        finalNorm = RMSNorm(scale: try root.normScale("norm.weight", dimension: config.hiddenSize), eps: config.rmsNormEps)
        rotary = RotaryEmbedding(config: config)
    }

    public var hiddenSize: Int { config.hiddenSize }
    public var vocabularySize: Int { config.vocabSize }
    public var maxPositions: Int { config.maxPositionEmbeddings }

    public var weightBytes: [WeightFormat: Int] {
        var bytes: [WeightFormat: Int] = [embedding.table.format: embedding.table.byteCount]
        for w in layers.flatMap(\.weights) { bytes[w.format, default: 0] += w.byteCount }
        return bytes
    }

    public func flops(length: Int, mode: AttentionMode) -> Double { config.flops(length: length, mode: mode) }

    /// Runs unpadded sequences on up to `threads` cores. (Training runs its own forward over f32 master weights,
    /// GemmaTraining's TrainableGemma, from the same kernels; a test holds the two to the same outputs.)
    public func forward(_ sequences: [[Int32]], mode: AttentionMode, threads: Int) throws(ModelError) -> HiddenStates {
        let batch = try PackedBatch(sequences: sequences, hiddenSize: config.hiddenSize, vocabularySize: config.vocabSize)
        let offsets = batch.offsets
        var out = [Float](repeating: 0, count: batch.tokens * config.hiddenSize)
        if batch.tokens > 0 {
            out.withUnsafeMutableBufferPointer { dst in
                run(sequences, batch: batch, mode: mode, threads: max(1, threads), output: dst.baseAddress!)
            }
        }
        return HiddenStates(hiddenSize: config.hiddenSize, offsets: offsets, values: out)
    }

    private func run(_ sequences: [[Int32]], batch: PackedBatch, mode: AttentionMode, threads: Int,
                     output: UnsafeMutablePointer<Float>) {
        let attention = layers[0].attention
        let buffers = ForwardBuffers(tokens: batch.tokens, maxLength: batch.maxLength, hiddenSize: config.hiddenSize,
                                     stackedQKV: attention.stackedWidth, queryWidth: attention.queryWidth,
                                     intermediateSize: config.intermediateSize, threads: threads,
                                     profiling: profile?.isEnabled ?? false)
        let rotary = self.rotary.covering(batch.maxLength)
        buffers.timer.time(.embed) { embedding.embed(sequences.joined(), into: buffers.residual) }
        for (l, layer) in layers.enumerated() {
            layer.forward(buffers.residual, batch: batch, rope: rotary.table(for: layer.type),
                          span: config.attentionSpan(layer: l, mode: mode), buffers: buffers)
        }
        buffers.timer.time(.norm) { finalNorm.forward(buffers.residual, rows: batch.tokens, out: output) }
        if buffers.timer.enabled { profile?.add(buffers.timer.spent) }
    }
}
