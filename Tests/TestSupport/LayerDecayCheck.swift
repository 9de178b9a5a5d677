import Foundation

/// One parameter's first optimizer step in a test of layer-wise rate decay: its checkpoint name, how far each
/// value moved, and the largest value before the step (the rounding of the weight bounds what can be resolved).
public struct ParameterStep: Sendable {
    public var name: String
    public var moved: [Float]
    public var largest: Float

    public init(name: String, moved: [Float], largest: Float) {
        self.name = name
        self.moved = moved
        self.largest = largest
    }
}

/// Compares a decayed run's first AdamW step with the undecayed one's, parameter by parameter (AdamW's first step
/// is linear in the rate): layer i of `layers` must move by decay^(L − i) of the plain step, `embed_tokens` by
/// decay^(L + 1), everything else (final norm, Dense layers, adapters above the encoder) by 1. The expected
/// scales come from the checkpoint names, not from the code under test. Returns one message per parameter that
/// moved otherwise (or not at all), and how many distinct depths were checked.
public func layerDecayMismatches(plain: [ParameterStep], decayed: [ParameterStep], decay: Float,
                                 layers: Int) -> (mismatches: [String], depths: Int) {
    var mismatches: [String] = [], scales = Set<Float>()
    if plain.map(\.name) != decayed.map(\.name) { mismatches.append("the two runs train different parameters") }
    for (p, d) in zip(plain, decayed) {
        let parts = p.name.split(separator: ".")
        let layer = parts.first == "layers" && parts.count > 1 ? Int(parts[1]) : nil
        if parts.first == "layers", layer == nil {
            mismatches.append("\(p.name): no layer index in the name")
            continue
        }
        let scale: Float = p.name.hasPrefix("embed_tokens") ? pow(decay, Float(layers + 1))
            : layer.map { pow(decay, Float(layers - $0)) } ?? 1
        scales.insert(scale)
        let size = p.moved.map(abs).max() ?? 0
        guard size > 0 else {
            mismatches.append("\(p.name) did not move")
            continue
        }
        let error = zip(d.moved, p.moved).map { abs($0 - scale * $1) }.max() ?? .infinity
        // LoRA's A moves by weight decay alone (B starts at zero): the weight's rounding then counts.
        if !(error <= 2e-3 * scale * size + 2 * p.largest.ulp) {
            mismatches.append("\(p.name): moved \(error) away from \(scale) of the plain step (\(size))")
        }
    }
    return (mismatches, scales.count)
}
