import ArgumentParser
import EncoderKernels
import Foundation
import GemmaEncoder
import GemmaTraining
import TaskHeads

extension DecayShape: ExpressibleByArgument {}

/// `train`'s flags for fine-tuning the encoder itself (the Gemma Encoder paper's recipe).
struct FineTuneFlags: ParsableArguments {
    @Option(help: "What of the encoder trains: none (frozen, token states cached), all, top:K (the last K layers), lora:R (rank-R adapters).")
    var finetune = "none"

    @Option(name: .customLong("lora-alpha"), help: "LoRA scaling alpha (the update is scaled by alpha / R; default 2R).")
    var loraAlpha: Float?

    @Option(name: .customLong("lora-targets"), help: "Projections that get LoRA adapters, comma-separated from q,k,v,o,gate,up,down.")
    var loraTargets = "q,k,v,o,gate,up,down"

    @Flag(name: .customLong("train-embeddings"), help: "Also train the token embeddings (frozen otherwise).")
    var trainEmbeddings = false

    @Option(name: .customLong("encoder-lr"), help: "Peak learning rate of the encoder (the head's is --lr).")
    var encoderLearningRate: Float = 2e-5

    @Option(name: .customLong("layer-decay"), help: ArgumentHelp("Layer-wise learning-rate decay: layer i of L (0 the lowest) trains at --encoder-lr · d^(L − i), the embeddings at d^(L + 1); the final norm, Dense layers and a T5Gemma decoder at --encoder-lr (e.g. 0.9; default 1: one rate).", valueName: "d"))
    var layerDecay: Float = 1

    @Option(name: .customLong("label-smoothing"), help: ArgumentHelp("Label smoothing of the classification loss while fine-tuning (single-label classes): each target mixed with the uniform distribution, as PyTorch's CrossEntropyLoss(label_smoothing=ε) (e.g. 0.1; default 0).", valueName: "ε"))
    var labelSmoothing: Float = 0

    @Option(name: .customLong("head-init"), help: "How the head starts: probe (the head first trained on the frozen encoder — the exact linear fit, or AdamW for --hidden or attention pooling — then everything fine-tunes: probing then fine-tuning) or random.")
    var headInit: FineTuneOptions.HeadInit = .probe

    @Option(name: .customLong("attention-dropout"), help: "Encoder dropout on the attention weights while fine-tuning.")
    var attentionDropout: Float = 0

    @Option(name: .customLong("residual-dropout"), help: "Encoder dropout on each residual branch (after attention, after the MLP) while fine-tuning.")
    var residualDropout: Float = 0

    @Option(help: "Learning-rate decay after warm-up: linear or cosine.")
    var decay: DecayShape = .linear

    @Option(name: .customLong("clip-norm"), help: "Clip the global gradient norm to this (0: off).")
    var clipNorm: Float = 1

    @Option(help: "Micro-batches per optimizer step (gradient accumulation).")
    var accumulation = 1

    @Flag(name: .customLong("no-length-grouping"), help: "Plain shuffled batches instead of batches of similar lengths.")
    var noLengthGrouping = false

    @Option(name: .customLong("checkpoint-every"), help: "Write a checkpoint every N steps (one is always written after each epoch).")
    var checkpointEvery = 0

    @Flag(help: "Continue a run from the checkpoint beside --out (OUT.checkpoint), with the same flags.")
    var resume = false

    @Flag(name: .customLong("activation-checkpointing"), help: "Keep only each layer's input and recompute the rest in the backward pass (less memory, ~1/3 more compute).")
    var activationCheckpointing = false

    @Option(help: "Fine-tuning a GGUF model: a model (name or path) whose tokenizer.json has the same vocabulary, for the exported encoder and for training (e.g. embeddinggemma-300m for Gemma 3).")
    var tokenizer: String?

    @Option(name: .customLong("train-precision"), help: "The encoder's Linear products while training: f32 (exact, default), bf16 (bf16 operands, f32 sums and master weights; fast on CPUs with AMX or AVX512-BF16), or auto (bf16 where the CPU has bf16 units).")
    var trainPrecision: TrainPrecisionChoice = .f32

    @Flag(name: .customLong("save-adapter"), help: "LoRA: also write PEFT's adapter_config.json and adapter_model.safetensors into OUT/adapter (OUT/encoder holds the merged weights).")
    var saveAdapter = false

    func scope() throws -> FineTuneScope {
        var targets: [LoRATarget] = []
        for name in loraTargets.split(separator: ",") {
            guard let t = LoRATarget(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--lora-targets: unknown projection '\(name)' (choose from \(LoRATarget.allCases.map(\.rawValue).joined(separator: ",")))")
            }
            targets.append(t)
        }
        do { return try FineTuneScope(parsing: finetune, loraAlpha: loraAlpha, loraTargets: targets) } catch {
            throw ValidationError(error.description)
        }
    }

    func validate() throws {
        _ = try scope()
        if accumulation <= 0 || checkpointEvery < 0 { throw ValidationError("--accumulation must be positive and --checkpoint-every not negative") }
        for p in [attentionDropout, residualDropout] where !(0..<1).contains(p) {
            throw ValidationError("--attention-dropout and --residual-dropout must be in [0, 1)")
        }
        if !(layerDecay > 0 && layerDecay <= 1) { throw ValidationError("--layer-decay must be in (0, 1]") }
        if !(0..<1).contains(labelSmoothing) { throw ValidationError("--label-smoothing must be in [0, 1)") }
        if !(encoderLearningRate > 0) || clipNorm < 0 { throw ValidationError("--encoder-lr must be positive and --clip-norm not negative") }
    }
}

/// One line per step on a terminal: step, loss, tokens/s, ETA (nothing when stderr is piped).
final class StepProgress: @unchecked Sendable {
    private let enabled = isatty(2) != 0
    private let start = Date()
    private var firstStep: Int?

    func update(_ s: FineTuneStep) {
        guard enabled else { return }
        if firstStep == nil { firstStep = s.step - 1 }
        let done = s.step - firstStep!, elapsed = Date().timeIntervalSince(start)
        let eta = done > 0 ? elapsed / Double(done) * Double(s.totalSteps - s.step) : 0
        let line = String(format: "\rstep %d/%d  epoch %d  loss %.4f  %.0f tokens/s  ETA %@ ", s.step, s.totalSteps, s.epoch,
                          s.loss, s.tokensPerSecond, Progress.clock(eta))
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }
}

extension FineTuneOptions.HeadInit: ExpressibleByArgument {}

/// `--train-precision`: a product precision, or auto (bf16 where the CPU has bf16 units).
enum TrainPrecisionChoice: String, CaseIterable, ExpressibleByArgument {
    case f32, bf16, auto

    var resolved: ProductPrecision {
        switch self {
        case .f32: .f32
        case .bf16: .bf16
        case .auto: ProductPrecision.fastest
        }
    }
}
