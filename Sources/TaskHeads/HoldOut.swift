/// Why no validation split could be held out of the training rows.
public enum HoldOutError: Error, CustomStringConvertible, Equatable {
    /// Fewer than two rows: one must validate and one must train. `source` names the data (a file), if known.
    case tooFewRows(Int, source: String?)
    case invalidFraction(Double)

    public var description: String {
        switch self {
        case let .tooFewRows(rows, source):
            return (source.map { "\($0): " } ?? "") + "\(rows) row(s): too few to hold out a validation split (pass validation rows)"
        case let .invalidFraction(fraction):
            return "the validation fraction must be between 0 and 1, got \(fraction)"
        }
    }
}

/// Row indices split into training and held-out validation rows, each list in ascending (file) order.
public struct HoldOutSplit: Sendable, Equatable {
    public var train: [Int]
    public var valid: [Int]

    /// A random `fraction` of `count` rows (rounded; at least one, and leaving at least one) drawn from `rng`,
    /// the one hold-out rule of heads and rerankers. The caller seeds `rng`, and may keep drawing from it
    /// afterwards (the reranker samples its negatives next), so a seed fixes the split and what follows.
    public init(count: Int, fraction: Double, using rng: inout some RandomNumberGenerator,
                source: String? = nil) throws(HoldOutError) {
        guard count >= 2 else { throw .tooFewRows(count, source: source) }
        guard fraction > 0, fraction < 1 else { throw .invalidFraction(fraction) }
        let order = Array(0..<count).shuffled(using: &rng)
        let held = min(count - 1, max(1, Int((Double(count) * fraction).rounded())))
        valid = order.prefix(held).sorted()
        train = order.dropFirst(held).sorted()
    }
}
