import EncoderKernels
import ModelFormats

/// A provider seen from one module's path ("layers.3.self_attn"), so each block asks for its weights by the
/// names its own checkpoint keys end with and no renaming table exists.
struct WeightScope: Sendable {
    let provider: any WeightProvider
    let prefix: String

    init(_ provider: any WeightProvider, prefix: String = "") {
        self.provider = provider
        self.prefix = prefix
    }

    func scoped(_ name: String) -> WeightScope { WeightScope(provider, prefix: prefix + name + ".") }

    func linear(_ name: String, shape: [Int], precision: WeightPrecision) throws(FormatError) -> LinearWeight {
        try provider.linear(prefix + name, shape: shape, precision: precision)
    }

    func stackedLinear(_ parts: [(name: String, shape: [Int])], precision: WeightPrecision) throws(FormatError) -> StackedLinear {
        try provider.stackedLinear(parts.map { (prefix + $0.name, $0.shape) }, precision: precision)
    }

    func normScale(_ name: String, dimension: Int) throws(FormatError) -> FloatBuffer {
        try provider.normScale(prefix + name, dimension: dimension)
    }

    func embedding(_ name: String, shape: [Int]) throws(FormatError) -> LinearWeight {
        try provider.embedding(prefix + name, shape: shape)
    }
}
