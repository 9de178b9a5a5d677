import EncoderKernels
import Foundation
import GemmaEncoder

extension RerankerBuilder {
    /// A cross-encoder whose encoder trains with its pair head (`train --task rerank --finetune …`): each row
    /// a group of pair texts (the positive, then `plan.negatives` negatives sampled once, seeded), the ranking
    /// loss over each group, the encoder exported to `encoder/` inside the reranker directory, which
    /// `rerank`, `search --rerank`, `eval-retrieval` and `serve` then load. With `plan.fuseSimilarity`, or when
    /// the first-stage guard finds the trained head ranking no better than the base model's cosine on the
    /// validation groups, the score fuses that cosine (`RerankerBuilder.fusion`), computed with the base model
    /// (`ScoreFusion.similarityModel`), never the fine-tuned encoder.
    public static func fineTune(encoder: TextEncoder, modelName: String, examples: [RerankExample], valid: [RerankExample]?,
                                plan: RerankerTrainingPlan, run: FineTuneBuilder.Run, out: URL,
                                onStep: ((FineTuneStep) -> Void)? = nil, onEpoch: ((EpochReport) -> Void)? = nil) throws -> HeadDirectory {
        guard !plan.residual else {
            throw HeadError.invalidData("--residual trains a head on top of a frozen encoder's cosine; a fine-tuned cross-encoder learns its score whole (--fuse-similarity still fuses the cosine after training)")
        }
        let (trainData, validData, rows, tokenizerDirectory, validGroups) = try groups(encoder: encoder, examples: examples, valid: valid, plan: plan, run: run)
        let architecture = HeadArchitecture(inputDimension: encoder.hiddenSize, outputs: 1, pooling: plan.pooling,
                                            attentionHeads: plan.attentionHeads, hiddenSize: plan.hiddenSize,
                                            dropout: plan.dropout, hiddenDropout: plan.hiddenDropout)
        let model = try encoder.source.loadTrainable()
        var options = run.options
        options.attention = plan.attention
        let tuner = try EncoderFineTuner(model: model, architecture: architecture, options: options)
        let result = try tuner.run(train: trainData, valid: validData, checkpoint: run.checkpoint, resume: run.resume,
                                   onStep: onStep, onEpoch: onEpoch)
        var config = HeadConfig(task: .rerank, architecture: architecture, baseModel: .init(name: modelName, digest: ""),
                                attention: plan.attention, prompt: nil)
        config.pairTemplate = plan.template.text
        config.maxLength = plan.maxLength
        config.rankingLoss = plan.loss
        config.fineTuning = FineTuneSummary(options: options, trainRows: rows.train, validRows: rows.valid,
                                            bestEpoch: result.bestEpoch, epochs: result.epochs)
        if plan.fuseSimilarity || plan.guardFirstStage {
            // The encoder passed in is the base model, untouched: fine-tuning trained its own copy.
            let queryPrompt = encoder.prompts["query"], documentPrompt = encoder.prompts["document"]
            let similarity = try encoder.similarities(groups: validGroups, queryPrompt: queryPrompt, documentPrompt: documentPrompt,
                                                      attention: plan.attention, progress: nil)
            config.fusion = fusion(cross: result.network.predict(try tuner.states(validData)), similarity: similarity, plan: plan,
                                   queryPrompt: queryPrompt, documentPrompt: documentPrompt)
            // A path is recorded absolute, so the reranker loads its base model from any working directory.
            let name = FileManager.default.fileExists(atPath: modelName) ? URL(fileURLWithPath: modelName).standardizedFileURL.path : modelName
            config.fusion?.similarityModel = .init(name: name, digest: try ModelFingerprint.digest(of: encoder.source))
        }
        let head = HeadDirectory(config: config, network: result.network)
        try head.write(to: out) { directory in
            try EncoderExport.write(model, attention: plan.attention, tokenizerDirectory: tokenizerDirectory, baseModelName: modelName,
                                    adapterDirectory: run.saveAdapter ? directory.deletingLastPathComponent().appendingPathComponent("adapter") : nil,
                                    to: directory)
        }
        if let checkpoint = run.checkpoint { try? FileManager.default.removeItem(at: checkpoint) }
        return try HeadDirectory.read(out)
    }

    /// The pair texts of fine-tuning, in groups: each row the positive, then `plan.negatives` negatives sampled
    /// once (seeded), tokenized with the tokenizer the exported model carries; the validation rows given or split off.
    static func groups(encoder: TextEncoder, examples: [RerankExample], valid: [RerankExample]?, plan: RerankerTrainingPlan,
                       run: FineTuneBuilder.Run) throws
        -> (train: FineTuneData, valid: FineTuneData, rows: (train: Int, valid: Int), tokenizerDirectory: URL,
            validGroups: [(query: String, documents: [String])]) {
        guard plan.negatives > 0 else { throw HeadError.invalidData("negatives per group must be positive, got \(plan.negatives)") }
        var rng = SeededGenerator(seed: run.options.seed &+ 0x5EED_0F)
        let (trainRows, validRows) = try split(examples, valid: valid, fraction: plan.validFraction, rng: &rng)
        for row in trainRows + validRows where row.negatives.count < plan.negatives {
            throw HeadError.invalidData("line \(row.line): \(row.negatives.count) negatives, fewer than the \(plan.negatives) per group asked for")
        }
        let (tokenizer, tokenizerDirectory) = try FineTuneBuilder.exportTokenizer(encoder: encoder, given: run.tokenizerDirectory)
        func data(_ rows: [RerankExample]) throws -> (FineTuneData, [(query: String, documents: [String])]) {
            var sequences: [[Int32]] = [], groups: [(query: String, documents: [String])] = []
            for row in rows {
                let documents = [row.positive] + Array(row.negatives.shuffled(using: &rng).prefix(plan.negatives))
                groups.append((row.query, documents))
                for document in documents {
                    sequences.append(TextEncoder.tokenizePair(query: row.query, document: document, template: plan.template,
                                                              maxLength: plan.maxLength, with: tokenizer).ids)
                }
            }
            return (FineTuneData(sequences: sequences,
                                 targets: try plan.loss.targets(groupSize: plan.groupSize, teacher: try plan.teacherScores(groups))), groups)
        }
        let train = try data(trainRows), valid = try data(validRows)
        return (train.0, valid.0, (trainRows.count, validRows.count), tokenizerDirectory, valid.1)
    }
}
