import EncoderKernels
import Foundation
import GemmaEncoder

/// Why the scheduler refused work.
public enum SchedulerError: Error, Equatable {
    /// The queue holds too many tokens already: the client should retry later.
    case overloaded(queuedTokens: Int)
    /// One request holds more tokens than the whole queue: it can never be accepted.
    case tooLarge(tokens: Int, limit: Int)
    case stopped
}

/// Dynamic batching for one encoder: concurrent requests' inputs are coalesced into forward passes of up to
/// `maxBatchTokens` tokens (the encoder packs them by length, so no padding is computed), run one pass at a
/// time on a thread of its own. A request larger than one pass is split across passes; a full queue
/// (`maxQueuedTokens`) refuses new work at once instead of letting latency grow without bound.
public final class ForwardScheduler: @unchecked Sendable {
    public let encoder: TextEncoder
    public let maxBatchTokens: Int
    public let maxQueuedTokens: Int

    /// Called after every forward pass: inputs, tokens, seconds.
    public var onBatch: (@Sendable (Int, Int, Double) -> Void)?
    /// Called when the queue changes: tokens waiting.
    public var onQueue: (@Sendable (Int) -> Void)?

    private struct Job {
        var inputs: [EncoderInput]
        var attention: AttentionMode
        var tokens: Int
        var continuation: CheckedContinuation<[[Float]], Error>
    }

    private let workers = CPUBudget.threads
    private let condition = NSCondition()
    private var jobs: [Job] = []
    private var queuedTokens = 0
    private var stopping = false
    private var thread: Thread?

    public init(encoder: TextEncoder, maxBatchTokens: Int, maxQueuedTokens: Int) {
        precondition(maxBatchTokens > 0 && maxQueuedTokens >= maxBatchTokens)
        self.encoder = encoder
        self.maxBatchTokens = maxBatchTokens
        self.maxQueuedTokens = maxQueuedTokens
    }

    public func start() {
        condition.lock()
        defer { condition.unlock() }
        guard thread == nil else { return }
        // Weak: the scheduler holds its thread, and a thread's block lives as long as the thread object, so a
        // strong capture would keep both (and everything the scheduler holds) alive forever after `stop`.
        // The loop holds the scheduler while it runs.
        let thread = Thread { [weak self] in self?.loop() }
        thread.name = "forward-scheduler"
        self.thread = thread
        thread.start()
    }

    /// Tokens accepted and not yet encoded (waiting or in the running pass).
    public var queued: Int {
        condition.lock()
        defer { condition.unlock() }
        return queuedTokens
    }

    /// Finishes the queued work, then stops the thread; later submissions fail with `.stopped`.
    public func stop() {
        condition.lock()
        stopping = true
        // Never started: nothing will run the queued work, so it fails instead of waiting forever.
        let orphans = thread == nil ? jobs : []
        if thread == nil {
            jobs = []
            queuedTokens = 0
        }
        condition.broadcast()
        condition.unlock()
        for job in orphans { job.continuation.resume(throwing: SchedulerError.stopped) }
    }

    /// Final token states of `inputs` (tokens × hidden floats each), in order. Inputs are split into chunks
    /// of at most `maxBatchTokens` tokens; every chunk joins whatever batch is forming.
    public func tokenStates(_ inputs: [EncoderInput], attention: AttentionMode) async throws -> [[Float]] {
        guard !inputs.isEmpty else { return [] }
        var chunks: [[EncoderInput]] = [[]]
        var tokens = 0
        for input in inputs {
            if !chunks[chunks.count - 1].isEmpty, tokens + input.ids.count > maxBatchTokens {
                chunks.append([])
                tokens = 0
            }
            chunks[chunks.count - 1].append(input)
            tokens += input.ids.count
        }
        let total = inputs.reduce(0) { $0 + $1.ids.count }
        try reserve(total)
        return try await withThrowingTaskGroup(of: (Int, [[Float]]).self) { group in
            for (i, chunk) in chunks.enumerated() {
                group.addTask { (i, try await self.enqueue(chunk, attention: attention)) }
            }
            var parts = [[[Float]]](repeating: [], count: chunks.count)
            for try await (i, states) in group { parts[i] = states }
            return parts.flatMap { $0 }
        }
    }

    /// Counts a request's tokens against the queue bound before any of it is queued, so a request is
    /// accepted or refused whole.
    private func reserve(_ tokens: Int) throws {
        condition.lock()
        defer { condition.unlock() }
        if stopping { throw SchedulerError.stopped }
        guard tokens <= maxQueuedTokens else { throw SchedulerError.tooLarge(tokens: tokens, limit: maxQueuedTokens) }
        guard queuedTokens + tokens <= maxQueuedTokens else { throw SchedulerError.overloaded(queuedTokens: queuedTokens) }
        queuedTokens += tokens
        onQueue?(queuedTokens)
    }

    private func enqueue(_ inputs: [EncoderInput], attention: AttentionMode) async throws -> [[Float]] {
        try await withCheckedThrowingContinuation { continuation in
            condition.lock()
            jobs.append(Job(inputs: inputs, attention: attention, tokens: inputs.reduce(0) { $0 + $1.ids.count },
                            continuation: continuation))
            condition.signal()
            condition.unlock()
        }
    }

    private func loop() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopping { condition.wait() }
            if jobs.isEmpty && stopping {
                condition.unlock()
                return
            }
            // Oldest first; later jobs join while they fit the token budget and share the attention mode.
            var batch = [jobs.removeFirst()]
            var tokens = batch[0].tokens
            var index = 0
            while index < jobs.count {
                if jobs[index].attention == batch[0].attention, tokens + jobs[index].tokens <= maxBatchTokens {
                    tokens += jobs[index].tokens
                    batch.append(jobs.remove(at: index))
                } else {
                    index += 1
                }
            }
            condition.unlock()

            let inputs = batch.flatMap(\.inputs)
            let start = DispatchTime.now().uptimeNanoseconds
            // Split the pass so every core gets a share: the encoder runs one batch per core.
            let perCore = (tokens + workers - 1) / workers
            let result = Result { try encoder.tokenStates(inputs, attention: batch[0].attention,
                                                          batchTokens: min(max(2048, maxBatchTokens / 4), perCore)) }
            onBatch?(inputs.count, tokens, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)

            condition.lock()
            queuedTokens -= tokens
            onQueue?(queuedTokens)
            condition.unlock()
            switch result {
            case let .success(states):
                var offset = 0
                for job in batch {
                    job.continuation.resume(returning: Array(states[offset..<(offset + job.inputs.count)]))
                    offset += job.inputs.count
                }
            case let .failure(error):
                for job in batch { job.continuation.resume(throwing: error) }
            }
        }
    }
}
