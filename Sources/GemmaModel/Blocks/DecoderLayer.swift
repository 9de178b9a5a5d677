import EncoderKernels
import ModelFormats

/// One decoder block run as an encoder layer: attention then MLP, each a residual branch with an input norm
/// and, where the family has them (`GemmaConfig.usesSandwichNorms`), an output norm.
struct DecoderLayer: Sendable {
    let type: LayerType
    let attentionInputNorm: RMSNorm
    let attention: SelfAttention
    let attentionOutputNorm: RMSNorm?
    let mlpInputNorm: RMSNorm
    let mlp: GatedMLP
    let mlpOutputNorm: RMSNorm?

    /// `weights` is scoped to the layer ("layers.3").
    init(config c: GemmaConfig, index: Int, weights: WeightScope, precision: WeightPrecision) throws(FormatError) {
        let h = c.hiddenSize
        func norm(_ name: String) throws(FormatError) -> RMSNorm {
            RMSNorm(scale: try weights.normScale(name, dimension: h), eps: c.rmsNormEps)
        }
        type = c.layerTypes[index]
        attentionInputNorm = try norm("input_layernorm.weight")
        attention = try SelfAttention(config: c, weights: weights.scoped("self_attn"), precision: precision)
        mlp = try GatedMLP(config: c, weights: weights.scoped("mlp"), precision: precision)
        if c.usesSandwichNorms {
            attentionOutputNorm = try norm("post_attention_layernorm.weight")
            mlpInputNorm = try norm("pre_feedforward_layernorm.weight")
            mlpOutputNorm = try norm("post_feedforward_layernorm.weight")
        } else {
            // Gemma 1 names the MLP's input norm post_attention_layernorm: it follows the attention residual.
            attentionOutputNorm = nil
            mlpInputNorm = try norm("post_attention_layernorm.weight")
            mlpOutputNorm = nil
        }
    }

    /// x ← x + norm?(attention(norm(x))); x ← x + norm?(mlp(norm(x))).
    // x: (T, C), updated in place
    func forward(_ x: UnsafeMutablePointer<Float>, batch: PackedBatch, rope: RopeTable, span: AttentionSpan,
                 buffers: ForwardBuffers) {
        let t = batch.tokens, h = batch.hiddenSize
        let normed = buffers.normed, branch = buffers.branch
        buffers.timer.time(.norm) { attentionInputNorm.forward(x, rows: t, out: normed) }
        attention.forward(normed, batch: batch, rope: rope, span: span, buffers: buffers, out: branch)
        // The branch's norm, the residual join and the MLP's input norm in one pass over the rows.
        buffers.timer.time(.residual) {
            RMSNorm.join(branch, into: x, rows: t, dim: h, branchNorm: attentionOutputNorm, next: mlpInputNorm, normed: normed)
        }
        mlp.forward(normed, rows: t, hiddenSize: h, buffers: buffers, out: branch)
        buffers.timer.time(.residual) {
            RMSNorm.join(branch, into: x, rows: t, dim: h, branchNorm: mlpOutputNorm, next: nil, normed: nil)
        }
    }

    var weights: [LinearWeight] { attention.weights + mlp.weights }
}
