import Foundation

/// Classification quality: accuracy, macro-F1 (mean over classes of per-class F1) and the confusion matrix
/// (rows: true class, columns: predicted).
public struct ClassificationMetrics: Codable, Sendable, Equatable {
    public var accuracy: Double
    public var macroF1: Double
    public var confusion: [[Int]]

    public init(truth: [Int], predicted: [Int], classes: Int) {
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes)
        for (t, p) in zip(truth, predicted) { confusion[t][p] += 1 }
        self.confusion = confusion
        accuracy = truth.isEmpty ? 0 : Double(zip(truth, predicted).filter { $0 == $1 }.count) / Double(truth.count)
        // Classes absent from both truth and predictions are left out of the mean, as scikit-learn's
        // f1_score(average="macro") does only for labels it sees.
        var f1s: [Double] = []
        for c in 0..<classes {
            let tp = Double(confusion[c][c])
            let fp = Double((0..<classes).reduce(0) { $0 + confusion[$1][c] }) - tp
            let fn = Double(confusion[c].reduce(0, +)) - tp
            guard tp + fp + fn > 0 else { continue }
            f1s.append(2 * tp / (2 * tp + fp + fn))
        }
        macroF1 = f1s.isEmpty ? 0 : f1s.reduce(0, +) / Double(f1s.count)
    }

    enum CodingKeys: String, CodingKey { case accuracy, macroF1 = "macro_f1", confusion }
}

/// Regression quality: Pearson and Spearman correlation, root mean squared error.
public struct RegressionMetrics: Codable, Sendable, Equatable {
    public var pearson: Double
    public var spearman: Double
    public var rmse: Double

    public init(truth: [Double], predicted: [Double]) {
        pearson = Self.pearson(truth, predicted)
        spearman = Self.pearson(Self.ranks(truth), Self.ranks(predicted))
        rmse = truth.isEmpty ? 0 : (zip(truth, predicted).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } / Double(truth.count)).squareRoot()
    }

    static func pearson(_ x: [Double], _ y: [Double]) -> Double {
        let n = Double(x.count)
        guard n > 1 else { return 0 }
        let mx = x.reduce(0, +) / n, my = y.reduce(0, +) / n
        var sxy = 0.0, sxx = 0.0, syy = 0.0
        for (a, b) in zip(x, y) { sxy += (a - mx) * (b - my); sxx += (a - mx) * (a - mx); syy += (b - my) * (b - my) }
        return sxx > 0 && syy > 0 ? sxy / (sxx * syy).squareRoot() : 0
    }

    /// Ranks from 1, ties sharing their average rank (as scipy.stats.rankdata).
    static func ranks(_ x: [Double]) -> [Double] {
        let order = x.indices.sorted { x[$0] < x[$1] }
        var ranks = [Double](repeating: 0, count: x.count)
        var i = 0
        while i < order.count {
            var j = i
            while j + 1 < order.count, x[order[j + 1]] == x[order[i]] { j += 1 }
            for k in i...j { ranks[order[k]] = Double(i + j) / 2 + 1 }
            i = j + 1
        }
        return ranks
    }
}
