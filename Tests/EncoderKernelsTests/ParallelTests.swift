import Dispatch
import EncoderKernels
import Foundation
import Synchronization
import XCTest

/// `parallelFor` and the spinning worker pool: every part of every region runs exactly once and has finished
/// when the call returns — back to back with changing part counts, from several callers at once (they take
/// turns owning the pool, the others falling back to libdispatch) and from inside a region's own parts.
final class ParallelTests: XCTestCase {
    /// Hits per (region, part slot), counted atomically so that a part run twice at once is not lost.
    final class Counts: Sendable {
        let slots: Mutex<[Int]>
        let width: Int
        init(regions: Int, width: Int) {
            self.width = width
            slots = Mutex(Array(repeating: 0, count: regions * width))
        }
        func hit(_ region: Int, _ slot: Int) { slots.withLock { $0[region * width + slot] += 1 } }
        func region(_ r: Int) -> ArraySlice<Int> { slots.withLock { $0[(r * width)..<((r + 1) * width)] } }
    }

    /// A few microseconds of work, so a part still running when its region returned would be seen.
    static func busyWait(microseconds: Double) {
        let end = DispatchTime.now().uptimeNanoseconds + UInt64(microseconds * 1000)
        while DispatchTime.now().uptimeNanoseconds < end {}
    }

    func testThereIsAPoolWhereThereAreCores() {
        #if os(Linux)
        XCTAssertEqual(WorkerPool.shared.workers, max(0, ProcessInfo.processInfo.activeProcessorCount - 1))
        #endif
    }

    /// Part counts change from region to region (a late claim against the previous region's count is the
    /// race to rule out), each part checked done right after the call.
    func testEveryPartRunsOnceAndIsDoneOnReturn() {
        var rng = SystemRandomNumberGenerator()
        let regions = 2000, width = 9, counts = Counts(regions: regions, width: width)
        var usedPool = 0
        for r in 0..<regions {
            let parts = Int.random(in: 1...width, using: &rng)
            let body: @Sendable (Int) -> Void = { p in
                if p % 2 == 1 { ParallelTests.busyWait(microseconds: 3) }
                counts.hit(r, p)
            }
            if r % 2 == 0, WorkerPool.shared.run(parts, body) {
                usedPool += 1
            } else {
                parallelFor(parts, body)
            }
            let seen = counts.region(r)
            XCTAssertEqual(Array(seen.prefix(parts)), Array(repeating: 1, count: parts), "region \(r), \(parts) parts")
            XCTAssertTrue(seen.dropFirst(parts).allSatisfy { $0 == 0 }, "region \(r): a part past \(parts) ran")
        }
        if WorkerPool.shared.workers > 0 { XCTAssertEqual(usedPool, regions / 2, "the pool was free, yet refused a region") }
    }

    /// More callers than cores, each with nested regions: the callers take turns owning the pool, the others
    /// (and nested regions) fall back, and nothing is lost, doubled or left running.
    func testConcurrentAndNestedCallers() {
        let callers = 6, regions = 150, parts = 5
        let counts = (0..<callers).map { _ in Counts(regions: regions, width: parts) }
        let nested = (0..<callers).map { _ in Counts(regions: regions, width: parts * 3) }
        DispatchQueue.concurrentPerform(iterations: callers) { c in
            for r in 0..<regions {
                parallelFor(parts) { p in
                    parallelFor(3) { q in
                        ParallelTests.busyWait(microseconds: 2)
                        nested[c].hit(r, p * 3 + q)
                    }
                    counts[c].hit(r, p)
                }
                XCTAssertEqual(Array(counts[c].region(r)), Array(repeating: 1, count: parts))
                XCTAssertEqual(Array(nested[c].region(r)), Array(repeating: 1, count: parts * 3))
            }
        }
    }

    /// The pool's parts really run at the same time: two parts that each wait (at most 2 s) to see the other
    /// started both see it only if both are running.
    func testPoolPartsRunAtOnce() {
        guard WorkerPool.shared.workers > 0 else { return }
        final class Flags: Sendable {
            let started = Mutex([false, false]), sawOther = Mutex([false, false])
        }
        for _ in 0..<10 {
            let flags = Flags()
            let ran = WorkerPool.shared.run(2) { p in
                flags.started.withLock { $0[p] = true }
                let deadline = Date().addingTimeInterval(2)
                while Date() < deadline {
                    if flags.started.withLock({ $0[1 - p] }) {
                        flags.sawOther.withLock { $0[p] = true }
                        break
                    }
                }
            }
            XCTAssertTrue(ran)
            XCTAssertEqual(flags.sawOther.withLock { $0 }, [true, true], "the two parts did not overlap")
        }
    }
}
