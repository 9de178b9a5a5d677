/// A contiguous run of Float values that is either borrowed from a memory mapping (f32 checkpoints: zero copy)
/// or owned (converted from BF16/F16, or built at load time). Immutable after construction.
public final class FloatBuffer: @unchecked Sendable {
    public let pointer: UnsafePointer<Float>
    public let count: Int
    private let owned: UnsafeMutablePointer<Float>?
    /// Keeps a mapping alive while a borrowed pointer is in use.
    private let owner: AnyObject?

    /// Borrows `count` floats at `pointer`, kept valid by `owner`.
    public init(borrowing pointer: UnsafePointer<Float>, count: Int, owner: AnyObject) {
        self.pointer = pointer
        self.count = count
        self.owned = nil
        self.owner = owner
    }

    /// Allocates `count` floats and lets `fill` write them once.
    public init(count: Int, fill: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        do {
            try fill(UnsafeMutableBufferPointer(start: p, count: count))
        } catch {
            p.deallocate()
            throw error
        }
        self.pointer = UnsafePointer(p)
        self.count = count
        self.owned = p
        self.owner = nil
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count) { dst in _ = dst.initialize(from: values) }
    }

    deinit { owned?.deallocate() }

    public var buffer: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: pointer, count: count) }
    public var array: [Float] { Array(buffer) }
}
