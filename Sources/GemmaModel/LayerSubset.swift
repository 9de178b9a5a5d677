import EncoderKernels
import ModelFormats

/// A smaller model made of some of a checkpoint's own layers (a distillation student initialized from its
/// teacher, as DistilBERT and sentence-transformers' layer-reduction recipe do): layer i of the new model
/// reads the weights of layer `layers[i]`; embeddings and the final norm are shared.
public struct LayerSubsetWeights<Base: WeightProvider>: WeightProvider {
    public let base: Base
    public let layers: [Int]

    public init(_ base: Base, layers: [Int]) {
        self.base = base
        self.layers = layers
    }

    /// "layers.3.mlp.up_proj.weight" → "layers.<layers[3]>.mlp.up_proj.weight"; other names unchanged.
    func source(_ name: String) -> String {
        guard name.hasPrefix("layers.") else { return name }
        let rest = name.dropFirst("layers.".count)
        guard let dot = rest.firstIndex(of: "."), let i = Int(rest[..<dot]), layers.indices.contains(i) else { return name }
        return "layers.\(layers[i])" + rest[dot...]
    }

    public func floats(_ name: String, shape: [Int]) throws(FormatError) -> FloatBuffer { try base.floats(source(name), shape: shape) }

    public func storedLinear(_ name: String, shape: [Int], precision: WeightPrecision) throws(FormatError)
        -> (weight: LinearWeight, release: () -> Void) {
        try base.storedLinear(source(name), shape: shape, precision: precision)
    }

    public func normScale(_ name: String, dimension: Int) throws(FormatError) -> FloatBuffer {
        try base.normScale(source(name), dimension: dimension)
    }

    public func normWeight(_ name: String, dimension: Int) throws(FormatError) -> FloatBuffer {
        try base.normWeight(source(name), dimension: dimension)
    }

    public func embedding(_ name: String, shape: [Int]) throws(FormatError) -> LinearWeight { try base.embedding(name, shape: shape) }

    public func contains(_ name: String) -> Bool { base.contains(source(name)) }
}

extension GemmaConfig {
    /// The config of a model made of `layers` of this one (each keeps its attention type: sliding or full).
    public func keepingLayers(_ layers: [Int]) throws(ModelError) -> GemmaConfig {
        guard !layers.isEmpty, layers.allSatisfy({ (0..<numLayers).contains($0) }), Set(layers).count == layers.count else {
            throw .shapeMismatch("student layers \(layers) must be distinct layers of the model's 0..<\(numLayers)")
        }
        var config = self
        config.numLayers = layers.count
        config.layerTypes = layers.map { layerTypes[$0] }
        return config
    }

    /// `count` layers spread evenly over the model, the first and the last always among them (every other
    /// layer for half the depth).
    public func evenlySpacedLayers(_ count: Int) -> [Int] {
        guard count > 1 else { return [numLayers - 1] }
        let n = min(count, numLayers)
        return (0..<n).map { Int((Double($0) * Double(numLayers - 1) / Double(n - 1)).rounded()) }
    }
}
