import Foundation
import GemmaEncoder
import GemmaModel
import GemmaTraining
import TaskHeads

/// `train --task embedding`: tokenizes the rows with the model's query and document prompts, fine-tunes the
/// encoder and its pipeline with a contrastive loss, and writes a sentence-transformers directory.
public enum EmbeddingBuilder {
    public struct Run: Sendable {
        public var options: EmbeddingTrainingOptions
        /// The prompts prepended to queries (anchors) and to documents (positives, negatives, scored pairs).
        public var queryPrompt: String?
        public var documentPrompt: String?
        /// Replaces the model's pooling mode (the paper's mean / first / last).
        public var pooling: Pooling?
        public var saveAdapter = false
        /// Where checkpoints go (removed once the model is written), and whether to continue from one.
        public var checkpoint: URL?
        public var resume = false
        /// Tokenizer files for a source without its own (a GGUF file); see `FineTuneBuilder.Run`.
        public var tokenizerDirectory: URL?

        public init(options: EmbeddingTrainingOptions) { self.options = options }
    }

    /// What `gemma_encoder_training.json` records.
    public struct Summary: Codable, Sendable {
        public var baseModel: String
        public var options: EmbeddingTrainingOptions
        public var queryPrompt: String?
        public var documentPrompt: String?
        public var trainRows: Int
        public var validRows: Int?
        public var bestEpoch: Int
        public var epochs: [EmbeddingEpochReport]

        enum CodingKeys: String, CodingKey {
            case baseModel = "base_model", options, queryPrompt = "query_prompt", documentPrompt = "document_prompt"
            case trainRows = "train_rows", validRows = "valid_rows", bestEpoch = "best_epoch", epochs
        }
    }

    public static func train(encoder: TextEncoder, modelName: String, train: ContrastiveData, valid: ContrastiveData?,
                             run: Run, out: URL, onStep: ((FineTuneStep) -> Void)? = nil,
                             onEpoch: ((EmbeddingEpochReport) -> Void)? = nil) throws -> Summary {
        if let valid, kind(valid) != kind(train) {
            throw RetrieverTrainingError.invalidData("the validation rows must be of the training rows' kind (query/positive or scored pairs)")
        }
        var options = run.options
        if case .scored = train { options.loss.kind = .cosent }
        var source = encoder.pipeline
        if let pooling = run.pooling { source.pooling.modes = [pooling] }
        let pipeline = try TrainablePipeline(source)
        let (tokenizer, tokenizerDirectory) = try FineTuneBuilder.exportTokenizer(encoder: encoder, given: run.tokenizerDirectory)
        let model = try encoder.source.loadTrainable()
        let tuner = try EmbeddingFineTuner(model: model, pipeline: pipeline, options: options)
        func examples(_ data: ContrastiveData) -> ContrastiveExamples {
            ContrastiveExamples(data, tokenizer: tokenizer, queryPrompt: run.queryPrompt, documentPrompt: run.documentPrompt,
                                maxLength: options.encoder.maxLength)
        }
        let result = try tuner.run(train: examples(train), valid: valid.map(examples), checkpoint: run.checkpoint, resume: run.resume,
                                   onStep: onStep, onEpoch: onEpoch)
        let summary = Summary(baseModel: modelName, options: options, queryPrompt: run.queryPrompt, documentPrompt: run.documentPrompt,
                              trainRows: train.count, validRows: valid?.count, bestEpoch: result.bestEpoch, epochs: result.epochs)
        let json = JSONEncoder()
        json.outputFormatting = [.prettyPrinted, .sortedKeys]
        // The model's own prompts, with the ones training used under the names retrieval looks up. A side trained
        // without a prompt (--no-prompt, or a model with none, e.g. GGUF) gets "" under its name: the base's prompt
        // would otherwise be kept there, and sentence-transformers (encode_query, prompt_name="query"), index build
        // and search would prepend a prompt the model was not trained with; "" is also what sentence-transformers
        // itself saves for a model without query/document prompts, and lets `embed --prompt query` open it.
        var prompts = encoder.prompts
        prompts["query"] = run.queryPrompt ?? ""
        prompts["document"] = run.documentPrompt ?? ""
        try SentenceTransformersExport.write(
            model: model, pipeline: pipeline,
            settings: .init(attention: options.encoder.attention, tokenizerDirectory: tokenizerDirectory, baseModelName: modelName,
                            prompts: prompts, maxSequenceLength: encoder.maxSequenceLength, saveAdapter: run.saveAdapter,
                            training: try json.encode(summary)),
            to: out)
        if let checkpoint = run.checkpoint { try? FileManager.default.removeItem(at: checkpoint) }
        return summary
    }

    private static func kind(_ data: ContrastiveData) -> Int {
        if case .scored = data { return 1 }
        return 0
    }
}
