import CKernels
import Dispatch
import Foundation

/// Runs `body(part)` for every part in 0..<parts, on this thread and the worker pool's, and returns when all
/// are done. The forward pass's products, attention and RoPE split their work through here. Parts may run one
/// after another on one thread, in any order, so they must not wait on each other.
///
/// Why not only `DispatchQueue.concurrentPerform`: it wakes a sleeping worker for every region, and on Linux the
/// wake-up costs about as much as a short region (a 10-token query runs some 200 of 20–300 µs each), so the
/// second core mostly arrived late. The pool's workers spin between regions (pool.c). When the pool is owned by
/// another region — a concurrent request, or a region started inside one of the pool's own parts — this falls
/// back to concurrentPerform, so nothing waits on the pool.
public func parallelFor(_ parts: Int, _ body: @Sendable (Int) -> Void) {
    guard parts > 1 else {
        if parts == 1 { body(0) }
        return
    }
    if WorkerPool.shared.run(parts, body) { return }
    DispatchQueue.concurrentPerform(iterations: parts, execute: body)
}

/// The process's pool of spinning workers: one per core beside the caller's. One for the process, like
/// libdispatch's global queue and OpenBLAS's threads, because cores are a process-wide resource: two pools
/// would spin against each other. It holds no state a caller can see; `run` is safe from any thread.
public final class WorkerPool: @unchecked Sendable {
    public static let shared = WorkerPool(workers: CPUBudget.threads - 1)

    private let pool: OpaquePointer?

    init(workers: Int) {
        pool = workers > 0 ? ck_pool_create(Int32(workers)) : nil
    }

    deinit { ck_pool_destroy(pool) }

    /// Threads beside the caller's (0 where there is no pool: one core, or not Linux).
    public var workers: Int { Int(ck_pool_workers(pool)) }

    /// Runs the region on the pool and returns true; false, having run nothing, when the pool is owned by
    /// another region or absent. Returns only when every part is done, so `body` need not escape.
    public func run(_ parts: Int, _ body: @Sendable (Int) -> Void) -> Bool {
        guard let pool else { return false }
        return withoutActuallyEscaping(body) { body in
            withUnsafePointer(to: body) { context in
                ck_pool_run(pool, parts, { context, part in
                    context!.assumingMemoryBound(to: (@Sendable (Int) -> Void).self).pointee(part)
                }, UnsafeMutableRawPointer(mutating: context)) == 0
            }
        }
    }
}
