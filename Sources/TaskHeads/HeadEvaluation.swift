import Foundation

/// Multi-label quality: exact-match (subset) accuracy, and F1 per label averaged (macro) and pooled (micro).
public struct MultiLabelMetrics: Codable, Sendable, Equatable {
    public var subsetAccuracy: Double
    public var macroF1: Double
    public var microF1: Double

    /// `truth` and `predicted`: per example, the set of label indices.
    public init(truth: [Set<Int>], predicted: [Set<Int>], labels: Int) {
        subsetAccuracy = truth.isEmpty ? 0 : Double(zip(truth, predicted).filter { $0 == $1 }.count) / Double(truth.count)
        var tp = [Double](repeating: 0, count: labels), fp = tp, fn = tp
        for (t, p) in zip(truth, predicted) {
            for l in p { if t.contains(l) { tp[l] += 1 } else { fp[l] += 1 } }
            for l in t where !p.contains(l) { fn[l] += 1 }
        }
        let f1s = (0..<labels).compactMap { l -> Double? in
            let denominator = 2 * tp[l] + fp[l] + fn[l]
            return denominator > 0 ? 2 * tp[l] / denominator : nil
        }
        macroF1 = f1s.isEmpty ? 0 : f1s.reduce(0, +) / Double(f1s.count)
        let (sumTP, sumFP, sumFN) = (tp.reduce(0, +), fp.reduce(0, +), fn.reduce(0, +))
        microF1 = 2 * sumTP + sumFP + sumFN > 0 ? 2 * sumTP / (2 * sumTP + sumFP + sumFN) : 0
    }

    enum CodingKeys: String, CodingKey {
        case subsetAccuracy = "subset_accuracy", macroF1 = "macro_f1", microF1 = "micro_f1"
    }
}

/// A head's quality on labelled data.
public enum HeadEvaluation: Sendable, Equatable {
    case classification(ClassificationMetrics, labels: [String])
    case multiLabel(MultiLabelMetrics, labels: [String])
    /// One set of metrics per regression output.
    case regression([RegressionMetrics])
}

extension HeadPredictor {
    /// Predicts every row of `data` and scores the predictions against its labels. A label the head does not
    /// know is an error naming its line.
    public func evaluate(_ data: LabeledData, cache: TokenStateCache? = nil,
                         progress: ((Int, Int) -> Void)? = nil) throws -> HeadEvaluation {
        let config = head.config
        let predictions = try predict(data.texts, cache: cache, progress: progress)
        switch config.task {
        case .classification:
            let labels = config.labels ?? []
            guard case let .classes(truth, _) = try data.targets(classes: labels), !config.multiLabel else {
                let sets = try multiLabelTruth(data, labels: labels)
                let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
                let predicted = predictions.map { p -> Set<Int> in
                    guard case let .classes(_, chosen, _) = p else { return [] }
                    return Set(chosen.compactMap { index[$0] })
                }
                return .multiLabel(MultiLabelMetrics(truth: sets, predicted: predicted, labels: labels.count), labels: labels)
            }
            let index = Dictionary(uniqueKeysWithValues: labels.enumerated().map { ($1, $0) })
            let predicted = predictions.map { p -> Int in
                guard case let .classes(label, _, _) = p else { return 0 }
                return index[label] ?? 0
            }
            return .classification(ClassificationMetrics(truth: truth, predicted: predicted, classes: labels.count), labels: labels)
        case .regression:
            guard case let .values(truth) = data.labels else {
                throw HeadError.invalidData("\(data.path): the head is a regression head but the labels are classes")
            }
            let outputs = config.architecture.outputs
            for (row, values) in truth.enumerated() where values.count != outputs {
                throw HeadError.invalidData("\(data.path):\(data.lines[row]): \(values.count) targets, the head predicts \(outputs)")
            }
            let predicted = predictions.map { p -> [Double] in
                if case let .values(v) = p { return v }
                return []
            }
            return .regression((0..<outputs).map { j in
                RegressionMetrics(truth: truth.map { $0[j] }, predicted: predicted.map { $0[j] })
            })
        case .rerank:
            throw HeadError.invalidData("rerank heads are evaluated with eval-retrieval")
        }
    }

    private func multiLabelTruth(_ data: LabeledData, labels: [String]) throws -> [Set<Int>] {
        guard case let .multiLabel(y) = try data.targets(classes: labels) else {
            // Single labels against a multi-label head: each row's one label is its set.
            guard case let .classes(ids, _) = try data.targets(classes: labels) else { return [] }
            return ids.map { [$0] }
        }
        let c = labels.count
        return (0..<(y.count / max(c, 1))).map { row in Set((0..<c).filter { y[row * c + $0] == 1 }) }
    }
}
