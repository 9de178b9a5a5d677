import Foundation
import GemmaEncoder
import GemmaModel
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
        let model = try encoder.source.loadTrainable()
        let tuner = try EncoderFineTuner(model: model, architecture: prepared.config.architecture, options: run.options)
        func data(_ rows: LabeledData, _ targets: Targets) -> FineTuneData {
            FineTuneData(sequences: encoder.tokenize(rows.texts, prompt: plan.prompt, maxLength: run.options.maxLength).map(\.ids),
                         targets: targets)
        }
        let result = try tuner.run(train: data(prepared.train, prepared.trainTargets), valid: data(prepared.valid, prepared.validTargets),
                                   checkpoint: run.checkpoint, resume: run.resume, onStep: onStep, onEpoch: onEpoch)
        prepared.config.fineTuning = FineTuneSummary(options: run.options, trainRows: prepared.train.texts.count,
                                                     validRows: prepared.valid.texts.count, bestEpoch: result.bestEpoch,
                                                     epochs: result.epochs)
        let head = HeadDirectory(config: prepared.config, network: result.network)
        try head.write(to: out) { directory in
            try EncoderExport.write(model, attention: run.options.attention, tokenizerFrom: encoder.source,
                                    baseModelName: modelName, saveAdapter: run.saveAdapter, to: directory)
        }
        if let checkpoint = run.checkpoint { try? FileManager.default.removeItem(at: checkpoint) }
        return try HeadDirectory.read(out)
    }
}
