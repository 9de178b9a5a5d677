import Foundation
import GemmaEncoder

public enum HeadTask: String, Codable, Sendable, CaseIterable {
    case classification, regression, rerank
}

/// The trainable part on top of a frozen encoder: pooling, dropout, an optional GELU hidden layer, an output
/// layer.
public struct HeadArchitecture: Codable, Sendable, Equatable {
    public var inputDimension: Int
    public var outputs: Int
    public var pooling: Pooling
    /// Heads of attention pooling (the input dimension must divide by it).
    public var attentionHeads: Int
    /// Width of the GELU hidden layer; nil for a linear head.
    public var hiddenSize: Int?
    /// Dropout on the pooled vector and on the hidden layer, during training only.
    public var dropout: Float
    public var hiddenDropout: Float

    public init(inputDimension: Int, outputs: Int, pooling: Pooling, attentionHeads: Int = 4,
                hiddenSize: Int? = nil, dropout: Float = 0.1, hiddenDropout: Float = 0.1) {
        self.inputDimension = inputDimension
        self.outputs = outputs
        self.pooling = pooling
        self.attentionHeads = attentionHeads
        self.hiddenSize = hiddenSize
        self.dropout = dropout
        self.hiddenDropout = hiddenDropout
    }

    enum CodingKeys: String, CodingKey {
        case inputDimension = "input_dimension", outputs, pooling, attentionHeads = "attention_heads"
        case hiddenSize = "hidden_size", dropout, hiddenDropout = "hidden_dropout"
    }

    public func validate() throws(HeadError) {
        guard inputDimension > 0, outputs > 0 else { throw .invalidArchitecture("dimensions must be positive") }
        if pooling == .attention, attentionHeads <= 0 || inputDimension % attentionHeads != 0 {
            throw .invalidArchitecture("attention pooling: \(attentionHeads) heads do not divide the dimension \(inputDimension)")
        }
        if let h = hiddenSize, h <= 0 { throw .invalidArchitecture("hidden size must be positive (omit it for a linear head)") }
        for p in [dropout, hiddenDropout] where !(0..<1).contains(p) {
            throw .invalidArchitecture("dropout \(p) must be in [0, 1)")
        }
    }

    /// The named parameter tensors, PyTorch's Linear layout (out × in), in storage order.
    var parameterShapes: [(name: String, shape: [Int], decays: Bool)] {
        let d = inputDimension
        var shapes: [(String, [Int], Bool)] = []
        if pooling == .attention {
            shapes += [("pool.query", [attentionHeads, d / attentionHeads], false),
                       ("pool.key.weight", [d, d], true),
                       ("pool.value.weight", [d, d], true), ("pool.value.bias", [d], false)]
        }
        if let h = hiddenSize {
            shapes += [("hidden.weight", [h, d], true), ("hidden.bias", [h], false)]
        }
        shapes += [("out.weight", [outputs, hiddenSize ?? d], true), ("out.bias", [outputs], false)]
        return shapes
    }
}

public enum HeadError: Error, CustomStringConvertible, Equatable {
    case invalidArchitecture(String)
    case invalidData(String)
    case invalidHead(String)
    case baseModelMismatch(String)

    public var description: String {
        switch self {
        case let .invalidArchitecture(m): return "invalid head: \(m)"
        case let .invalidData(m), let .invalidHead(m), let .baseModelMismatch(m): return m
        }
    }
}

/// Where each named tensor lives in one flat parameter vector (so the optimizer sees one array).
public struct ParameterLayout: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var shape: [Int]
        public var range: Range<Int>
        public var decays: Bool
    }

    public let entries: [Entry]
    public let count: Int

    init(_ architecture: HeadArchitecture) {
        var offset = 0
        entries = architecture.parameterShapes.map { name, shape, decays in
            let n = shape.reduce(1, *)
            defer { offset += n }
            return Entry(name: name, shape: shape, range: offset..<(offset + n), decays: decays)
        }
        count = offset
    }

    public subscript(name: String) -> Range<Int> {
        guard let e = entries.first(where: { $0.name == name }) else { preconditionFailure("no parameter \(name)") }
        return e.range
    }
}
