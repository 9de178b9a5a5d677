import AtomicFiles
import Foundation
import GemmaEncoder
import GemmaModel
import GemmaTraining
import ModelFormats

/// What a first-token ranker was trained with, beside its checkpoint (`first_token_ranker.json`): `rerank --reranker DIR`
/// scores with the same token, template and maximum length without being told.
public struct FirstTokenRankerConfig: Codable, Sendable, Equatable {
    public var token: String
    public var tokenID: Int32
    public var template: String
    public var maxLength: Int
    public var loss: RankingLoss
    public var fineTuning: FineTuneSummary

    public static let fileName = "first_token_ranker.json"

    enum CodingKeys: String, CodingKey {
        case token, tokenID = "token_id", template, maxLength = "max_length", loss, fineTuning = "fine_tuning"
    }

    /// The config in `directory`, nil when it has none (any other T5Gemma checkpoint).
    public static func read(_ directory: URL) throws -> FirstTokenRankerConfig? {
        let url = directory.appendingPathComponent(fileName)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        do throws(FormatError) { return try JSONFile.decode(FirstTokenRankerConfig.self, from: url) } catch {
            throw HeadError.invalidHead("\(error)")
        }
    }
}

extension RerankerBuilder {
    /// RankT5-style ranker training (`train --task rerank --scoring first-token:TOKEN` on a T5Gemma checkpoint): the
    /// encoder and the decoder fine-tuned together so that the first decoder step's logit of `token` ranks each group's
    /// positive first, with the ranking loss of `plan`. Written to `out` (atomically) as a T5Gemma checkpoint — a copy
    /// of the source with both stacks replaced, which transformers loads as it loaded the source — with
    /// `first_token_ranker.json`, for `rerank --reranker OUT`.
    public static func fineTuneFirstToken(encoder: TextEncoder, modelName: String, token: String, examples: [RerankExample],
                                          valid: [RerankExample]?, plan: RerankerTrainingPlan, run: FineTuneBuilder.Run, out: URL,
                                          onStep: ((FineTuneStep) -> Void)? = nil,
                                          onEpoch: ((EpochReport) -> Void)? = nil) throws -> FirstTokenRankerConfig {
        guard case .huggingFace(let directory) = encoder.source, try T5GemmaConfig.isCheckpoint(directory) else {
            throw HeadError.invalidData("\(encoder.location.path): --scoring first-token trains a T5Gemma checkpoint's encoder and decoder (model_type t5gemma or t5gemma2)")
        }
        guard plan.attention == .bidirectional else {
            throw HeadError.invalidData("a T5Gemma encoder is bidirectional: --attention \(plan.attention.rawValue) does not apply to --scoring first-token")
        }
        guard !plan.fuseSimilarity else { throw HeadError.invalidData("--fuse-similarity does not apply to --scoring first-token") }
        guard !run.saveAdapter else { throw HeadError.invalidData("--save-adapter does not apply to --scoring first-token (the decoder trains whole)") }
        let id: Int32
        do throws(EncoderError) { id = try FirstTokenScorer.tokenID(token, tokenizer: encoder.tokenizer) } catch {
            throw HeadError.invalidData("\(error)")
        }
        let (trainData, validData, rows, tokenizerDirectory, _) = try groups(encoder: encoder, examples: examples, valid: valid, plan: plan, run: run)
        let model = try encoder.source.loadTrainable()
        let decoder = try TrainableT5GemmaDecoder(directory: directory, token: Int(id))
        var options = run.options
        options.attention = plan.attention
        // The head network is not used (the decoder scores): the smallest one keeps the run's checkpoints small.
        let unused = HeadArchitecture(inputDimension: encoder.hiddenSize, outputs: 1, pooling: .mean, attentionHeads: 1,
                                      hiddenSize: nil, dropout: 0, hiddenDropout: 0)
        let tuner = try EncoderFineTuner(model: model, architecture: unused, options: options, scorer: decoder)
        let result = try tuner.run(train: trainData, valid: validData, checkpoint: run.checkpoint, resume: run.resume,
                                   onStep: onStep, onEpoch: onEpoch)
        let config = FirstTokenRankerConfig(token: token, tokenID: id, template: plan.template.text, maxLength: plan.maxLength, loss: plan.loss,
                                            fineTuning: FineTuneSummary(options: options, trainRows: rows.train, validRows: rows.valid,
                                                                        bestEpoch: result.bestEpoch, epochs: result.epochs))
        try createDestinationDirectory(out.deletingLastPathComponent())
        try AtomicDirectory.replace(out) { temporary in
            try EncoderExport.write(model, decoder: decoder, attention: plan.attention, tokenizerDirectory: tokenizerDirectory,
                                    baseModelName: modelName, adapterDirectory: nil, to: temporary)
            let json = JSONEncoder()
            json.outputFormatting = [.prettyPrinted, .sortedKeys]
            let file = temporary.appendingPathComponent(FirstTokenRankerConfig.fileName)
            do { try json.encode(config).write(to: file) } catch { throw AtomicWriteError(error, path: file.path, step: .write) }
        }
        if let checkpoint = run.checkpoint { try? FileManager.default.removeItem(at: checkpoint) }
        return config
    }
}
