import Foundation
import GemmaModel
import ModelFormats

/// One trainable tensor in f32 (the master copy, whatever format it was loaded from), with its gradient when
/// it is being trained. A stacked parameter (Q|K|V, gate|up) holds several checkpoint tensors as consecutive
/// row blocks, so one product computes them all; `parts` names each block for export and parity tests.
public final class Parameter: @unchecked Sendable {
    public struct Part: Sendable, Equatable {
        public var name: String
        public var rows: Int
    }

    /// The checkpoint name of a plain parameter, or a name for the stack ("layers.3.self_attn.qkv").
    public let name: String
    /// (rows, columns) of a matrix or (count) of a vector, row-major.
    public let shape: [Int]
    public let parts: [Part]
    public let value: Tensor
    /// Present while the parameter trains; accumulated into by backward, zeroed by the optimizer step.
    public private(set) var gradient: Tensor?
    /// AdamW's decoupled weight decay applies (matrices, not norms).
    public let decays: Bool
    /// Norm weights are w where the norm multiplies by (1 + w): what checkpoints store.
    public let kind: Kind

    public enum Kind: Sendable { case matrix, normWeight, embedding, adapter }

    public init(name: String, shape: [Int], parts: [Part]? = nil, value: Tensor, kind: Kind) {
        precondition(shape.reduce(1, *) == value.count, "\(name): shape \(shape) does not hold \(value.count) values")
        self.name = name
        self.shape = shape
        self.parts = parts ?? [Part(name: name, rows: shape[0])]
        self.value = value
        self.kind = kind
        decays = kind == .matrix || kind == .adapter
    }

    public var count: Int { value.count }
    public var isTrained: Bool { gradient != nil }
    /// Columns of a matrix (1 for a vector).
    public var columns: Int { shape.count > 1 ? shape[1] : 1 }

    public func setTrained(_ trained: Bool) {
        gradient = trained ? (gradient ?? Tensor(count: value.count)) : nil
    }

    /// Each part as a checkpoint tensor (name, shape, values), in order.
    public func checkpointTensors() -> [(name: String, shape: [Int], values: [Float])] {
        var row = 0
        return parts.map { part in
            let start = row * columns
            row += part.rows
            let values = Array(UnsafeBufferPointer(start: value.pointer + start, count: part.rows * columns))
            return (part.name, shape.count > 1 ? [part.rows, columns] : [part.rows], values)
        }
    }

    /// The gradient of each part, named like `checkpointTensors`.
    public func gradientTensors() -> [(name: String, values: [Float])] {
        guard let gradient else { return [] }
        var row = 0
        return parts.map { part in
            let start = row * columns
            row += part.rows
            return (part.name, Array(UnsafeBufferPointer(start: gradient.pointer + start, count: part.rows * columns)))
        }
    }
}

/// A norm's multiplier (1 + w) formed from its weight for one step, in float32 as transformers forms it.
func normScale(_ weight: Parameter) -> [Float] {
    (0..<weight.count).map { 1 + weight.value.pointer[$0] }
}

extension Parameter {
    /// A norm's weight w as stored (the norm multiplies by 1 + w), named `label` + its name (a label keeps a
    /// T5Gemma decoder's names apart from its encoder's in one optimizer).
    static func norm(_ name: String, dimension: Int, from weights: any WeightProvider, label: String = "") throws(FormatError) -> Parameter {
        let w = try weights.normWeight(name, dimension: dimension)
        return Parameter(name: label + name, shape: [dimension], value: Tensor(copying: w.pointer, count: dimension), kind: .normWeight)
    }

    /// The checkpoint matrices `parts` (name, rows), each `columns` wide, stacked in order into one f32 master copy
    /// named `label` + `name`: any stored format (f32, bf16, a GGUF's quantized blocks) is dequantized.
    static func matrix(_ name: String, parts: [(String, Int)], columns: Int, from weights: any WeightProvider,
                       label: String = "") throws(FormatError) -> Parameter {
        let rows = parts.reduce(0) { $0 + $1.1 }
        let value = Tensor(count: rows * columns)
        var row = 0
        for (part, partRows) in parts {
            let stored = try weights.storedLinear(part, shape: [partRows, columns], precision: .f32)
            stored.weight.dequantize(rows: 0..<partRows, into: value.pointer + row * columns)
            stored.release()
            row += partRows
        }
        return Parameter(name: label + name, shape: [rows, columns], parts: parts.map { Part(name: label + $0.0, rows: $0.1) },
                         value: value, kind: .matrix)
    }
}
