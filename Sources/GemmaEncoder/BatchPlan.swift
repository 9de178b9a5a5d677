import Foundation
import Synchronization

/// Input indices grouped into forward batches of similar length under a token budget (longest first, so the
/// first batch shows the peak memory), and the way they are spread over the cores.
struct BatchPlan {
    let batches: [[Int]]
    private let count: Int

    /// `workers`: the batches' count is rounded up to a multiple of it, sizes evened out, so no core is left
    /// waiting for the others' last batch (128 short texts made one 8,192-token batch and a 2,353-token one:
    /// one core idle for 70 % of the run).
    init(lengths: [Int], tokenBudget: Int, workers: Int = 1) {
        count = lengths.count
        let tokenBudget = BatchPlan.budget(lengths: lengths, tokenBudget: tokenBudget, workers: workers)
        let order = lengths.indices.sorted { lengths[$0] > lengths[$1] }
        var batches: [[Int]] = []
        var current: [Int] = []
        var tokens = 0
        for i in order {
            if !current.isEmpty, tokens + lengths[i] > tokenBudget {
                batches.append(current)
                current = []
                tokens = 0
            }
            current.append(i)
            tokens += lengths[i]
        }
        if !current.isEmpty { batches.append(current) }
        self.batches = batches
    }

    /// The budget that fills a multiple of `workers` batches about evenly: total / batches plus the longest
    /// input (greedy filling stops at most one input short of a budget), never above `tokenBudget`.
    static func budget(lengths: [Int], tokenBudget: Int, workers: Int) -> Int {
        let total = lengths.reduce(0, +), longest = lengths.max() ?? 0
        guard workers > 1, total > 0, tokenBudget > 0 else { return tokenBudget }
        let needed = (total + tokenBudget - 1) / tokenBudget
        let batches = (needed + workers - 1) / workers * workers
        return min(tokenBudget, (total + batches - 1) / batches + longest)
    }

    /// Runs `work` on every batch, `workers` at a time (largest first, each worker taking the next batch when
    /// it is done), each batch on one core; a lone batch gets all `workers` cores for its products instead.
    /// `work` receives the batch's input indices and the cores it may use.
    func run<Row: Sendable>(workers: Int, _ work: @Sendable ([Int], Int) throws -> [Row]) throws -> [[Row]] {
        let workers = max(1, workers)
        guard batches.count > 1, workers > 1 else { return try batches.map { try work($0, workers) } }
        let batches = self.batches
        let state = Mutex<(next: Int, results: [[Row]?], error: Error?)>((0, Array(repeating: nil, count: batches.count), nil))
        DispatchQueue.concurrentPerform(iterations: min(workers, batches.count)) { _ in
            while true {
                let index: Int? = state.withLock { s in
                    guard s.error == nil, s.next < batches.count else { return nil }
                    defer { s.next += 1 }
                    return s.next
                }
                guard let index else { return }
                do {
                    let result = try work(batches[index], 1)
                    state.withLock { $0.results[index] = result }
                } catch {
                    state.withLock { $0.error = error }
                }
            }
        }
        return try state.withLock { s in
            if let error = s.error { throw error }
            return s.results.map { $0! }
        }
    }

    /// Per-batch rows back in input order.
    func inInputOrder<Row>(_ rows: [[Row]]) -> [Row] where Row: Sendable {
        var results = [Row?](repeating: nil, count: count)
        for (batch, batchRows) in zip(batches, rows) {
            for (index, row) in zip(batch, batchRows) { results[index] = row }
        }
        return results.map { $0! }
    }
}
