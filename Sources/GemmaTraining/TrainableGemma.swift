import CKernels
import EncoderKernels
import Foundation
import GemmaModel
import ModelFormats

/// A Gemma, Gemma 2 or Gemma 3 encoder whose weights train: f32 master copies of every layer, loaded from any
/// source the inference model loads (safetensors f32/bf16, GGUF quantized), a forward that keeps what its
/// backward reads (or only each layer's input, recomputing the rest: activation checkpointing), dropout
/// inside the encoder, and LoRA adapters.
public final class TrainableGemma: @unchecked Sendable {
    public let config: GemmaConfig
    let layers: [TrainableLayer]
    public let finalNorm: Parameter
    /// The lookup as stored (the table read a row at a time; T5Gemma 2's eoi vector, unscaled and never trained);
    /// the table's f32 master copy exists only when it trains.
    let tokens: TokenEmbedding
    public private(set) var embeddings: Parameter?
    let rotary: RotaryEmbedding
    /// Layers below this index are frozen and run without a tape: their output can be cached (top:K).
    public private(set) var firstTrainedLayer = 0
    /// What `prepare` last set up.
    public private(set) var scope: FineTuneScope = .none
    /// The Linear layers' products in every pass: f32 (exact, the default) or bf16 operands with f32 sums, the
    /// master weights, gradients and optimizer state staying f32 (`ProductPrecision.fastest` where bf16 pays).
    public var products: ProductPrecision = .f32
    /// The T5Gemma checkpoint directory this encoder stack was loaded from: a fine-tuned encoder is written back
    /// into a copy of it (`EncoderExport`). nil for a Gemma.
    public var t5GemmaCheckpoint: URL?

    public init(config: GemmaConfig, weights: some WeightProvider) throws(FormatError) {
        ComputeThreads.configure()
        TrainingMemory.configure()
        self.config = config
        tokens = try TokenEmbedding(config: config, weights: weights)
        var layers: [TrainableLayer] = []
        for l in 0..<config.numLayers { layers.append(try TrainableLayer(config: config, index: l, weights: weights)) }
        self.layers = layers
        let w = try weights.normWeight("norm.weight", dimension: config.hiddenSize)
        finalNorm = Parameter(name: "norm.weight", shape: [config.hiddenSize], value: Tensor(copying: w.pointer, count: w.count),
                              kind: .normWeight)
        rotary = RotaryEmbedding(config: config)
    }

    // MARK: What trains

    /// Marks what `scope` trains (and adds LoRA adapters, drawn from `seed`). Embeddings train only with
    /// `trainEmbeddings`. `.none` trains nothing.
    public func prepare(_ scope: FineTuneScope, trainEmbeddings: Bool = false, seed: UInt64 = 0) throws(TrainingError) {
        self.scope = scope
        for layer in layers { for p in layer.baseParameters { p.setTrained(false) } }
        finalNorm.setTrained(false)
        switch scope {
        case .none:
            firstTrainedLayer = layers.count
        case .all:
            firstTrainedLayer = 0
            for layer in layers { for p in layer.baseParameters { p.setTrained(true) } }
            finalNorm.setTrained(true)
        case let .top(k):
            guard k <= layers.count else {
                throw .invalidOption("top:\(k) asks for more layers than the model's \(layers.count)")
            }
            firstTrainedLayer = layers.count - k
            for layer in layers[firstTrainedLayer...] { for p in layer.baseParameters { p.setTrained(true) } }
            finalNorm.setTrained(true)
        case let .lora(rank, alpha, targets):
            firstTrainedLayer = 0
            var generator = SeededGenerator(seed: seed ^ 0x4C6F_5241)
            for layer in layers { layer.addAdapters(rank: rank, alpha: alpha, targets: targets, generator: &generator) }
        }
        if trainEmbeddings {
            if embeddings == nil {
                embeddings = Parameter(name: "embed_tokens.weight", shape: [config.vocabSize, config.hiddenSize],
                                       value: Tensor(tokens.table.dequantized()), kind: .embedding)
            }
            embeddings!.setTrained(true)
            firstTrainedLayer = 0
        } else {
            embeddings?.setTrained(false)
        }
    }

    /// Every parameter: embeddings (when copied), each layer's base weights and adapters, the final norm.
    public var parameters: [Parameter] {
        var all: [Parameter] = embeddings.map { [$0] } ?? []
        for layer in layers { all += layer.parameters }
        return all + [finalNorm]
    }

    public var trainedParameters: [Parameter] { parameters.filter(\.isTrained) }

    /// Each of `parameters`' rate relative to the encoder's peak under layer-wise decay: decay^(L − i) for layer
    /// i's weights and adapters, decay^(L + 1) for the embeddings, 1 for the final norm and for anything not of
    /// this encoder (a pipeline's Dense layers, a decoder), which sits above it.
    public func rateScales(for parameters: [Parameter], layerDecay: Float) -> [Float] {
        var depth: [ObjectIdentifier: Int] = [:]
        if let embeddings { depth[ObjectIdentifier(embeddings)] = layers.count + 1 }
        for (i, layer) in layers.enumerated() {
            for p in layer.parameters { depth[ObjectIdentifier(p)] = layers.count - i }
        }
        return parameters.map { p in depth[ObjectIdentifier(p)].map { Float(pow(Double(layerDecay), Double($0))) } ?? 1 }
    }

    public var adapters: [LoRAAdapter] { layers.flatMap(\.adapters) }

    /// Folds LoRA adapters into the base weights.
    public func mergeAdapters() { for layer in layers { layer.mergeAdapters() } }

    /// The encoder as checkpoint tensors under Hugging Face names (norm weights as w), for `model.safetensors`.
    public func checkpointTensors() -> [(name: String, shape: [Int], values: [Float])] {
        let table = embeddings?.checkpointTensors()
            ?? [("embed_tokens.weight", [config.vocabSize, config.hiddenSize], tokens.table.dequantized())]
        return table + layers.flatMap { $0.baseParameters.flatMap { $0.checkpointTensors() } } + finalNorm.checkpointTensors()
    }

    // MARK: Forward and backward

    /// A forward's result: the final hidden states (after the last norm) and what the backward reads.
    public final class Pass: @unchecked Sendable {
        public let batch: PackedBatch
        /// (T, C) after the final norm.
        public let hidden: Tensor
        /// (T, C) the residual stream entering the final norm.
        let finalInput: Tensor
        /// One tape per trained layer, from `firstTrainedLayer` on.
        let tapes: [LayerTape]
        let context: StepContext
        let checkpointed: Bool
        /// The batch's token ids, packed (the embedding gradient scatters into their rows).
        let tokenIDs: [Int32]

        init(batch: PackedBatch, tokenIDs: [Int32], hidden: Tensor, finalInput: Tensor, tapes: [LayerTape],
             context: StepContext, checkpointed: Bool) {
            self.batch = batch
            self.tokenIDs = tokenIDs
            self.hidden = hidden
            self.finalInput = finalInput
            self.tapes = tapes
            self.context = context
            self.checkpointed = checkpointed
        }
    }

    /// The residual stream entering layer `firstTrainedLayer` for `sequences` (embedding and frozen layers, no
    /// dropout, nothing kept): what top:K caches once per text. (T, C) packed.
    public func frozenPrefix(_ sequences: [[Int32]], mode: AttentionMode, threads: Int = 1) throws(ModelError) -> Tensor {
        let batch = try pack(sequences)
        let context = StepContext(batch: batch, mode: mode, dropout: .none, seed: 0, threads: max(1, threads),
                                  rotary: rotary.covering(batch.maxLength), training: false, products: products)
        return runFrozen(embed(sequences, batch: batch), upTo: firstTrainedLayer, context: context)
    }

    /// Runs `sequences` (or, with `prefix`, the cached stream entering `firstTrainedLayer`) through the encoder.
    /// Dropout draws from `seed`; with `checkpointing`, only each trained layer's input is kept; without
    /// `keepTape` nothing is (an evaluation pass, which cannot be followed by a backward).
    public func forward(_ sequences: [[Int32]], prefix: Tensor? = nil, mode: AttentionMode, dropout: EncoderDropout = .none,
                        seed: UInt64 = 0, threads: Int = 1, checkpointing: Bool = false,
                        keepTape: Bool = true) throws(ModelError) -> Pass {
        let batch = try pack(sequences)
        let t = batch.tokens, h = config.hiddenSize
        let context = StepContext(batch: batch, mode: mode, dropout: dropout, seed: seed, threads: max(1, threads),
                                  rotary: rotary.covering(batch.maxLength), training: true, products: products)
        var x: Tensor
        if let prefix {
            guard prefix.count == t * h else {
                throw .shapeMismatch("cached states hold \(prefix.count / max(h, 1)) tokens, the batch has \(t)")
            }
            x = Tensor(copying: prefix.pointer, count: prefix.count)
        } else {
            x = embed(sequences, batch: batch)
            let frozen = StepContext(batch: batch, mode: mode, dropout: .none, seed: seed, threads: context.threads,
                                     rotary: context.rotary, training: false, products: products)
            x = runFrozen(x, upTo: firstTrainedLayer, context: frozen)
        }
        var tapes: [LayerTape] = []
        for layer in layers[firstTrainedLayer...] {
            let tape = LayerTape(input: Tensor(count: t * h))
            layer.forward(x.pointer, context: context, tape: tape)
            if keepTape { tapes.append(checkpointing ? LayerTape(input: tape.input) : tape) }
        }
        let finalInput = Tensor(copying: x.pointer, count: t * h)
        let hidden = Tensor(count: t * h)
        rmsNorm(x.pointer, rows: t, dim: h, scale: normScale(finalNorm), eps: config.rmsNormEps, out: hidden.pointer)
        return Pass(batch: batch, tokenIDs: sequences.flatMap { $0 }, hidden: hidden, finalInput: finalInput, tapes: tapes, context: context,
                    checkpointed: checkpointing)
    }

    /// Given dL/d(hidden) (T, C), accumulates every trained parameter's gradient; returns dL/d(the stream
    /// entering the first trained layer): the input embeddings' gradient when every layer trains.
    @discardableResult
    public func backward(_ pass: Pass, gradHidden: UnsafePointer<Float>) -> Tensor {
        precondition(pass.tapes.count == layers.count - firstTrainedLayer, "a backward needs a forward that kept its tape")
        let batch = pass.batch, t = batch.tokens, h = config.hiddenSize
        let dx = Tensor(count: t * h)
        rmsNormBackward(pass.finalInput.pointer, rows: t, dim: h, scale: normScale(finalNorm), eps: config.rmsNormEps,
                        gradOut: gradHidden, gradIn: dx.pointer, gradScale: finalNorm.gradient?.pointer)
        for (i, layer) in layers[firstTrainedLayer...].enumerated().reversed() {
            var tape = pass.tapes[i]
            if !tape.full {
                // Activation checkpointing: the layer's forward again from its kept input, same dropout draws.
                let full = LayerTape(input: Tensor(count: t * h))
                let x = Tensor(copying: tape.input.pointer, count: t * h)
                layer.forward(x.pointer, context: pass.context, tape: full)
                tape = full
            }
            layer.backward(dx.pointer, context: pass.context, tape: tape)
        }
        if firstTrainedLayer == 0, let gradient = embeddings?.gradient {
            // x₀ = E[id] · √C: dE[id] += dx₀ · √C.
            let normalizer = Float(Double(h).squareRoot())
            for (row, id) in pass.tokenIDs.enumerated() where !tokens.isEOI(id) {
                let dst = gradient.pointer + Int(id) * h, src = dx.pointer + row * h
                for j in 0..<h { dst[j] += src[j] * normalizer }
            }
        }
        return dx
    }

    // MARK: Pieces

    private func pack(_ sequences: [[Int32]]) throws(ModelError) -> PackedBatch {
        try PackedBatch(sequences: sequences, hiddenSize: config.hiddenSize, vocabularySize: config.vocabSize)
    }

    /// Embedding rows × √hidden (the normalizer rounded to float32 as transformers forms it), from the trained
    /// copy of the table when there is one.
    private func embed(_ sequences: [[Int32]], batch: PackedBatch) -> Tensor {
        let x = Tensor(count: batch.tokens * config.hiddenSize)
        tokens.embed(sequences.joined(), into: x.pointer, rows: embeddings.map { UnsafePointer($0.value.pointer) })
        return x
    }

    private func runFrozen(_ x: Tensor, upTo end: Int, context: StepContext) -> Tensor {
        for layer in layers[..<end] {
            let tape = LayerTape(input: Tensor(count: x.count))
            layer.forward(x.pointer, context: context, tape: tape)
        }
        return x
    }
}

/// A training step allocates the same few dozen activation buffers (up to tens of MB each) every step. glibc
/// serves allocations above its mmap threshold with fresh mappings, so each step would fault in and zero every
/// page again (a fifth of a step's time, measured); raising the threshold and the trim limit keeps freed
/// buffers in the heap for the next step. A process-wide allocator setting, set once like BLAS's threads.
enum TrainingMemory {
    private static let configured: Void = {
        ck_keep_freed_buffers()
    }()

    static func configure() { _ = configured }
}
