import ArgumentParser
import Foundation
import GemmaEncoder
import TaskHeads

/// A head directory and the encoder it was trained on (or the one named, which must be the same model).
struct HeadOptions: ParsableArguments {
    @Option(help: "The head directory (from `train`).")
    var head: String

    @Option(help: "The base model (default: the one recorded in head.json; another model is an error).")
    var model: String?

    @Option(name: .customLong("precision"), help: "How Linear weights are stored and multiplied: f32, bf16, int8 or auto (see embed --help).")
    var precisionChoice: PrecisionChoice = .f32

    var precision: WeightPrecision { precisionChoice.resolved }

    func load() throws -> HeadPredictor {
        let directory = try HeadDirectory.read(URL(fileURLWithPath: head))
        // A fine-tuned head carries its encoder; otherwise the base model it names.
        let encoder = try TextEncoder(model: model ?? directory.encoderLocation?.path ?? directory.config.baseModel.name,
                                      precision: precision)
        return try HeadPredictor(head: directory, encoder: encoder)
    }
}

struct ClassifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classify",
        abstract: "Predict with a trained head: labels with probabilities, or regression values.",
        discussion: """
        Output rows: {"label", "scores": {label: probability}} (multi-label heads add "labels", every label at \
        or above 0.5), or {"value"} for regression (an array when the head predicts several values).
        Example: gemma-encoder classify --head heads/sections --text "a tiling window manager" --text "GNU chess"
        """)

    @OptionGroup var head: HeadOptions

    @Option(help: "A text to classify; repeat for several. Results go to stdout, one JSON object per line.")
    var text: [String] = []

    @Option(help: "JSON Lines input, a text per row.")
    var input: String?

    @Option(help: "Output file for --input (default stdout).")
    var output: String?

    @Option(name: .customLong("text-field"), help: "Field holding the text in --input rows.")
    var textField = "text"

    func validate() throws {
        guard text.isEmpty != (input == nil) else { throw ValidationError("give --text \"…\" (repeatable) or --input FILE.jsonl") }
    }

    func run() throws {
        do {
            let predictor = try head.load()
            let texts: [String]
            if let input {
                texts = try JSONLines.read(path: input).map { row in
                    guard let t = row.object[textField] as? String else {
                        throw InputError(description: "\(input):\(row.line): row has no string field \"\(textField)\"")
                    }
                    return t
                }
            } else {
                texts = text
            }
            let out = try AtomicOutput(path: output)
            let progress = Progress(total: input == nil ? 0 : texts.count, label: "classifying")
            let chunk = 512
            for start in stride(from: 0, to: texts.count, by: chunk) {
                let part = Array(texts[start..<min(start + chunk, texts.count)])
                for prediction in try predictor.predict(part) { out.write(predictionJSON(prediction) + "\n") }
                progress.update(start + part.count)
            }
            progress.finish()
            try out.commit()
        } catch {
            fail(error)
        }
    }
}

/// One prediction as the JSON object `classify` prints and the server returns.
func predictionObject(_ prediction: HeadPrediction) -> [String: Any] {
    switch prediction {
    case let .classes(label, labels, scores):
        var object: [String: Any] = ["label": label, "scores": scores]
        if labels != [label] || scores.count == 1 { object["labels"] = labels }
        return object
    case let .values(values):
        return ["value": values.count == 1 ? values[0] as Any : values]
    }
}

func predictionJSON(_ prediction: HeadPrediction) -> String {
    let data = (try? JSONSerialization.data(withJSONObject: predictionObject(prediction), options: [.sortedKeys])) ?? Data("{}".utf8)
    return String(decoding: data, as: UTF8.self)
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Score a trained head on labelled rows: accuracy, macro-F1 and the confusion matrix, or Pearson, Spearman and RMSE.",
        discussion: "Example: gemma-encoder eval --head heads/sections --data corpora/debian-sections-test.jsonl")

    @OptionGroup var head: HeadOptions
    @OptionGroup var fields: LabeledFieldOptions

    @Option(help: "Labelled rows (JSON Lines).")
    var data: String

    @Flag(help: "Print one JSON object instead of the report.")
    var json = false

    @Option(help: "Also write an HTML report here: the metrics, the confusion matrix and per-class precision, recall and F1.")
    var report: String?

    func run() throws {
        do {
            let predictor = try head.load()
            let rows = try LabeledData(path: data, task: predictor.head.config.task, textField: fields.textField,
                                       labelField: fields.labelField)
            let progress = Progress(total: rows.texts.count, label: "evaluating")
            let result = try predictor.evaluate(rows, progress: { done, _ in progress.update(done) })
            progress.finish()
            print(json ? evaluationJSON(result, rows: rows.texts.count) : evaluationReport(result, rows: rows.texts.count))
            if let report {
                try ReportPages.write(ReportPages.evaluation(result, rows: rows.texts.count, head: head.head, file: data,
                                                             json: evaluationJSON(result, rows: rows.texts.count)), to: report)
            }
        } catch {
            fail(error)
        }
    }

    private func evaluationJSON(_ result: HeadEvaluation, rows: Int) -> String {
        var object: [String: Any] = ["rows": rows]
        switch result {
        case let .classification(m, labels):
            object.merge(["accuracy": m.accuracy, "macro_f1": m.macroF1, "labels": labels, "confusion": m.confusion]) { $1 }
        case let .multiLabel(m, labels):
            object.merge(["subset_accuracy": m.subsetAccuracy, "macro_f1": m.macroF1, "micro_f1": m.microF1, "labels": labels]) { $1 }
        case let .regression(metrics):
            object["outputs"] = metrics.map { ["pearson": $0.pearson, "spearman": $0.spearman, "rmse": $0.rmse] }
        }
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }

    private func evaluationReport(_ result: HeadEvaluation, rows: Int) -> String {
        switch result {
        case let .classification(m, labels):
            var lines = [String(format: "rows %d  accuracy %.4f  macro-F1 %.4f", rows, m.accuracy, m.macroF1), "",
                         "confusion matrix (rows: true label, columns: predicted)"]
            let names = labels.enumerated().map { "\($0) \($1)" }
            let width = (names.map(\.count).max() ?? 0) + 1
            let cell = max(4, String(m.confusion.flatMap { $0 }.max() ?? 0).count + 1, String(labels.count - 1).count + 1)
            func pad(_ s: String) -> String { String(repeating: " ", count: max(0, cell - s.count)) + s }
            lines.append(String(repeating: " ", count: width) + labels.indices.map { pad(String($0)) }.joined())
            for (name, row) in zip(names, m.confusion) {
                lines.append(name.padding(toLength: width, withPad: " ", startingAt: 0) + row.map { pad(String($0)) }.joined())
            }
            return lines.joined(separator: "\n")
        case let .multiLabel(m, labels):
            return String(format: "rows %d  labels %d  subset accuracy %.4f  macro-F1 %.4f  micro-F1 %.4f", rows, labels.count,
                          m.subsetAccuracy, m.macroF1, m.microF1)
        case let .regression(metrics):
            return metrics.enumerated().map { j, m in
                String(format: "rows %d  output %d  Pearson %.4f  Spearman %.4f  RMSE %.4f", rows, j, m.pearson, m.spearman, m.rmse)
            }.joined(separator: "\n")
        }
    }
}
