import EncoderService
import Foundation
import Synchronization
import XCTest

/// A condition a test waited for never came: the test fails with what it was waiting for instead of hanging.
struct TimedOut: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting until \(what)" }
}

/// Polls `condition` every millisecond. The deadline only keeps a broken test from hanging the suite; it is
/// no performance bound (30 s is far beyond any wait here).
func waitUntil(_ what: String, seconds: Int = 30, _ condition: () -> Bool) async throws {
    let deadline = ContinuousClock.now + .seconds(seconds)
    while !condition() {
        guard ContinuousClock.now < deadline else { throw TimedOut(what: what) }
        try await Task.sleep(for: .milliseconds(1))
    }
}

/// Whether a task has finished, readable from another.
final class Finished: Sendable {
    private let done = Mutex(false)
    func mark() { done.withLock { $0 = true } }
    var isSet: Bool { done.withLock { $0 } }
}

/// Awaits `work`; if it has not finished after `seconds`, records a failure naming `what` and calls
/// `unblock` (starts or stops a held scheduler) so that the test ends with that failure instead of hanging on
/// work a regression left queued; then awaits `work` anyway.
func awaiting<T: Sendable>(_ what: String, seconds: Int = 10, unblock: () -> Void,
                           file: StaticString = #filePath, line: UInt = #line,
                           _ work: @escaping @Sendable () async throws -> T) async throws -> T {
    let finished = Finished()
    let task = Task {
        defer { finished.mark() }
        return try await work()
    }
    do {
        try await waitUntil(what, seconds: seconds) { finished.isSet }
    } catch {
        XCTFail("\(error)", file: file, line: line)
        unblock()
    }
    return try await task.value
}

/// `body(item)` for every item at once; the results in the items' order.
func concurrently<Item: Sendable, T: Sendable>(_ items: [Item], _ body: @escaping @Sendable (Item) async throws -> T) async throws -> [T] {
    try await withThrowingTaskGroup(of: (Int, T).self) { group in
        for (i, item) in items.enumerated() { group.addTask { (i, try await body(item)) } }
        var results = [T?](repeating: nil, count: items.count)
        for try await (i, value) in group { results[i] = value }
        return results.compactMap { $0 }
    }
}

/// Runs `work` while `scheduler` is held back, starts it once `tokens` tokens wait in its queue (so they all
/// compete for the first pass), and returns what `work` returned. The scheduler is stopped afterwards.
func held<T: Sendable>(_ scheduler: ForwardScheduler, until tokens: Int,
                       _ work: @escaping @Sendable () async throws -> T) async throws -> T {
    let task = Task { try await work() }
    defer { scheduler.stop() }
    do {
        try await waitUntil("\(tokens) tokens are queued") { scheduler.queued >= tokens }
        // Tokens are counted before the jobs are appended to the queue; give the appends a moment.
        try await Task.sleep(for: .milliseconds(50))
    } catch {
        task.cancel()
        scheduler.stop()  // a never-started scheduler fails its queued work, so `task` ends
        _ = try? await task.value
        throw error
    }
    scheduler.start()
    return try await task.value
}

/// `body` throws exactly `expected`.
func assertThrows<E: Error & Equatable, T>(_ expected: E, file: StaticString = #filePath, line: UInt = #line,
                                           _ body: () async throws -> T) async {
    do {
        _ = try await body()
        XCTFail("no error; expected \(expected)", file: file, line: line)
    } catch let error as E {
        XCTAssertEqual(error, expected, file: file, line: line)
    } catch {
        XCTFail("\(error) instead of \(expected)", file: file, line: line)
    }
}
