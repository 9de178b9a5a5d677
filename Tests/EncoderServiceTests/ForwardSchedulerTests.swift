import EncoderService
import Foundation
import GemmaEncoder
import Synchronization
import TestSupport
import XCTest

/// The dynamic-batching scheduler on its own, on the tiny Gemma 3 model: how requests are coalesced into
/// forward passes, that every caller gets its own states back in order, the queue bound, and that batching
/// does not change a text's states. Tolerance 1e-5: packing reorders a few float sums, nothing else.
final class ForwardSchedulerTests: XCTestCase {
    var encoder: TextEncoder!

    override func setUpWithError() throws { encoder = try TestModels.tiny() }

    /// Requests queued while the scheduler is held back are coalesced into forward passes within the token
    /// budget; a request larger than one pass is split across passes.
    /// Found by scripts/leak-check (LeakSanitizer at the exit of `serve`): the scheduler's thread held the
    /// scheduler, and the scheduler its thread, so a stopped scheduler — and the service's metrics its
    /// callbacks hold — was never freed. Once stopped and released, it is gone.
    func testAStoppedSchedulerIsFreed() async throws {
        weak var released: ForwardScheduler?
        do {
            let scheduler = ForwardScheduler(encoder: encoder, maxBatchTokens: 256, maxQueuedTokens: 10_000)
            released = scheduler
            scheduler.start()
            let states = try await scheduler.tokenStates(encoder.tokenize(["the cat sat"]), attention: .bidirectional)
            XCTAssertEqual(states.count, 1)
            scheduler.stop()
        }
        // The thread lets go of the scheduler when its loop has finished the queue and returned.
        let deadline = Date().addingTimeInterval(10)
        while released != nil, Date() < deadline { try await Task.sleep(nanoseconds: 10_000_000) }
        XCTAssertNil(released, "the stopped scheduler is still alive")
    }

    func testRequestsShareForwardPassesWithinTheTokenBudget() async throws {
        let scheduler = ForwardScheduler(encoder: encoder, maxBatchTokens: 256, maxQueuedTokens: 10_000)
        let passes = Passes(scheduler)
        let requests = (0..<12).map { i in encoder.tokenize((0..<(1 + i % 3)).map { "request \(i) text \($0)" }) }
        let big = encoder.tokenize((0..<10).map { "a longer request number \($0) with words" })
        XCTAssertGreaterThan(tokens(big), 256, "the big request must need two passes")
        let all = requests + [big]

        let states = try await held(scheduler, until: all.reduce(0) { $0 + tokens($1) }) {
            try await concurrently(all) { try await scheduler.tokenStates($0, attention: .bidirectional) }
        }
        let recorded = passes.all
        let total = all.reduce(0) { $0 + tokens($1) }
        XCTAssertEqual(recorded.reduce(0) { $0 + $1.tokens }, total)
        XCTAssertEqual(recorded.reduce(0) { $0 + $1.inputs }, all.reduce(0) { $0 + $1.count })
        XCTAssertTrue(recorded.allSatisfy { $0.tokens <= 256 }, "\(recorded)")
        XCTAssertLessThan(recorded.count, all.count, "requests were not coalesced: \(recorded)")
        XCTAssertGreaterThanOrEqual(recorded.count, (total + 255) / 256)
        for (inputs, got) in zip(all, states) { try assertStates(got, direct: inputs, .bidirectional) }
        XCTAssertEqual(scheduler.queued, 0)
    }

    /// Forty callers of different sizes, all in flight at once: each gets the states of its own inputs, one
    /// per input, in the order it sent them.
    func testResultsGoBackToTheirCallerInOrder() async throws {
        let scheduler = ForwardScheduler(encoder: encoder, maxBatchTokens: 128, maxQueuedTokens: 100_000)
        let requests = (0..<40).map { i in
            encoder.tokenize((0..<(1 + i % 4)).map { j in String(repeating: "word\(i) ", count: 1 + (i + j) % 5) + "end \(j)" })
        }
        let states = try await held(scheduler, until: requests.reduce(0) { $0 + tokens($1) }) {
            try await concurrently(requests) { try await scheduler.tokenStates($0, attention: .bidirectional) }
        }
        let hidden = encoder.hiddenSize
        for (i, (inputs, got)) in zip(requests, states).enumerated() {
            XCTAssertEqual(got.map(\.count), inputs.map { $0.ids.count * hidden }, "request \(i): one state per token, in order")
            try assertStates(got, direct: inputs, .bidirectional)
        }
    }

    /// A text's token states are the same alone and in a pass with other texts, under either attention.
    func testStatesDoNotDependOnBatchMates() async throws {
        let text = encoder.tokenize(["the cat sat on the mat"])
        let mates = encoder.tokenize(["a dog ran", "hello there and more words than the first text", "zebra"])
        for attention in [AttentionMode.bidirectional, .causal] {
            let alone = ForwardScheduler(encoder: encoder, maxBatchTokens: 1024, maxQueuedTokens: 4096)
            alone.start()
            let single = try await alone.tokenStates(text, attention: attention)
            alone.stop()

            let shared = ForwardScheduler(encoder: encoder, maxBatchTokens: 1024, maxQueuedTokens: 4096)
            let passes = Passes(shared)
            let together = try await held(shared, until: tokens(text) + tokens(mates)) {
                try await concurrently([text, mates]) { try await shared.tokenStates($0, attention: attention) }
            }
            XCTAssertEqual(passes.all.map(\.inputs), [4], "\(attention): the text and its mates ran in one pass")
            XCTAssertEqual(together[0].count, 1)
            XCTAssertLessThanOrEqual(maxAbsDiff(together[0][0], single[0]), 1e-5, "\(attention)")
        }
    }

    /// Requests with different attention modes never share a pass: each gets its own mode's states.
    func testAttentionModesAreNotMixed() async throws {
        let scheduler = ForwardScheduler(encoder: encoder, maxBatchTokens: 4096, maxQueuedTokens: 8192)
        let passes = Passes(scheduler)
        let a = encoder.tokenize(["the cat sat", "a dog ran"]), b = encoder.tokenize(["hello there", "tiny words"])
        let states = try await held(scheduler, until: 2 * tokens(a) + 2 * tokens(b)) {
            try await concurrently([(a, AttentionMode.bidirectional), (a, .causal), (b, .bidirectional), (b, .causal)]) {
                try await scheduler.tokenStates($0.0, attention: $0.1)
            }
        }
        XCTAssertEqual(passes.all.count, 2, "one pass per attention mode: \(passes.all)")
        try assertStates(states[0], direct: a, .bidirectional)
        try assertStates(states[1], direct: a, .causal)
        try assertStates(states[2], direct: b, .bidirectional)
        try assertStates(states[3], direct: b, .causal)
        XCTAssertGreaterThan(maxAbsDiff(states[0][0], states[1][0]), 1e-3, "the two modes differ on this text")
    }

    /// A full queue refuses at once with `.overloaded` (the service's 429) and a request larger than the
    /// whole queue with `.tooLarge` (413); refused requests take no room, the accepted one still completes,
    /// and a stopped scheduler refuses with `.stopped`.
    func testQueueBoundRefusesAtOnce() async throws {
        let inputs = encoder.tokenize(["the cat sat on the mat"])
        let n = tokens(inputs)
        let scheduler = ForwardScheduler(encoder: encoder, maxBatchTokens: n, maxQueuedTokens: n + 1)
        let first = Task { try await scheduler.tokenStates(inputs, attention: .bidirectional) }
        do {
            try await waitUntil("the first request is queued") { scheduler.queued == n }
            // Were a request accepted instead, it would wait for a pass that never runs: `awaiting` stops the
            // scheduler after a while, which fails the test instead of hanging it.
            await assertThrows(SchedulerError.overloaded(queuedTokens: n)) {
                try await awaiting("the second request is refused", unblock: scheduler.stop) {
                    try await scheduler.tokenStates(inputs, attention: .bidirectional)
                }
            }
            await assertThrows(SchedulerError.tooLarge(tokens: 2 * n, limit: n + 1)) {
                try await awaiting("the large request is refused", unblock: scheduler.stop) {
                    try await scheduler.tokenStates(inputs + inputs, attention: .bidirectional)
                }
            }
            XCTAssertEqual(scheduler.queued, n, "refused requests hold no room")
        } catch {
            scheduler.stop()
            throw error
        }
        scheduler.start()
        try assertStates(try await first.value, direct: inputs, .bidirectional)
        XCTAssertEqual(scheduler.queued, 0)
        let again = try await scheduler.tokenStates(encoder.tokenize(["room again"]), attention: .bidirectional)
        XCTAssertEqual(again.count, 1)
        scheduler.stop()
        await assertThrows(SchedulerError.stopped) { try await scheduler.tokenStates(inputs, attention: .bidirectional) }
    }

    // MARK: Helpers

    func tokens(_ inputs: [EncoderInput]) -> Int { inputs.reduce(0) { $0 + $1.ids.count } }

    /// `states` equal the encoder's own, computed directly without the scheduler.
    func assertStates(_ states: [[Float]], direct inputs: [EncoderInput], _ attention: AttentionMode,
                      file: StaticString = #filePath, line: UInt = #line) throws {
        let expected = try encoder.tokenStates(inputs, attention: attention)
        XCTAssertEqual(states.count, expected.count, file: file, line: line)
        for (i, (got, want)) in zip(states, expected).enumerated() {
            XCTAssertEqual(got.count, want.count, "input \(i)", file: file, line: line)
            if got.count == want.count {
                XCTAssertLessThanOrEqual(maxAbsDiff(got, want), 1e-5, "input \(i) \(attention)", file: file, line: line)
            }
        }
    }
}

/// Every forward pass a scheduler ran: inputs and tokens.
final class Passes: Sendable {
    private let passes = Mutex<[(inputs: Int, tokens: Int)]>([])

    init(_ scheduler: ForwardScheduler) {
        scheduler.onBatch = { [self] inputs, tokens, _ in passes.withLock { $0.append((inputs, tokens)) } }
    }

    var all: [(inputs: Int, tokens: Int)] { passes.withLock { $0 } }
}
