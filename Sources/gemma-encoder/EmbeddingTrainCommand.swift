import ArgumentParser
import Foundation
import GemmaEncoder
import GemmaTraining
import RetrieverTraining
import TaskHeads

/// What `train` trains: a head (classification, regression, rerank) or the encoder as a bi-encoder.
enum TrainTask: String, ExpressibleByArgument, CaseIterable {
    case classification, regression, rerank, embedding, distill
}

/// `train --task distill`'s own flags.
struct DistillFlags: ParsableArguments {
    @Option(help: "Distill: the teacher model whose embeddings the student (--model) learns; rerank with --loss margin-mse: the teacher reranker directory.")
    var teacher: String?

    @Option(name: .customLong("student-layers"), help: "Distill: build the student from this many of --model's own layers, evenly spaced (e.g. half of them).")
    var studentLayers: Int?

    @Option(help: "Distill: mse (every component, sentence-transformers' MSELoss) or cosine (1 − cosine).")
    var objective: DistillationOptions.Objective = .mse
}

extension DistillationOptions.Objective: ExpressibleByArgument {}

/// `train --task embedding`'s own flags; the encoder's (scope, rate, dropout, schedule) are FineTuneFlags.
struct ContrastiveFlags: ParsableArguments {
    @Option(help: "Embedding: multiplies cosines before the softmax (1 / temperature).")
    var scale: Double = 20

    @Flag(help: "Embedding: add the positives-to-anchors direction to the multiple-negatives loss (averaged).")
    var symmetric = false

    @Option(help: "Embedding: Matryoshka dimensions, comma-separated (e.g. 768,512,256,128): the loss summed over each leading slice.")
    var matryoshka: String?

    @Option(name: .customLong("mini-batch-size"), help: "Embedding: texts per forward pass; a larger --batch-size is gradient-cached (same gradients, memory of one mini-batch).")
    var miniBatchSize: Int?

    @Option(name: .customLong("query-prompt"), help: "Embedding: the model prompt for queries and anchors (default: its 'query' prompt, if it has one).")
    var queryPrompt: String?

    @Option(name: .customLong("document-prompt"), help: "Embedding: the model prompt for positives, negatives and scored pairs (default: its 'document' prompt, if any).")
    var documentPrompt: String?

    func dimensions() throws -> [Int] {
        guard let matryoshka else { return [] }
        let values = matryoshka.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !values.isEmpty, values.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--matryoshka takes positive dimensions separated by commas, e.g. 768,512,256,128")
        }
        return values.map { $0! }
    }
}

extension TrainCommand {
    /// The encoder's settings for embedding training and distillation: the fine-tuning flags, every layer by
    /// default, one epoch of batches of 32 unless told otherwise.
    func encoderTrainingOptions() throws -> FineTuneOptions {
        var options = try fineTuneOptions()
        if finetune.finetune == "none" { options.scope = .all }
        options.epochs = epochs ?? 1
        options.batchSize = batchSize ?? 32
        return options
    }

    func epochLine(_ report: EmbeddingEpochReport, of epochs: Int) -> String {
        String(format: "epoch %d/%d  train loss %.6f", report.epoch, epochs, report.trainLoss)
            + (report.validLoss.map { String(format: "  valid loss %.6f", $0) } ?? "") + String(format: "  (%.1f s)", report.seconds)
    }

    /// A student trained to reproduce a teacher's embeddings of the texts in --data, written as a
    /// sentence-transformers directory at --out.
    func distill() throws {
        do {
            guard let teacherName = distillation.teacher else { fail("--task distill needs --teacher") }
            let rows = try JSONLines.read(path: data)
            let texts = try rows.map { row -> String in
                guard let text = row.object[fields.textField] as? String, !text.isEmpty else {
                    throw InputError(description: "\(data):\(row.line): missing, empty or non-string field \"\(fields.textField)\"")
                }
                return text
            }
            let teacher = try TextEncoder(model: teacherName)
            let student = try model.load()
            var options = DistillationOptions()
            options.encoder = try encoderTrainingOptions()
            options.objective = distillation.objective
            var run = DistillationBuilder.Run(options: options)
            run.studentLayers = distillation.studentLayers
            run.validFraction = validFraction
            run.tokenizerDirectory = try tokenizerDirectory()
            run.checkpoint = URL(fileURLWithPath: out + ".checkpoint")
            run.resume = finetune.resume
            if prompt.noPrompt {
                run.prompts = [nil]
            } else if let name = prompt.prompt {
                run.prompts = [try teacher.prompt(named: name)]
            } else if let text = prompt.promptText {
                run.prompts = [text]
            } else {
                let named = ["query", "document"].compactMap { teacher.prompts[$0] }
                run.prompts = named.isEmpty ? [nil] : named
            }
            let progress = StepProgress()
            let summary = try DistillationBuilder.train(
                teacher: teacher, teacherName: teacherName, student: student, studentName: model.model, texts: texts, run: run,
                cache: noCache ? nil : TokenStateCache(), out: URL(fileURLWithPath: out), onStep: progress.update,
                onEpoch: { report in
                    progress.finish()
                    note(epochLine(report, of: options.encoder.epochs))
                }, progress: { note($0) })
            progress.finish()
            try ReportPages.write(try ReportPages.training(recorded: summary, title: "Training report: \(out)",
                                                           subtitle: "a student of \(teacherName), MSE to the teacher's embeddings", metricName: nil,
                                                           epochs: summary.epochs.map(ReportPages.Epoch.init), bestEpoch: summary.bestEpoch),
                                  to: out + "/report.html")
            if summary.bestEpoch == 0 { note("no epoch beat the untrained student on the held-out texts: the student written is the untrained one") }
            note("wrote \(out): a student of \(teacherName) (\(summary.studentLayers.map { "\($0.count) of its layers: \($0.map(String.init).joined(separator: ","))" } ?? model.model)"
                 + (summary.projection ? ", a learned projection to the teacher's dimension" : "") + "), best epoch \(summary.bestEpoch)")
        } catch let error as ValidationError {
            throw error
        } catch {
            fail(error)
        }
    }

    /// A bi-encoder: the encoder and its pipeline fine-tuned with a contrastive loss, written as a
    /// sentence-transformers directory at --out.
    func trainEmbedding() throws {
        do {
            if poolingOption?.isLearned == true { fail("an embedding model pools without learned parameters: --pooling mean, first, last, …") }
            if prompt.prompt != nil || prompt.promptText != nil {
                fail("--task embedding prompts queries and documents apart: use --query-prompt and --document-prompt (or --no-prompt)")
            }
            if distillation.teacher != nil { fail("--teacher belongs to --task distill (and to --task rerank --loss margin-mse)") }
            let train = try ContrastiveData.read(path: data)
            let validation = try valid.map(ContrastiveData.read)
            let encoder = try model.load()
            var options = EmbeddingTrainingOptions()
            options.encoder = try encoderTrainingOptions()
            options.loss = ContrastiveLoss(scale: contrastive.scale, symmetric: contrastive.symmetric,
                                           matryoshkaDimensions: try contrastive.dimensions())
            options.miniBatchSize = contrastive.miniBatchSize
            var run = EmbeddingBuilder.Run(options: options)
            func named(_ given: String?, _ fallback: String) throws -> String? {
                if prompt.noPrompt { return nil }
                if let given { return try encoder.prompt(named: given) }
                return encoder.prompts[fallback]
            }
            run.queryPrompt = try named(contrastive.queryPrompt, "query")
            run.documentPrompt = try named(contrastive.documentPrompt, "document")
            run.pooling = poolingOption
            run.saveAdapter = finetune.saveAdapter
            run.tokenizerDirectory = try tokenizerDirectory()
            run.checkpoint = URL(fileURLWithPath: out + ".checkpoint")
            run.resume = finetune.resume
            let progress = StepProgress()
            let summary = try EmbeddingBuilder.train(
                encoder: encoder, modelName: model.model, train: train, valid: validation, run: run, out: URL(fileURLWithPath: out),
                onStep: progress.update,
                onEpoch: { report in
                    progress.finish()
                    note(epochLine(report, of: options.encoder.epochs))
                })
            progress.finish()
            try ReportPages.write(try ReportPages.training(recorded: summary, title: "Training report: \(out)",
                                                           subtitle: "an embedding model from \(model.model), \(summary.options.loss.kind.rawValue) loss",
                                                           metricName: nil, epochs: summary.epochs.map(ReportPages.Epoch.init),
                                                           bestEpoch: summary.bestEpoch),
                                  to: out + "/report.html")
            if summary.bestEpoch == 0 { note("no epoch beat the model as it came on the validation rows: the weights written are the starting ones (try a lower --encoder-lr or more rows)") }
            note("wrote \(out): a sentence-transformers model (\(summary.options.loss.kind.rawValue) loss, encoder \(summary.options.encoder.scope)"
                 + (summary.validRows != nil ? ", best epoch \(summary.bestEpoch)" : "") + "); embed, index build and serve take it as --model")
        } catch let error as ValidationError {
            throw error
        } catch {
            fail(error)
        }
    }
}
