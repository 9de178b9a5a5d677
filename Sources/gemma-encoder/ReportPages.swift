import DocumentIndex
import Foundation
import Reports
import RetrieverTraining
import TaskHeads

/// The HTML reports the commands write (`Reports` draws them; this file says what goes in each): a training
/// run's loss and validation metric per epoch, an evaluation's confusion matrix and per-class precision,
/// recall and F1, a retrieval evaluation's table per mode and recall@k curve.
enum ReportPages {
    /// One epoch as a training report shows it.
    struct Epoch {
        var epoch: Int
        var trainLoss: Double
        var validLoss: Double?
        var metric: Double?
        var seconds: Double
    }

    /// `report.html` of a training run: what was trained, its epochs (plots and table), the best epoch, the
    /// settings (`settings`, the run's recorded configuration) and the figures as JSON (`data`).
    static func training(title: String, subtitle: String, metricName: String?, epochs: [Epoch], bestEpoch: Int,
                         settings: Data, data: Data) -> HTMLReport {
        var report = HTMLReport(title: title, subtitle: subtitle)
        let total = epochs.reduce(0) { $0 + $1.seconds }
        report.paragraph(String(format: "%d epochs in %.1f s; the best epoch (kept) is %d", epochs.count, total, bestEpoch)
                         + (bestEpoch == 0 ? " (the starting point: no epoch beat it on validation)." : "."))
        var losses = [SVGPlot.Series(name: "train loss", points: epochs.map { (Double($0.epoch), $0.trainLoss) })]
        if epochs.contains(where: { $0.validLoss != nil }) {
            losses.append(.init(name: "validation loss", points: epochs.compactMap { e in e.validLoss.map { (Double(e.epoch), $0) } }))
        }
        report.heading("Loss per epoch")
        report.plot(SVGPlot(title: "loss", xLabel: "epoch", yLabel: "loss", series: losses, xTicks: epochs.map { Double($0.epoch) }))
        if let metricName, epochs.contains(where: { $0.metric != nil }) {
            report.heading("Validation \(metricName) per epoch")
            report.plot(SVGPlot(title: metricName, xLabel: "epoch", yLabel: metricName,
                                series: [.init(name: metricName, points: epochs.compactMap { e in e.metric.map { (Double(e.epoch), $0) } })],
                                xTicks: epochs.map { Double($0.epoch) }))
        }
        report.heading("Epochs")
        report.table(id: "epochs", header: ["epoch", "train loss", "validation loss", metricName ?? "metric", "seconds"],
                     rows: epochs.map { e in
                         [String(e.epoch), Self.number(e.trainLoss), e.validLoss.map(Self.number) ?? "", e.metric.map(Self.number) ?? "",
                          String(format: "%.1f", e.seconds)]
                     })
        report.heading("Settings")
        report.settings(id: "settings", settings)
        report.embed(data)
        return report
    }

    /// A head's training report, from its head.json.
    static func training(head: HeadDirectory, out: String) throws -> HTMLReport {
        let config = head.config
        let summary: (best: Int, epochs: [EpochReport])? = config.fineTuning.map { ($0.bestEpoch, $0.epochs) }
            ?? config.training.map { ($0.bestEpoch, $0.epochs) }
        let metric: String? = switch config.task {
        case .rerank: "positive ranked first"
        case .classification: config.multiLabel ? nil : "accuracy"
        default: nil
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try encoder.encode(config)
        return training(title: "Training report: \(out)",
                        subtitle: "\(config.task.rawValue) head on \(config.baseModel.name)"
                            + (config.fineTuning != nil ? ", encoder fine-tuned" : ", frozen encoder"),
                        metricName: metric,
                        epochs: (summary?.epochs ?? []).map(Epoch.init),
                        bestEpoch: summary?.best ?? 0, settings: json, data: json)
    }

    /// A run's report from the summary it recorded (an embedding model's, a student's, a first-token ranker's).
    static func training<Summary: Encodable>(recorded summary: Summary, title: String, subtitle: String, metricName: String?,
                                             epochs: [Epoch], bestEpoch: Int) throws -> HTMLReport {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json = try encoder.encode(summary)
        return training(title: title, subtitle: subtitle, metricName: metricName, epochs: epochs, bestEpoch: bestEpoch, settings: json, data: json)
    }

    /// `eval --report`: the metrics, and for classification the confusion matrix (cells shaded by their share
    /// of the true label's rows) and each class's precision, recall, F1 and support.
    static func evaluation(_ result: HeadEvaluation, rows: Int, head: String, file: String, json: String) -> HTMLReport {
        var report = HTMLReport(title: "Evaluation report: \(head)", subtitle: "\(rows) rows of \(file)")
        report.embed(Data(json.utf8))
        switch result {
        case let .classification(m, labels):
            report.paragraph(String(format: "accuracy %.4f, macro-F1 %.4f", m.accuracy, m.macroF1))
            report.heading("Confusion matrix (rows: true label, columns: predicted)")
            let shares = m.confusion.map { row -> [Double] in
                let total = Double(row.reduce(0, +))
                return row.map { total > 0 ? Double($0) / total : 0 }
            }
            report.table(id: "confusion", header: ["true \\ predicted"] + labels, rows: zip(labels, m.confusion).map { [$0] + $1.map(String.init) },
                         shade: shares)
            report.heading("Per class")
            report.table(id: "per-class", header: ["label", "precision", "recall", "F1", "support"],
                         rows: labels.indices.map { c in
                             let s = Self.classScores(m.confusion, c)
                             return [labels[c], Self.number(s.precision), Self.number(s.recall), Self.number(s.f1), String(s.support)]
                         })
        case let .multiLabel(m, labels):
            report.paragraph(String(format: "%d labels: subset accuracy %.4f, macro-F1 %.4f, micro-F1 %.4f", labels.count,
                                    m.subsetAccuracy, m.macroF1, m.microF1))
        case let .regression(metrics):
            report.table(id: "regression", header: ["output", "Pearson", "Spearman", "RMSE"],
                         rows: metrics.enumerated().map { [String($0), Self.number($1.pearson), Self.number($1.spearman), Self.number($1.rmse)] })
        }
        return report
    }

    /// Precision, recall, F1 and support of class `c` from a confusion matrix (rows: truth).
    static func classScores(_ confusion: [[Int]], _ c: Int) -> (precision: Double, recall: Double, f1: Double, support: Int) {
        let tp = Double(confusion[c][c])
        let predicted = Double(confusion.reduce(0) { $0 + $1[c] }), support = confusion[c].reduce(0, +)
        let precision = predicted > 0 ? tp / predicted : 0, recall = support > 0 ? tp / Double(support) : 0
        let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
        return (precision, recall, f1, support)
    }

    /// `eval-retrieval --report`: a row per search mode and the recall@k curves.
    static func retrieval(_ metrics: [String: RetrievalMetrics], queries: Int, index: String, data: Data) -> HTMLReport {
        var report = HTMLReport(title: "Retrieval evaluation: \(index)", subtitle: "\(queries) queries")
        let modes = ["vector", "keyword", "hybrid", "reranked", "reranked_cross_only"].filter { metrics[$0] != nil }
        report.heading("Per mode")
        report.table(id: "modes", header: ["mode", "nDCG@10", "MRR@10", "Recall@1", "Recall@5", "Recall@10", "Recall@20", "Recall@100", "MAP@100"],
                     rows: modes.map { mode in
                         let m = metrics[mode]!
                         return [mode] + [m.ndcg10, m.mrr10, m.recall1, m.recall5, m.recall10, m.recall20, m.recall100, m.map100].map(Self.number)
                     })
        let ks = [1.0, 5, 10, 20, 100]
        report.heading("Recall@k")
        report.plot(SVGPlot(title: "recall@k", xLabel: "k", yLabel: "recall", series: modes.map { mode in
            let m = metrics[mode]!
            return .init(name: mode, points: zip(ks, [m.recall1, m.recall5, m.recall10, m.recall20, m.recall100]).map { ($0, $1) })
        }, xTicks: ks))
        report.embed(data)
        return report
    }

    static func number(_ x: Double) -> String { String(format: "%.4f", x) }

    /// Writes `report` to `path`, and says where.
    static func write(_ report: HTMLReport, to path: String) throws {
        try report.write(to: URL(fileURLWithPath: path))
        note("report: \(path)")
    }
}

extension ReportPages.Epoch {
    init(_ r: EpochReport) { self.init(epoch: r.epoch, trainLoss: r.trainLoss, validLoss: r.validLoss, metric: r.validAccuracy, seconds: r.seconds) }
    init(_ r: EmbeddingEpochReport) { self.init(epoch: r.epoch, trainLoss: r.trainLoss, validLoss: r.validLoss, metric: nil, seconds: r.seconds) }
}
