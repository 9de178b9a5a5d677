/// The final token states of many texts in one flat array (no padding): text i is rows
/// offsets[i]..<offsets[i+1], each `dimension` floats.
public struct TokenStateSet: Sendable, Equatable {
    public let dimension: Int
    public private(set) var values: [Float]
    public private(set) var offsets: [Int]

    public init(dimension: Int) {
        self.dimension = dimension
        values = []
        offsets = [0]
    }

    public init(dimension: Int, values: [Float], offsets: [Int]) throws(HeadError) {
        guard offsets.first == 0, zip(offsets, offsets.dropFirst()).allSatisfy({ $0 < $1 }),
              (offsets.last ?? 0) * dimension == values.count else {
            throw .invalidData("token states: offsets do not match \(values.count) values of dimension \(dimension) (every text needs at least one token)")
        }
        self.dimension = dimension
        self.values = values
        self.offsets = offsets
    }

    public var count: Int { offsets.count - 1 }
    public func tokens(_ i: Int) -> Int { offsets[i + 1] - offsets[i] }

    /// Appends one text's states (tokens × dimension floats).
    public mutating func append(_ states: some Collection<Float>) {
        precondition(!states.isEmpty && states.count % dimension == 0, "a text's states must be whole non-empty rows")
        values += states
        offsets.append(values.count / dimension)
    }

    /// A subset, in the order given.
    public func subset(_ indices: some Sequence<Int>) -> TokenStateSet {
        var result = TokenStateSet(dimension: dimension)
        for i in indices { result.append(values[(offsets[i] * dimension)..<(offsets[i + 1] * dimension)]) }
        return result
    }
}
