import Foundation

/// A float buffer of its own, 64-byte aligned for BLAS, freed with its owner: the storage of parameters,
/// gradients, optimizer moments and the activations a training step keeps.
public final class Tensor: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// Zero-filled.
    public convenience init(count: Int) {
        self.init(uninitialized: count)
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    /// Not filled: for a buffer the next call writes whole (zeroing it first would cost a pass over memory).
    public init(uninitialized count: Int) {
        self.count = count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
            .bindMemory(to: Float.self, capacity: max(count, 1))
    }

    public convenience init(copying source: UnsafePointer<Float>, count: Int) {
        self.init(uninitialized: count)
        pointer.update(from: source, count: count)
    }

    public convenience init(_ values: [Float]) {
        self.init(uninitialized: values.count)
        values.withUnsafeBufferPointer { pointer.update(from: $0.baseAddress!, count: values.count) }
    }

    deinit { pointer.deallocate() }

    public var array: [Float] { Array(UnsafeBufferPointer(start: pointer, count: count)) }
    public func zero() { pointer.update(repeating: 0, count: count) }
}
