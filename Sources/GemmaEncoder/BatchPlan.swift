import Foundation
import Synchronization

/// Input indices grouped into forward batches of similar length under a token budget (longest first, so the
/// first batch shows the peak memory), and the way they are spread over the cores.
struct BatchPlan {
    let batches: [[Int]]
    private let count: Int

    init(lengths: [Int], tokenBudget: Int) {
        count = lengths.count
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
