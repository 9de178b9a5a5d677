import Foundation
import Synchronization

/// Time per operation of the forward pass, summed over calls (and over the cores that run batches side by
/// side), so `bench --profile` shows where the time goes once the products are fast. Off unless enabled: a
/// forward then pays one branch per operation. Each forward call times into its own buffers and adds them
/// here once, at its end.
public final class OperationProfile: Sendable {
    public enum Operation: String, CaseIterable, Sendable {
        /// Token embedding rows, scaled.
        case embed
        /// The layers' input RMSNorms and the final norm (the others run inside the residual joins).
        case norm
        /// The stacked Q|K|V product.
        case qkv
        /// RoPE, with Gemma 3's per-head query and key norms in the same pass.
        case rope
        /// Scores, soft-cap, mask, softmax and the weighted sum of values.
        case attention
        case output = "o_proj"
        case gateUp = "gate_up"
        /// GELU(gate) · up.
        case activation
        case down
        /// Each branch joining the residual stream, in one pass with the branch's own norm (post-attention,
        /// post-feed-forward) and, after attention, the MLP's input norm.
        case residual
    }

    private struct State {
        var enabled = false
        var nanoseconds = [UInt64](repeating: 0, count: Operation.allCases.count)
        var calls = 0
    }

    private let state = Mutex(State())

    public init() {}

    public var isEnabled: Bool { state.withLock { $0.enabled } }

    /// Starts (or stops) timing, from zero.
    public func enable(_ on: Bool = true) {
        state.withLock { $0 = State(); $0.enabled = on }
    }

    /// Seconds per operation since `enable`, and the forward calls they came from.
    public func snapshot() -> (seconds: [Operation: Double], calls: Int) {
        state.withLock { s in
            var seconds: [Operation: Double] = [:]
            for (i, op) in Operation.allCases.enumerated() { seconds[op] = Double(s.nanoseconds[i]) / 1e9 }
            return (seconds, s.calls)
        }
    }

    func add(_ spent: [UInt64]) {
        state.withLock { s in
            for i in spent.indices { s.nanoseconds[i] += spent[i] }
            s.calls += 1
        }
    }
}

/// One forward call's timings (not shared between threads: the call's own products may fan out to several
/// cores, and their wall time is what is counted).
struct OperationTimer {
    let enabled: Bool
    private(set) var spent: [UInt64]

    init(enabled: Bool) {
        self.enabled = enabled
        spent = enabled ? [UInt64](repeating: 0, count: OperationProfile.Operation.allCases.count) : []
    }

    private static let index: [OperationProfile.Operation: Int] =
        Dictionary(uniqueKeysWithValues: OperationProfile.Operation.allCases.enumerated().map { ($1, $0) })

    @inline(__always)
    mutating func time(_ op: OperationProfile.Operation, _ body: () -> Void) {
        guard enabled else { return body() }
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        spent[Self.index[op]!] += DispatchTime.now().uptimeNanoseconds - start
    }
}
