import Foundation
import GemmaEncoder

/// Labelled JSON Lines rows: a text and a label per row. A string (or integer, or boolean) label is a class,
/// an array of strings a set of classes (multi-label), a number or array of numbers a regression target.
public struct LabeledData: Sendable {
    public enum Labels: Sendable, Equatable {
        case single([String])
        case multi([[String]])
        case values([[Double]])
    }

    public var texts: [String]
    public var labels: Labels
    /// The 1-based line of each row, for error messages.
    public var lines: [Int]
    public var path: String

    public init(path: String, task: HeadTask, textField: String = "text", labelField: String = "label") throws {
        let rows = try JSONLines.read(path: path)
        guard !rows.isEmpty else { throw HeadError.invalidData("\(path): no rows") }
        self.path = path
        texts = []
        lines = []
        var single: [String] = [], multi: [[String]] = [], values: [[Double]] = []
        for row in rows {
            func bad(_ message: String) -> HeadError { .invalidData("\(path):\(row.line): \(message)") }
            guard let text = row.object[textField] as? String else { throw bad("missing or non-string field \"\(textField)\"") }
            guard let label = row.object[labelField], !(label is NSNull) else { throw bad("missing field \"\(labelField)\"") }
            texts.append(text)
            lines.append(row.line)
            switch task {
            case .classification:
                if let array = label as? [Any] {
                    guard let strings = array.map({ Self.className($0) }) as? [String] else {
                        throw bad("field \"\(labelField)\": a multi-label row needs an array of strings")
                    }
                    multi.append(strings)
                } else if let name = Self.className(label) {
                    single.append(name)
                } else {
                    throw bad("field \"\(labelField)\": a class label must be a string, an integer or an array of strings")
                }
                if !single.isEmpty, !multi.isEmpty { throw bad("mixes single labels and label arrays") }
            case .regression:
                let numbers = (label as? [Any] ?? [label]).map { ($0 as? NSNumber).flatMap { Self.isBoolean($0) ? nil : $0.doubleValue } }
                guard !numbers.isEmpty, numbers.allSatisfy({ $0?.isFinite == true }) else {
                    throw bad("field \"\(labelField)\": a regression target must be a finite number or an array of them")
                }
                if let first = values.first, first.count != numbers.count {
                    throw bad("field \"\(labelField)\": \(numbers.count) targets, earlier rows have \(first.count)")
                }
                values.append(numbers.map { $0! })
            case .rerank:
                throw bad("rerank data has its own format")
            }
        }
        labels = task == .regression ? .values(values) : multi.isEmpty ? .single(single) : .multi(multi)
    }

    private static func className(_ value: Any) -> String? {
        if let s = value as? String { return s }
        guard let n = value as? NSNumber else { return nil }
        if isBoolean(n) { return n.boolValue ? "true" : "false" }
        return n.doubleValue == n.doubleValue.rounded() ? String(n.intValue) : nil
    }

    /// JSONSerialization gives true/false as NSNumbers of ObjC type "c" (char).
    public static func isBoolean(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

    /// The rows at `indices`, in that order.
    public func subset(_ indices: [Int]) -> LabeledData {
        var copy = self
        copy.texts = indices.map { texts[$0] }
        copy.lines = indices.map { lines[$0] }
        switch labels {
        case let .single(l): copy.labels = .single(indices.map { l[$0] })
        case let .multi(l): copy.labels = .multi(indices.map { l[$0] })
        case let .values(v): copy.labels = .values(indices.map { v[$0] })
        }
        return copy
    }

    /// Regression targets' per-output mean and standard deviation (1 where a target is constant).
    public var targetStatistics: (mean: [Double], std: [Double])? {
        guard case let .values(v) = labels, let width = v.first?.count else { return nil }
        let n = Double(v.count)
        let mean = (0..<width).map { j in v.reduce(0) { $0 + $1[j] } / n }
        let std = (0..<width).map { j -> Double in
            let s = (v.reduce(0) { $0 + ($1[j] - mean[j]) * ($1[j] - mean[j]) } / n).squareRoot()
            return s > 0 ? s : 1
        }
        return (mean, std)
    }

    /// The distinct classes, sorted.
    public var classNames: [String] {
        switch labels {
        case let .single(l): return Array(Set(l)).sorted()
        case let .multi(l): return Array(Set(l.joined())).sorted()
        case .values: return []
        }
    }

    /// Targets against a fixed class list (a class outside it is an error naming the row).
    public func targets(classes: [String], balanced: Bool = false) throws -> Targets {
        let index = Dictionary(uniqueKeysWithValues: classes.enumerated().map { ($1, $0) })
        func lookup(_ name: String, _ row: Int) throws -> Int {
            guard let i = index[name] else {
                throw HeadError.invalidData("\(path):\(lines[row]): unknown label \"\(name)\" (the head knows \(classes.count) labels)")
            }
            return i
        }
        switch labels {
        case let .single(names):
            let ids = try names.enumerated().map { try lookup($1, $0) }
            var weights = [Float](repeating: 1, count: classes.count)
            if balanced {
                // scikit-learn's "balanced": n / (classes × count of the class).
                var counts = [Int](repeating: 0, count: classes.count)
                for i in ids { counts[i] += 1 }
                weights = counts.map { $0 == 0 ? 1 : Float(ids.count) / Float(classes.count * $0) }
            }
            return .classes(ids, weights: weights)
        case let .multi(sets):
            var y = [Float](repeating: 0, count: sets.count * classes.count)
            for (row, set) in sets.enumerated() { for name in set { y[row * classes.count + (try lookup(name, row))] = 1 } }
            return .multiLabel(y)
        case let .values(v):
            return .values(v.flatMap { $0.map(Float.init) })
        }
    }

    /// Regression targets standardized with the given statistics (those of the training split).
    public func standardizedTargets(mean: [Double], std: [Double]) throws -> Targets {
        guard case let .values(v) = labels else { throw HeadError.invalidData("\(path): not regression data") }
        for (row, values) in v.enumerated() where values.count != mean.count {
            throw HeadError.invalidData("\(path):\(lines[row]): \(values.count) targets, the head predicts \(mean.count)")
        }
        return .values(v.flatMap { row in row.enumerated().map { Float(($1 - mean[$0]) / std[$0]) } })
    }
}
