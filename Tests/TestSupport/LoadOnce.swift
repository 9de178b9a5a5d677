import Synchronization

/// Values built once per test process, by key: the real models take seconds and gigabytes to load, so every
/// test target shares one copy of each. The lock is held while a value loads, so two tests asking for the
/// same model at once wait for one load instead of running two. A failed load is not remembered: the next
/// test tries again and reports its own failure.
public final class LoadOnce<Value: Sendable>: Sendable {
    private let values = Mutex<[String: Value]>([:])

    public init() {}

    /// The value for `key`, loading it with `load` the first time. `load` must not ask this same cache for
    /// another key (the lock is not reentrant).
    public func value(_ key: String, load: () throws -> Value) throws -> Value {
        try values.withLock { values in
            if let value = values[key] { return value }
            let value = try load()
            values[key] = value
            return value
        }
    }
}
