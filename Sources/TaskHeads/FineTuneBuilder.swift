import Foundation
import GemmaEncoder
import GemmaModel
import GemmaTokenizer
import GemmaTraining

/// Trains a classification or regression head together with the encoder under it (`--finetune all | top:K |
/// lora:R`) and writes a head directory that carries the fine-tuned encoder (`encoder/`, a Hugging Face
/// directory), so `classify`, `eval` and `serve --head` use it without being told.
public enum FineTuneBuilder {
    public struct Run {
        public var plan: HeadTrainingPlan
        public var options: FineTuneOptions
        /// Where checkpoints go (and a resumed run reads them).
        public var checkpoint: URL?
        public var resume = false
        public var saveAdapter = false
        /// The tokenizer files the exported encoder carries, when the source has none of its own (a GGUF
        /// file): a directory with a tokenizer.json of the same vocabulary, checked token by token. Training
        /// then tokenizes with it too, so the exported encoder sees what it was trained on.
        public var tokenizerDirectory: URL?

        public init(plan: HeadTrainingPlan, options: FineTuneOptions) {
            self.plan = plan
            self.options = options
        }
    }

    /// Tokenizes, fine-tunes and writes `out`; returns the head written.
    public static func train(encoder: TextEncoder, modelName: String, train: LabeledData, valid: LabeledData?, run: Run,
                             out: URL, onStep: ((FineTuneStep) -> Void)? = nil,
                             onEpoch: ((EpochReport) -> Void)? = nil) throws -> HeadDirectory {
        var plan = run.plan
        plan.attention = run.options.attention
        var prepared = try HeadBuilder.prepare(train: train, valid: valid, plan: plan, dimension: encoder.hiddenSize,
                                               baseModel: .init(name: modelName, digest: ""))
        let (tokenizer, tokenizerDirectory) = try exportTokenizer(encoder: encoder, given: run.tokenizerDirectory)
        let model = try encoder.source.loadTrainable()
        let tuner = try EncoderFineTuner(model: model, architecture: prepared.config.architecture, options: run.options)
        func data(_ rows: LabeledData, _ targets: Targets) -> FineTuneData {
            let inputs = TextEncoder.tokenize(rows.texts, with: tokenizer, prompt: plan.prompt, maxLength: run.options.maxLength)
            return FineTuneData(sequences: inputs.map(\.ids), targets: targets)
        }
        let result = try tuner.run(train: data(prepared.train, prepared.trainTargets), valid: data(prepared.valid, prepared.validTargets),
                                   checkpoint: run.checkpoint, resume: run.resume, onStep: onStep, onEpoch: onEpoch)
        prepared.config.fineTuning = FineTuneSummary(options: run.options, trainRows: prepared.train.texts.count,
                                                     validRows: prepared.valid.texts.count, bestEpoch: result.bestEpoch,
                                                     epochs: result.epochs)
        let head = HeadDirectory(config: prepared.config, network: result.network)
        try head.write(to: out) { directory in
            try EncoderExport.write(model, attention: run.options.attention, tokenizerDirectory: tokenizerDirectory,
                                    baseModelName: modelName,
                                    adapterDirectory: run.saveAdapter ? directory.deletingLastPathComponent().appendingPathComponent("adapter") : nil,
                                    to: directory)
        }
        if let checkpoint = run.checkpoint { try? FileManager.default.removeItem(at: checkpoint) }
        return try HeadDirectory.read(out)
    }

    /// The tokenizer the run trains with and the directory whose tokenizer files the export copies: the
    /// source's own, or `given`'s after checking that its vocabulary is the source's, id for id. Checked
    /// before any training, so a GGUF source without a usable tokenizer fails in seconds.
    public static func exportTokenizer(encoder: TextEncoder, given: URL?) throws -> (GemmaTokenizer, URL) {
        guard let given else {
            guard let own = encoder.source.tokenizerDirectory,
                  FileManager.default.fileExists(atPath: own.appendingPathComponent("tokenizer.json").path) else {
                throw HeadError.invalidData("\(encoder.location.path) has no tokenizer.json for the exported encoder (a GGUF file keeps its vocabulary in its metadata): pass --tokenizer with a model or directory whose tokenizer.json has the same vocabulary (for Gemma 3: embeddinggemma-300m)")
            }
            return (encoder.tokenizer, own)
        }
        let tokenizer = try GemmaTokenizer.load(directory: given)
        let ours = encoder.tokenizer
        // Ids past the model's vocabulary may exist only as added tokens (EmbeddingGemma's tokenizer.json has one
        // more than Gemma 3's GGUF vocabulary); a text that produced one would be refused by the model by id.
        guard tokenizer.vocabularySize >= ours.vocabularySize else {
            throw HeadError.invalidData("\(given.path)/tokenizer.json has \(tokenizer.vocabularySize) tokens, fewer than the model's vocabulary of \(ours.vocabularySize)")
        }
        // SentencePiece's word marker ▁ is a space in llama.cpp's GGUF vocabularies: the same token.
        func normalized(_ token: String?) -> String? { token?.replacingOccurrences(of: "\u{2581}", with: " ") }
        for id in 0..<Int32(ours.vocabularySize) where normalized(tokenizer.token(for: id)) != normalized(ours.token(for: id)) {
            throw HeadError.invalidData("\(given.path)/tokenizer.json differs from the model's vocabulary at id \(id): '\(tokenizer.token(for: id) ?? "")' vs '\(ours.token(for: id) ?? "")'")
        }
        return (tokenizer, given)
    }
}
