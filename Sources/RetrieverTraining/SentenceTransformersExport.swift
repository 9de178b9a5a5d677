import AtomicFiles
import Foundation
import GemmaEncoder
import GemmaModel
import GemmaTraining
import ModelFormats
import TaskHeads

/// A trained bi-encoder written as a sentence-transformers model directory, the layout sentence-transformers,
/// TEI and our own loader read: the Hugging Face encoder at the root (config.json, model.safetensors,
/// tokenizer files), `modules.json`, `sentence_bert_config.json`, `config_sentence_transformers.json` (prompts,
/// cosine similarity), `1_Pooling/config.json`, one `N_Dense/` per Dense layer, and `N_Normalize/` when the
/// model normalizes. Written into a temporary sibling and swapped in whole.
public enum SentenceTransformersExport {
    public struct Settings: Sendable {
        public var attention: AttentionMode
        public var tokenizerDirectory: URL
        public var baseModelName: String
        public var prompts: [String: String]
        public var maxSequenceLength: Int
        /// LoRA runs: PEFT's adapter files also go to `adapter/` inside the directory.
        public var saveAdapter: Bool
        /// A record of the run, written as `gemma_encoder_training.json`.
        public var training: Data?

        public init(attention: AttentionMode, tokenizerDirectory: URL, baseModelName: String, prompts: [String: String],
                    maxSequenceLength: Int, saveAdapter: Bool = false, training: Data? = nil) {
            self.attention = attention
            self.tokenizerDirectory = tokenizerDirectory
            self.baseModelName = baseModelName
            self.prompts = prompts
            self.maxSequenceLength = maxSequenceLength
            self.saveAdapter = saveAdapter
            self.training = training
        }
    }

    public static func write(model: TrainableGemma, pipeline: TrainablePipeline, settings: Settings, to out: URL) throws {
        try createDestinationDirectory(out.deletingLastPathComponent())
        try AtomicDirectory.replace(out) { root in
            try EncoderExport.write(model, attention: settings.attention, tokenizerDirectory: settings.tokenizerDirectory,
                                    baseModelName: settings.baseModelName,
                                    adapterDirectory: settings.saveAdapter ? root.appendingPathComponent("adapter") : nil, to: root)
            var modules: [[String: Any]] = [["idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"]]
            func module(_ type: String, _ path: String) {
                modules.append(["idx": modules.count, "name": "\(modules.count)", "path": path, "type": "sentence_transformers.models.\(type)"])
            }
            module("Pooling", "1_Pooling")
            let pooling = pipeline.pooling
            var poolingConfig: [String: Any] = ["word_embedding_dimension": pooling.dimension, "include_prompt": pooling.includePrompt]
            for (key, mode) in [("pooling_mode_cls_token", Pooling.first), ("pooling_mode_mean_tokens", .mean),
                                ("pooling_mode_max_tokens", .max), ("pooling_mode_mean_sqrt_len_tokens", .meanSqrtLen),
                                ("pooling_mode_weightedmean_tokens", .weightedMean), ("pooling_mode_lasttoken", .last)] {
                poolingConfig[key] = pooling.modes.contains(mode)
            }
            try writeJSON(poolingConfig, root.appendingPathComponent("1_Pooling/config.json"))
            for layer in pipeline.dense {
                let path = "\(modules.count)_Dense"
                module("Dense", path)
                try writeJSON(["in_features": layer.inputDimension, "out_features": layer.outputDimension, "bias": layer.bias != nil,
                               "activation_function": layer.activation.rawValue], root.appendingPathComponent("\(path)/config.json"))
                var tensors = [("linear.weight", layer.weight.shape, layer.weight.value.array)]
                if let bias = layer.bias { tensors.append(("linear.bias", bias.shape, bias.value.array)) }
                try writeData(try SafetensorsWriter.encode(tensors, metadata: ["format": "pt"]),
                              root.appendingPathComponent("\(path)/model.safetensors"))
            }
            if pipeline.normalize {
                // The config.json sentence-transformers 6.2 saves (older releases ignore it): an empty directory
                // would not survive git or a Hub upload.
                let path = "\(modules.count)_Normalize"
                module("Normalize", path)
                try writeJSON(["module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"],
                              root.appendingPathComponent("\(path)/config.json"))
            }
            try writeJSON(modules, root.appendingPathComponent("modules.json"))
            try writeJSON(["max_seq_length": settings.maxSequenceLength, "do_lower_case": false],
                          root.appendingPathComponent("sentence_bert_config.json"))
            try writeJSON(["model_type": "SentenceTransformer", "prompts": settings.prompts, "default_prompt_name": NSNull(),
                           "similarity_fn_name": "cosine"], root.appendingPathComponent("config_sentence_transformers.json"))
            if let training = settings.training { try writeData(training, root.appendingPathComponent("gemma_encoder_training.json")) }
        }
    }

    private static func writeJSON(_ object: Any, _ url: URL) throws {
        try writeData(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), url)
    }

    private static func writeData(_ data: Data, _ url: URL) throws {
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try data.write(to: url)
        } catch { throw AtomicWriteError(error, path: url.path, step: .write) }
    }
}
