import ArgumentParser
import Foundation
import GemmaEncoder
import GemmaTraining
import TaskHeads

extension HeadTask: ExpressibleByArgument {}
extension Pooling: ExpressibleByArgument {}
extension HeadSolver: ExpressibleByArgument {}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a classification or regression head on a frozen encoder (the Gemma Encoder recipe).",
        discussion: """
        Classification and regression rows: {"text": …, "label": …}. A string (or integer) label is a class, an \
        array of strings a set of classes (multi-label), a number or array of numbers a regression target. \
        Rerank rows: {"query", "positive", "negatives": […]} (see mine-negatives); each query and document make \
        one pair text (--template), trained with a listwise or pairwise loss over the positive and --negatives \
        sampled negatives. Token states are computed once and cached under the model cache (states/), so more \
        epochs, other poolings and re-runs cost no encoding. Without --valid, --valid-fraction of the rows \
        (seeded) is held out for early stopping or the choice of L2. The default head is linear, fitted exactly \
        (--solver lbfgs) with its L2 strength chosen on validation; --hidden, attention pooling or any AdamW \
        option train by AdamW instead.
        Example: gemma-encoder train --task classification --data corpora/debian-sections-train.jsonl \
        --valid corpora/debian-sections-valid.jsonl --pooling attention --out heads/sections
        """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var fields: LabeledFieldOptions
    @OptionGroup(title: "Fine-tuning the encoder") var finetune: FineTuneFlags
    @OptionGroup(title: "Training a bi-encoder (--task embedding)") var contrastive: ContrastiveFlags
    @OptionGroup(title: "Distilling a student (--task distill)") var distillation: DistillFlags

    @Option(help: "classification, regression, rerank, embedding (a bi-encoder trained with a contrastive loss) or distill (a student learning a teacher's embeddings).")
    var task: TrainTask

    /// The head's task (classification, regression, rerank); embedding trains no head.
    var headTask: HeadTask { HeadTask(rawValue: task.rawValue) ?? .classification }

    @Option(help: "Training rows (JSON Lines).")
    var data: String

    @Option(help: "Validation rows for early stopping (default: hold out --valid-fraction of --data).")
    var valid: String?

    @Option(name: .customLong("valid-fraction"), help: "Share of --data held out when --valid is not given.")
    var validFraction = 0.1

    @Option(name: .customLong("pooling"), help: "Pooling: mean, first, last, max or attention (learned, multi-head). Default: mean, attention for rerank (a reranker's head must find the few tokens that match the query); embedding and distill keep the model's own.")
    var poolingOption: Pooling?

    var pooling: Pooling { poolingOption ?? (task == .rerank ? .attention : .mean) }

    @Option(name: .customLong("attention-heads"), help: "Heads of attention pooling.")
    var attentionHeads = 4

    @Option(help: "Width of a GELU hidden layer (an MLP head); omit for a linear head.")
    var hidden: Int?

    @Option(help: """
        auto, lbfgs or adamw. auto: lbfgs for a linear head on mean, first, last or max pooling (classification \
        or regression) unless an AdamW option below is given, else adamw. lbfgs fits the L2-regularized linear \
        head exactly, the L2 strength chosen on the validation rows (held-out rows are folded back in for the \
        final fit); adamw trains by minibatch steps with dropout and early stopping.
        """)
    var solver: HeadSolver = .auto

    @Option(help: "lbfgs: the L2 strength λ (mean loss + λ/2·‖W‖² on unit-variance features) instead of choosing it on validation from 1 … 1e-5.")
    var l2: Double?

    @Option(help: "AdamW: dropout on the pooled vector during training (default 0.1).")
    var dropout: Float?

    @Option(name: .customLong("hidden-dropout"), help: "AdamW: dropout on the hidden layer (default: --dropout).")
    var hiddenDropout: Float?

    @Option(help: "Maximum epochs, early stopping may end sooner (default 20 for AdamW on a frozen encoder, 3 when fine-tuning).")
    var epochs: Int?

    var isFineTuning: Bool { finetune.finetune != "none" }

    @Option(help: "AdamW: peak learning rate, linear warm-up then linear decay (default 0.001).")
    var lr: Float?

    @Option(name: .customLong("batch-size"), help: "AdamW: examples per optimizer step (default 32).")
    var batchSize: Int?

    @Option(name: .customLong("weight-decay"), help: "AdamW: weight decay (default 0.01).")
    var weightDecay: Float?

    @Option(help: "AdamW: share of all steps spent warming the learning rate up (default 0.1).")
    var warmup: Float?

    @Option(help: "Epochs (lbfgs: L2 values) without a better validation score before stopping.")
    var patience = 3

    @Option(help: "Seed for initialization, shuffling, dropout and the held-out split.")
    var seed: UInt64 = 0

    @Flag(help: "Weight classes by n / (classes × count) against imbalance.")
    var balanced = false

    @OptionGroup var prompt: PromptOptions

    @Option(help: "Attention: bidirectional (encoder) or causal (decoder).")
    var attention: AttentionMode = .bidirectional

    @Option(help: "Rerank: negatives per positive in a training group.")
    var negatives = 3

    @Option(help: "Rerank: listwise (softmax over the group), pairwise (RankNet), bce (binary cross-entropy per pair), listnet (sentence-transformers' ListNetLoss), lambda (LambdaLoss, NDCG-Loss2++ weights) or margin-mse (learn --teacher's score margins).")
    var loss: RankingLoss = .listwise

    @Option(help: "Rerank: the pair template, with {query} and {document}. (default: EmbeddingGemma's query and document prompts; with --scoring, \(FirstTokenScorer.defaultTemplate))")
    var template: String?

    @Option(help: "Rerank with --finetune on a T5Gemma checkpoint: first-token:TOKEN trains the encoder and decoder so that the decoder's first-step logit of TOKEN (as the vocabulary spells it, or #ID) ranks the positive first (RankT5); OUT is then a T5Gemma checkpoint that rerank --reranker OUT, search --rerank and eval-retrieval --rerank load.")
    var scoring: String?

    @Option(name: .customLong("max-length"), help: "Tokens per text when fine-tuning; rerank: tokens per pair (the document is cut first).")
    var maxLength = 512

    @Flag(name: .customLong("fuse-similarity"), help: "Rerank: fuse the head's score with the bi-encoder cosine of query and document (embedded apart), weights fitted on the validation groups; with --finetune, the base model's cosine.")
    var fuseSimilarity = false

    @Flag(help: "Rerank with --fuse-similarity: train the head on top of the cosine, so it learns what the cosine gets wrong.")
    var residual = false

    @Flag(name: .customLong("no-first-stage-guard"), help: "Rerank: keep the head alone even when it ranks no better than the first-stage cosine on validation (by default the reranker then fuses with the cosine).")
    var noFirstStageGuard = false

    @Flag(name: .customLong("no-cache"), help: "Do not read or write the token-state cache.")
    var noCache = false

    @Option(help: "The head directory to write (replaced atomically).")
    var out: String

    func validate() throws {
        if negatives <= 0 || maxLength <= 8 { throw ValidationError("--negatives must be positive and --max-length above 8") }
        if !(validFraction > 0 && validFraction < 1) { throw ValidationError("--valid-fraction must be between 0 and 1") }
        if (epochs ?? 1) <= 0 || (batchSize ?? 1) <= 0 || patience <= 0 { throw ValidationError("--epochs, --batch-size and --patience must be positive") }
        if !((lr ?? 1) > 0) { throw ValidationError("--lr must be positive") }
        if let l2, !(l2 > 0 && l2.isFinite) { throw ValidationError("--l2 must be positive") }
        if let hidden, hidden <= 0 { throw ValidationError("--hidden must be positive") }
        for p in [dropout ?? 0, hiddenDropout ?? 0] where !(0..<1).contains(p) { throw ValidationError("dropout must be in [0, 1)") }
        if scoring != nil, task != .rerank { throw ValidationError("--scoring applies to --task rerank") }
        if finetune.labelSmoothing != 0, !isFineTuning || task != .classification {
            throw ValidationError("--label-smoothing applies to fine-tuning (--finetune all | top:K | lora:R) with --task classification")
        }
        if isFineTuning, solver == .lbfgs || l2 != nil {
            throw ValidationError("--finetune trains the encoder and its head with AdamW: --solver lbfgs and --l2 fit a head on a frozen encoder")
        }
        if solver == .lbfgs, let flag = adamWFlags.first {
            throw ValidationError("\(flag) is an AdamW option: it does not apply to --solver lbfgs")
        }
        if solver == .lbfgs, hidden != nil || pooling.isLearned || task == .rerank {
            throw ValidationError("--solver lbfgs fits a linear head on mean, first, last or max pooling (no --hidden), for classification or regression")
        }
        if l2 != nil, solver == .adamw || !adamWFlags.isEmpty || hidden != nil || pooling.isLearned || task == .rerank {
            throw ValidationError("--l2 is the lbfgs solver's L2 strength (a linear head on mean, first, last or max pooling, no AdamW options)")
        }
    }

    /// The AdamW options given: any of them asks for AdamW training (as before the exact linear fit existed).
    var adamWFlags: [String] {
        [("--dropout", dropout != nil), ("--hidden-dropout", hiddenDropout != nil), ("--epochs", epochs != nil), ("--lr", lr != nil),
         ("--batch-size", batchSize != nil), ("--weight-decay", weightDecay != nil), ("--warmup", warmup != nil)]
            .filter(\.1).map(\.0)
    }

    func run() throws {
        if task == .embedding { return try trainEmbedding() }
        if task == .distill { return try distill() }
        if task == .rerank { return try trainReranker() }
        do {
            let train = try LabeledData(path: data, task: headTask, textField: fields.textField, labelField: fields.labelField)
            let validation = try valid.map { try LabeledData(path: $0, task: headTask, textField: fields.textField, labelField: fields.labelField) }
            let encoder = try model.load()
            var plan = HeadTrainingPlan(task: headTask, pooling: pooling)
            plan.attentionHeads = attentionHeads
            plan.hiddenSize = hidden
            plan.dropout = dropout ?? plan.dropout
            plan.hiddenDropout = hiddenDropout ?? dropout ?? plan.hiddenDropout
            plan.balanced = balanced
            plan.validFraction = validFraction
            plan.attention = attention
            plan.prompt = try prompt.resolve(encoder, default: headTask.defaultPromptName)
            plan.options = trainingOptions
            if isFineTuning { return try fineTune(encoder: encoder, train: train, valid: validation, plan: plan) }

            let stages = StageProgress()
            let head = try FlagHints.validation(data: data) { try HeadBuilder.train(
                encoder: encoder, modelName: model.model, train: train, valid: validation, plan: plan,
                cache: noCache ? nil : TokenStateCache(), progress: stages.update,
                onEpoch: { report in
                    stages.finish()
                    note(epochLine(report, of: trainingOptions.epochs))
                }) }
            stages.finish()
            try head.write(to: URL(fileURLWithPath: out))
            try writeReport(head)
            let summary = head.config.training!
            let best = summary.epochs[summary.bestEpoch - 1]
            let kept = summary.l2.map { String(format: "lbfgs, l2 %.0e", $0) + (summary.refitRows.map { ", refit on all \($0) rows" } ?? "") }
                ?? "best epoch \(summary.bestEpoch)"
            note("wrote \(out): \(task.rawValue), \(head.config.labels.map { "\($0.count) labels" } ?? "\(head.config.architecture.outputs) output(s)"), "
                 + "\(pooling.rawValue) pooling, \(kept) (valid loss \(String(format: "%.4f", best.validLoss))"
                 + (best.validAccuracy.map { String(format: ", accuracy %.4f", $0) } ?? "") + ")")
        } catch let error as ValidationError {
            throw error
        } catch {
            fail(error)
        }
    }
}

extension TrainCommand {
    /// The encoder and the head trained together; checkpoints go to OUT.checkpoint.
    private func fineTune(encoder: TextEncoder, train: LabeledData, valid: LabeledData?, plan: HeadTrainingPlan) throws {
        let run = try fineTuneRun(plan: plan)
        let options = run.options
        let progress = StepProgress()
        let head = try FlagHints.validation(data: data) { try FineTuneBuilder.train(
            encoder: encoder, modelName: model.model, train: train, valid: valid, run: run, out: URL(fileURLWithPath: out),
            onStep: progress.update,
            onEpoch: { report in
                progress.finish()
                note(epochLine(report, of: options.epochs))
            }) }
        progress.finish()
        try writeReport(head)
        let summary = head.config.fineTuning!
        guard summary.bestEpoch > 0 else {
            note("wrote \(out): no fine-tuned epoch beat the linear probe on the untouched encoder on validation, so the head is that probe and \(out)/encoder the base model's weights (try a lower --encoder-lr, more data or more epochs)")
            return
        }
        let best = summary.epochs[summary.bestEpoch - 1]
        note("wrote \(out): \(task.rawValue) with the encoder fine-tuned (\(options.scope)), \(pooling.rawValue) pooling, "
             + "best epoch \(summary.bestEpoch) (valid loss \(String(format: "%.4f", best.validLoss))"
             + (best.validAccuracy.map { String(format: ", accuracy %.4f", $0) } ?? "") + "); encoder in \(out)/encoder")
    }

    /// A fine-tuning run from the flags: checkpoints beside --out (OUT.checkpoint), --resume, --save-adapter, --tokenizer.
    func fineTuneRun(plan: HeadTrainingPlan) throws -> FineTuneBuilder.Run {
        var run = FineTuneBuilder.Run(plan: plan, options: try fineTuneOptions())
        run.checkpoint = URL(fileURLWithPath: out + ".checkpoint")
        run.resume = finetune.resume
        run.saveAdapter = finetune.saveAdapter
        run.tokenizerDirectory = try tokenizerDirectory()
        return run
    }

    /// FineTuneOptions from the flags (classification, regression and embedding runs share them).
    func fineTuneOptions() throws -> FineTuneOptions {
        var options = FineTuneOptions()
        options.scope = try finetune.scope()
        options.trainEmbeddings = finetune.trainEmbeddings
        options.epochs = epochs ?? options.epochs
        options.encoderLearningRate = finetune.encoderLearningRate
        options.headLearningRate = lr ?? options.headLearningRate
        options.batchSize = batchSize ?? options.batchSize
        options.accumulation = finetune.accumulation
        options.weightDecay = weightDecay ?? options.weightDecay
        options.warmupFraction = warmup ?? options.warmupFraction
        options.decay = finetune.decay
        options.clipNorm = finetune.clipNorm
        options.dropout = EncoderDropout(attention: finetune.attentionDropout, residual: finetune.residualDropout)
        options.maxLength = maxLength
        options.lengthGrouped = !finetune.noLengthGrouping
        options.patience = patience
        options.seed = seed
        options.checkpointEvery = finetune.checkpointEvery
        options.activationCheckpointing = finetune.activationCheckpointing
        options.attention = attention
        options.headInit = finetune.headInit
        // FineTuneOptions stores 1 as nil, so the settings of earlier runs still match on --resume.
        options.layerDecay = finetune.layerDecay
        // 0 is stored as nil, as the layer decay's 1.
        options.labelSmoothing = finetune.labelSmoothing
        // f32 stays unrecorded, so the settings of runs from before the flag still match on --resume.
        let products = finetune.trainPrecision.resolved
        options.products = products == .f32 ? nil : products
        return options
    }

    /// --tokenizer's directory (a GGUF source's tokenizer files for the export).
    func tokenizerDirectory() throws -> URL? {
        try finetune.tokenizer.map { name in
            guard let directory = try ModelStore().source(name).tokenizerDirectory else {
                throw ValidationError("--tokenizer \(name): a GGUF file has no tokenizer.json; name a model directory")
            }
            return directory
        }
    }

    /// One epoch's (or, for the exact linear fit, one L2 value's) report line (classification and regression runs).
    private func epochLine(_ report: EpochReport, of epochs: Int) -> String {
        var line = report.l2.map { String(format: "l2 %.0e (%d iterations)  train loss %.4f  valid loss %.4f", $0,
                                          report.iterations ?? 0, report.trainLoss, report.validLoss) }
            ?? String(format: "epoch %d/%d  train loss %.4f  valid loss %.4f", report.epoch, epochs,
                      report.trainLoss, report.validLoss)
        if let accuracy = report.validAccuracy { line += String(format: "  valid accuracy %.4f", accuracy) }
        return line + String(format: "  (%.1f s)", report.seconds)
    }

    private func trainReranker() throws {
        do {
            guard !residual || fuseSimilarity else { fail("--residual trains the head on top of the cosine: it needs --fuse-similarity") }
            let examples = try RerankExample.read(path: data)
            let validation = try valid.map(RerankExample.read)
            for (path, rows) in [(data, examples), (valid ?? "", validation ?? [])] {
                if let row = rows.first(where: { $0.negatives.count < negatives }) {
                    fail("\(path):\(row.line): \(row.negatives.count) negatives, --negatives asks for \(negatives)")
                }
            }
            let encoder = try model.load()
            var plan = RerankerTrainingPlan()
            plan.pooling = pooling
            plan.attentionHeads = attentionHeads
            plan.hiddenSize = hidden
            plan.dropout = dropout ?? plan.dropout
            plan.hiddenDropout = hiddenDropout ?? dropout ?? plan.hiddenDropout
            plan.loss = loss
            plan.negatives = negatives
            plan.template = try PairTemplate(template ?? (scoring == nil ? PairTemplate.embeddingGemma.text : FirstTokenScorer.defaultTemplate))
            plan.maxLength = maxLength
            plan.validFraction = validFraction
            plan.attention = attention
            plan.fuseSimilarity = fuseSimilarity
            plan.residual = residual
            plan.guardFirstStage = !noFirstStageGuard
            if let teacher = distillation.teacher {
                guard loss == .marginMSE else { fail("--teacher with --task rerank distills a teacher reranker's scores: use --loss margin-mse") }
                plan.teacher = try RerankerOptions(reranker: teacher).load()
            } else if loss == .marginMSE {
                fail("--loss margin-mse learns a teacher reranker's scores: give --teacher RERANKER")
            }
            plan.options = trainingOptions
            if let scoring {
                guard isFineTuning else { fail("--scoring first-token trains the encoder and decoder: give --finetune all or top:K") }
                guard let token = firstTokenScoring(scoring) else { fail("--scoring must be first-token:TOKEN, not '\(scoring)'") }
                return try fineTuneFirstToken(encoder: encoder, token: token, examples: examples, validation: validation, plan: plan)
            }
            if isFineTuning { return try fineTuneReranker(encoder: encoder, examples: examples, validation: validation, plan: plan) }
            let stages = StageProgress()
            let head = try FlagHints.validation(data: data) { try RerankerBuilder.train(
                encoder: encoder, modelName: model.model, examples: examples, valid: validation, plan: plan,
                cache: noCache ? nil : TokenStateCache(), progress: stages.update,
                onEpoch: { report in
                    stages.finish()
                    note(rankingEpochLine(report, of: trainingOptions.epochs))
                }) }
            stages.finish()
            try head.write(to: URL(fileURLWithPath: out))
            try writeReport(head)
            let summary = head.config.training!
            note("wrote \(out): reranker, \(pooling.rawValue) pooling, \(loss.rawValue) loss, best epoch \(summary.bestEpoch) of \(summary.epochs.count)")
            fusionNote(head.config.fusion)
        } catch {
            fail(error)
        }
    }

    /// A cross-encoder trained with its encoder; the encoder goes to OUT/encoder, checkpoints to OUT.checkpoint.
    private func fineTuneReranker(encoder: TextEncoder, examples: [RerankExample], validation: [RerankExample]?,
                                  plan: RerankerTrainingPlan) throws {
        let run = try fineTuneRun(plan: HeadTrainingPlan(task: .rerank, pooling: pooling))
        let options = run.options
        let progress = StepProgress()
        let head = try FlagHints.validation(data: data) { try RerankerBuilder.fineTune(
            encoder: encoder, modelName: model.model, examples: examples, valid: validation, plan: plan, run: run,
            out: URL(fileURLWithPath: out), onStep: progress.update,
            onEpoch: { report in
                progress.finish()
                note(rankingEpochLine(report, of: options.epochs))
            }) }
        progress.finish()
        try writeReport(head)
        let summary = head.config.fineTuning!
        note("wrote \(out): reranker with the encoder fine-tuned (\(options.scope)), \(pooling.rawValue) pooling, \(loss.rawValue) loss, "
             + "best epoch \(summary.bestEpoch) of \(summary.epochs.count); encoder in \(out)/encoder")
        fusionNote(head.config.fusion)
    }

    /// `report.html` in the head directory just written.
    func writeReport(_ head: HeadDirectory) throws {
        try ReportPages.write(try ReportPages.training(head: head, out: out), to: out + "/report.html")
    }

    /// What a reranker's score fusion means for the user: the first-stage guard's fallback, or the fitted weights.
    func fusionNote(_ fusion: ScoreFusion?) {
        guard let f = fusion else { return }
        let source = f.similarityModel.map { " (the cosine of \($0.name))" } ?? ""
        if f.fallback == true {
            note(String(format: "the head alone ranked the positive first on %.3f of the validation groups, the first-stage cosine on %.3f: the reranker fuses them (%.4g × head + %.4g × cosine, %.3f)",
                        f.validTop1.cross, f.validTop1.similarity, f.crossWeight, f.similarityWeight, f.validTop1.fused)
                 + source + " so it never ranks below the first stage; more or harder training rows, --finetune, or --no-first-stage-guard change this")
        } else {
            note(String(format: "score = %.4g × head + %.4g × cosine", f.crossWeight, f.similarityWeight) + source
                 + String(format: "; positive first on %d validation groups: head %.3f, cosine %.3f, fused %.3f",
                          f.validGroups, f.validTop1.cross, f.validTop1.similarity, f.validTop1.fused))
        }
    }

    /// A rerank epoch's progress line.
    func rankingEpochLine(_ report: EpochReport, of epochs: Int) -> String {
        String(format: "epoch %d/%d  train loss %.4f  valid loss %.4f  positive ranked first %.4f  (%.1f s)",
               report.epoch, epochs, report.trainLoss, report.validLoss, report.validAccuracy ?? 0, report.seconds)
    }

    /// A T5Gemma checkpoint trained as a RankT5-style ranker; checkpoints go to OUT.checkpoint.
    private func fineTuneFirstToken(encoder: TextEncoder, token: String, examples: [RerankExample], validation: [RerankExample]?,
                                    plan: RerankerTrainingPlan) throws {
        let run = try fineTuneRun(plan: HeadTrainingPlan(task: .rerank, pooling: pooling))
        let options = run.options
        let progress = StepProgress()
        let ranker = try FlagHints.validation(data: data) { try RerankerBuilder.fineTuneFirstToken(
            encoder: encoder, modelName: model.model, token: token, examples: examples, valid: validation, plan: plan, run: run,
            out: URL(fileURLWithPath: out), onStep: progress.update,
            onEpoch: { report in
                progress.finish()
                note(rankingEpochLine(report, of: options.epochs))
            }) }
        progress.finish()
        try ReportPages.write(try ReportPages.training(recorded: ranker, title: "Training report: \(out)",
                                                       subtitle: "T5Gemma first-token ranker (token \(token)), \(loss.rawValue) loss",
                                                       metricName: "positive ranked first", epochs: ranker.fineTuning.epochs.map(ReportPages.Epoch.init),
                                                       bestEpoch: ranker.fineTuning.bestEpoch),
                              to: out + "/report.html")
        note("wrote \(out): T5Gemma checkpoint trained as a first-token ranker (\(options.scope), token \(token), id \(ranker.tokenID), "
             + "\(loss.rawValue) loss, best epoch \(ranker.fineTuning.bestEpoch) of \(ranker.fineTuning.epochs.count)); "
             + "score with rerank --reranker \(out)")
    }

    var trainingOptions: TrainingOptions {
        var options = TrainingOptions()
        // An AdamW option given means AdamW, as every head was trained before the exact linear fit.
        options.solver = solver == .auto && !adamWFlags.isEmpty ? .adamw : solver
        options.l2 = l2
        options.epochs = epochs ?? options.epochs
        options.learningRate = lr ?? options.learningRate
        options.batchSize = batchSize ?? options.batchSize
        options.weightDecay = weightDecay ?? options.weightDecay
        options.warmupFraction = warmup ?? options.warmupFraction
        options.patience = patience
        options.seed = seed
        return options
    }
}

extension HeadTask {
    /// The model prompt a head of this task uses unless told otherwise (`train`, `features`).
    var defaultPromptName: String? { self == .classification ? "Classification" : nil }
}

/// Field names of labelled rows.
struct LabeledFieldOptions: ParsableArguments {
    @Option(name: .customLong("text-field"), help: "Field holding the text.")
    var textField = "text"

    @Option(name: .customLong("label-field"), help: "Field holding the label.")
    var labelField = "label"
}

/// --prompt NAME / --prompt-text "…" / --no-prompt, resolved against a model's named prompts.
struct PromptOptions: ParsableArguments {
    @Option(help: "A prompt by name from the model's config_sentence_transformers.json (e.g. Classification).")
    var prompt: String?

    @Option(name: .customLong("prompt-text"), help: "A literal prompt prepended to every text.")
    var promptText: String?

    @Flag(name: .customLong("no-prompt"), help: "No prompt, even where the task has a default one.")
    var noPrompt = false

    func validate() throws {
        if [prompt != nil, promptText != nil, noPrompt].filter({ $0 }).count > 1 {
            throw ValidationError("give one of --prompt, --prompt-text and --no-prompt")
        }
    }

    /// The prompt text: the one asked for, else the model's prompt named `defaultName` when it has one.
    func resolve(_ encoder: TextEncoder, default defaultName: String?) throws -> String? {
        if noPrompt { return nil }
        if let promptText { return promptText }
        if let prompt { return try encoder.prompt(named: prompt) }
        return defaultName.flatMap { encoder.prompts[$0] }
    }
}

/// A progress line per stage ("encoding …", "training"), on a terminal only.
final class StageProgress: @unchecked Sendable {
    private var current: (stage: String, progress: Progress)?
    private let lock = NSLock()

    func update(_ stage: String, _ done: Int, _ total: Int) {
        lock.lock()
        defer { lock.unlock() }
        if current?.stage != stage {
            current?.progress.finish()
            current = (stage, Progress(total: total, label: stage))
        }
        current?.progress.update(done)
    }

    func finish() {
        lock.lock()
        defer { lock.unlock() }
        current?.progress.finish()
        current = nil
    }
}
