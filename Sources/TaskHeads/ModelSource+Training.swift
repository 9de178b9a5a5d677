import Foundation
import GemmaEncoder
import GemmaModel
import GemmaTraining
import ModelFormats

extension ModelSource {
    /// The transformer of this source as a trainable model (f32 master weights from whatever is stored); with
    /// `layers`, a smaller model made of those of its layers (a distillation student).
    public func loadTrainable(layers: [Int]? = nil) throws -> TrainableGemma {
        func make(_ config: GemmaConfig, _ weights: some WeightProvider) throws -> TrainableGemma {
            guard let layers else { return try TrainableGemma(config: config, weights: weights) }
            return try TrainableGemma(config: try config.keepingLayers(layers), weights: LayerSubsetWeights(weights, layers: layers))
        }
        switch self {
        case .gguf(let url):
            let gguf = try GGUFFile(url: url)
            let config = try GemmaConfig(gguf: gguf)
            return try make(config, GGUFWeights(gguf, family: config.family))
        case .sentenceTransformers(let directory):
            let transformer = try SentenceTransformersLayout.load(directory: directory).transformerDirectory
            return try make(try GemmaConfig.load(transformer.appendingPathComponent("config.json")), SafetensorsWeights(url: transformer))
        case .huggingFace(let directory):
            if try T5GemmaConfig.isCheckpoint(directory) {
                // A T5Gemma checkpoint trains its encoder stack, written back into a copy of the whole checkpoint, so
                // the stack keeps its layers.
                guard layers == nil else {
                    throw HeadError.invalidData("\(directory.path): a student made of some of a T5Gemma encoder's layers cannot be written back into its checkpoint (distill into a Gemma instead)")
                }
                let config = try T5GemmaConfig.load(directory.appendingPathComponent("config.json"))
                let model = try make(config.encoder, T5GemmaStackWeights(SafetensorsCheckpoint(url: directory), stack: .encoder))
                model.t5GemmaCheckpoint = directory
                return model
            }
            return try make(try GemmaConfig.load(directory.appendingPathComponent("config.json")), SafetensorsWeights(url: directory))
        }
    }

    /// The directory whose tokenizer files a model trained from this source reuses (nil for a GGUF file,
    /// whose vocabulary lives in its metadata).
    public var tokenizerDirectory: URL? {
        switch self {
        case .gguf: nil
        case .sentenceTransformers(let directory): try? SentenceTransformersLayout.load(directory: directory).transformerDirectory
        case .huggingFace(let directory): directory
        }
    }
}

/// A fine-tuned encoder written as a standard Hugging Face directory that transformers loads and our loader
/// reads back: config.json (the attention mode recorded), model.safetensors (f32, checkpoint names, norm
/// weights as w), the source's tokenizer files; for LoRA, optionally PEFT's adapter files in a directory of
/// their own (beside the merged weights, transformers would apply the adapter a second time on loading).
public enum EncoderExport {
    static let tokenizerFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                                 "added_tokens.json", "generation_config.json"]

    /// Writes `directory` (created; it must not hold another model). LoRA adapters are merged into the weights
    /// written (the model keeps them merged afterwards); with `adapterDirectory` they are also saved there as
    /// PEFT files (adapter_config.json, adapter_model.safetensors) for the base model `baseModelName`.
    /// The encoder of a T5Gemma checkpoint is written back into a copy of the whole checkpoint: the same
    /// config.json, the encoder's tensors replaced (f32), every other tensor (the decoder, the LM head, T5Gemma 2's
    /// vision tower) copied in its stored dtype, so transformers loads it as it loaded the source.
    /// With `decoder` (first-token ranker training), the checkpoint's decoder tensors are replaced as well.
    public static func write(_ model: TrainableGemma, decoder: TrainableT5GemmaDecoder? = nil, attention: AttentionMode,
                             tokenizerDirectory: URL, baseModelName: String, adapterDirectory: URL?, to directory: URL) throws {
        func write(_ data: Data, _ name: String, in directory: URL = directory) throws {
            let file = directory.appendingPathComponent(name)
            do {
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                try data.write(to: file)
            } catch { throw HeadError.invalidData("\(file.path): \(error.localizedDescription)") }
        }
        if model.t5GemmaCheckpoint != nil, adapterDirectory != nil {
            throw HeadError.invalidData("PEFT adapter files for a T5Gemma encoder are not written (PEFT would put them on the decoder too): the merged encoder is in \(directory.path)")
        }
        if let adapterDirectory, case let .lora(rank, alpha, targets) = model.scope {
            let adapters = model.adapters.flatMap { a in
                [a.a, a.b].map { ("base_model.model." + $0.name, $0.shape, $0.value.array) }
            }
            try write(try SafetensorsWriter.encode(adapters, metadata: ["format": "pt"]), "adapter_model.safetensors",
                      in: adapterDirectory)
            let config: [String: Any] = [
                "peft_type": "LORA", "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0, "bias": "none",
                "target_modules": targets.map { $0.module.split(separator: ".").last.map(String.init)! },
                "task_type": "FEATURE_EXTRACTION", "base_model_name_or_path": baseModelName, "fan_in_fan_out": false,
                "inference_mode": true, "init_lora_weights": true, "use_rslora": false, "use_dora": false,
            ]
            try write(try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]),
                      "adapter_config.json", in: adapterDirectory)
        }
        model.mergeAdapters()
        if let checkpoint = model.t5GemmaCheckpoint {
            guard attention == .bidirectional else {
                throw HeadError.invalidData("a T5Gemma encoder is bidirectional in transformers: it cannot be exported trained with \(attention.rawValue) attention")
            }
            let source = try SafetensorsCheckpoint(url: checkpoint)
            let stack = try T5GemmaStackWeights(source, stack: .encoder)
            var tensors = model.checkpointTensors().map { t in
                (name: stack.prefix + T5GemmaStackWeights.checkpointName(t.name), shape: t.shape, values: t.values)
            }
            if let decoder {
                let decoderStack = try T5GemmaStackWeights(source, stack: .decoder)
                tensors += decoder.checkpointTensors().map { (name: decoderStack.prefix + $0.name, shape: $0.shape, values: $0.values) }
            }
            let replaced = Set(tensors.map(\.name))
            let kept = try source.tensorNames.sorted().filter { !replaced.contains($0) }.map { name throws(FormatError) in try source.tensor(name) }
            try write(try Data(contentsOf: checkpoint.appendingPathComponent("config.json")), "config.json")
            try write(try SafetensorsWriter.encode(tensors, copying: kept, metadata: ["format": "pt"]), "model.safetensors")
        } else {
            try write(try model.config.huggingFaceConfigJSON(attention: attention), "config.json")
            try write(try SafetensorsWriter.encode(model.checkpointTensors(), metadata: ["format": "pt"]), "model.safetensors")
        }
        for name in tokenizerFiles {
            let from = tokenizerDirectory.appendingPathComponent(name)
            guard FileManager.default.fileExists(atPath: from.path) else { continue }
            do { try FileManager.default.copyItem(at: from, to: directory.appendingPathComponent(name)) } catch {
                throw HeadError.invalidData("\(from.path): cannot copy into the exported encoder: \(error.localizedDescription)")
            }
        }
    }
}
