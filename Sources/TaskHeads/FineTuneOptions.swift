import EncoderKernels
import Foundation
import GemmaModel
import GemmaTraining

/// Settings of a run that fine-tunes the encoder with its head (`train --finetune all | top:K | lora:R`).
public struct FineTuneOptions: Codable, Sendable, Equatable {
    public var scope: FineTuneScope = .all
    public var trainEmbeddings = false
    public var epochs = 3
    /// Peak rates: the pretrained encoder moves slowly, the fresh head fast (the paper's recipe).
    public var encoderLearningRate: Float = 2e-5
    public var headLearningRate: Float = 1e-3
    public var batchSize = 16
    /// Micro-batches per optimizer step.
    public var accumulation = 1
    public var weightDecay: Float = 0.01
    public var warmupFraction: Float = 0.1
    public var decay: DecayShape = .linear
    /// Largest global gradient norm before a step (0: no clipping).
    public var clipNorm: Float = 1.0
    public var dropout = EncoderDropout()
    public var maxLength = 256
    /// Batches of similar lengths (shuffled within pools of 50 batches, then the batches shuffled).
    public var lengthGrouped = true
    /// Epochs without a better validation score before stopping.
    public var patience = 2
    public var seed: UInt64 = 0
    /// Steps between checkpoints (0: only at the end of each epoch).
    public var checkpointEvery = 0
    /// Keep only each layer's input and recompute the rest in the backward (bounded memory on long inputs).
    public var activationCheckpointing = false
    public var attention: AttentionMode = .bidirectional
    /// How the head starts. Optional so that runs recorded before the choice existed decode (as `.random`,
    /// what they did).
    public var headInit: HeadInit? = .probe
    /// The encoder's Linear products: nil or .f32 exact, .bf16 with f32 master weights and sums (optional so
    /// that runs recorded before the choice existed decode, as the f32 they ran).
    public var products: ProductPrecision?
    /// Layer-wise learning-rate decay (BEiT's convention, Bao et al. 2022; ELECTRA's is one exponent lower): layer
    /// i of L (0 the lowest) trains at the encoder rate · decay^(L − i), the embeddings at decay^(L + 1), the final
    /// norm and what sits above the encoder (Dense layers, a T5Gemma decoder) at the full rate, so the lower
    /// layers — the most general features — move least. nil: one rate for the whole encoder; 1 is stored as nil,
    /// so a run recorded with decay 1 and one recorded without it compare equal on `--resume`.
    public var layerDecay: Float? {
        didSet { if layerDecay == 1 { layerDecay = nil } }
    }
    /// Label smoothing ε of the classification loss (single-label classes only): each one-hot target mixed with
    /// the uniform distribution, as PyTorch's CrossEntropyLoss(label_smoothing:) — against a head that grows
    /// confident faster than it grows right. Validation loss stays the plain cross-entropy. nil: none; 0 is stored
    /// as nil, so runs recorded before the option compare equal on `--resume`.
    public var labelSmoothing: Float? {
        didSet { if labelSmoothing == 0 { labelSmoothing = nil } }
    }

    public init() {}

    /// `.probe`: the head first trained on the frozen encoder's states (the exact L2 fit for a linear head on
    /// fixed pooling, AdamW for an MLP head or attention pooling), then everything fine-tunes from there
    /// (linear probing then fine-tuning, Kumar et al. 2022: a random head's first large gradients are
    /// back-propagated into the pretrained encoder and distort its features before the head is any good).
    /// Used for per-row targets; rerank heads start random.
    public enum HeadInit: String, Codable, Sendable, CaseIterable {
        case probe, random
    }

    enum CodingKeys: String, CodingKey {
        case scope, trainEmbeddings = "train_embeddings", epochs, encoderLearningRate = "encoder_learning_rate"
        case headLearningRate = "head_learning_rate", batchSize = "batch_size", accumulation, weightDecay = "weight_decay"
        case warmupFraction = "warmup_fraction", decay, clipNorm = "clip_norm", dropout, maxLength = "max_length"
        case lengthGrouped = "length_grouped", patience, seed, checkpointEvery = "checkpoint_every"
        case activationCheckpointing = "activation_checkpointing", attention, headInit = "head_init", products
        case layerDecay = "layer_decay", labelSmoothing = "label_smoothing"
    }

    public func validate() throws(TrainingError) {
        guard epochs > 0, batchSize > 0, accumulation > 0, patience > 0, maxLength > 1 else {
            throw .invalidOption("epochs, batch size, accumulation, patience and max length must be positive")
        }
        guard encoderLearningRate > 0, headLearningRate > 0, clipNorm >= 0, weightDecay >= 0 else {
            throw .invalidOption("learning rates must be positive, clip norm and weight decay not negative")
        }
        if let layerDecay, !(layerDecay > 0 && layerDecay <= 1) {
            throw .invalidOption("layer decay \(layerDecay) must be in (0, 1]")
        }
        if let labelSmoothing, !(0..<1).contains(labelSmoothing) {
            throw .invalidOption("label smoothing \(labelSmoothing) must be in [0, 1)")
        }
        for rate in [dropout.attention, dropout.residual] where !(0..<1).contains(rate) {
            throw .invalidOption("encoder dropout \(rate) must be in [0, 1)")
        }
    }
}
