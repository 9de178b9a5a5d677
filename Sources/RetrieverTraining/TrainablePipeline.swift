import EncoderKernels
import Foundation
import GemmaEncoder
import GemmaTraining
import ModelFormats

/// What a sentence-transformers model does after its transformer — pooling, Dense layers, L2 normalization —
/// with a backward. The Dense weights are `Parameter`s, trained by the same optimizer as the encoder (as
/// sentence-transformers trains every module of the model with one learning rate).
public final class TrainablePipeline: @unchecked Sendable {
    public struct Dense: Sendable {
        public let weight: Parameter
        public let bias: Parameter?
        public let activation: DenseLayer.ActivationFunction
        public var inputDimension: Int { weight.shape[1] }
        public var outputDimension: Int { weight.shape[0] }
    }

    public let pooling: PoolingConfig
    public let dense: [Dense]
    public let normalize: Bool

    /// Copies `pipeline`'s Dense weights into trainable f32 parameters (names as their modules' files hold them,
    /// prefixed by the layer's position: "dense.0.linear.weight").
    public init(_ pipeline: EmbeddingPipeline) throws(TrainingError) {
        guard !pipeline.pooling.modes.contains(where: \.isLearned) else {
            throw .invalidOption("an embedding model pools without learned parameters; attention pooling belongs to a head")
        }
        if let first = pipeline.dense.first, first.inputDimension != pipeline.pooling.outputDimension {
            throw .invalidOption("the pooling gives \(pipeline.pooling.outputDimension) values but the first Dense layer takes \(first.inputDimension): choose a pooling with as many modes as the model's")
        }
        pooling = pipeline.pooling
        normalize = pipeline.normalize
        dense = pipeline.dense.enumerated().map { i, layer in
            let weight = Parameter(name: "dense.\(i).linear.weight", shape: [layer.outputDimension, layer.inputDimension],
                                   value: Tensor(copying: layer.weight.pointer, count: layer.weight.count), kind: .matrix)
            let bias = layer.bias.map {
                Parameter(name: "dense.\(i).linear.bias", shape: [layer.outputDimension],
                          value: Tensor(copying: $0.pointer, count: $0.count), kind: .normWeight)
            }
            return Dense(weight: weight, bias: bias, activation: layer.activation)
        }
    }

    public var outputDimension: Int { dense.last?.outputDimension ?? pooling.outputDimension }
    public var parameters: [Parameter] { dense.flatMap { [$0.weight] + ($0.bias.map { [$0] } ?? []) } }

    /// Starts or stops training the Dense layers (a LoRA or top:K run may keep them frozen).
    public func setTrained(_ trained: Bool) { for p in parameters { p.setTrained(trained) } }

    /// The pipeline as inference runs it, with the current weights (for export and evaluation).
    public var embeddingPipeline: EmbeddingPipeline {
        EmbeddingPipeline(pooling: pooling, dense: dense.map { layer in
            DenseLayer(weight: FloatBuffer(layer.weight.value.array), bias: layer.bias.map { FloatBuffer($0.value.array) },
                       inputDimension: layer.inputDimension, outputDimension: layer.outputDimension,
                       activation: layer.activation)
        }, normalize: normalize)
    }

    /// What a forward keeps for its backward.
    public struct Tape {
        public let rows: Int
        /// The embeddings (rows × outputDimension): normalized when the pipeline normalizes.
        public let output: [Float]
        let offsets: [Int]
        let used: [Range<Int>]
        let argmax: [[[Int32]]]
        /// The input of each Dense layer and its output after the activation.
        let denseInputs: [[Float]]
        let denseOutputs: [[Float]]
        /// ‖x‖ of each row before normalization.
        let norms: [Float]
    }

    /// Pools each sequence of `hidden` (tokens × C, packed by `offsets`), applies the Dense layers and normalizes.
    /// `promptTokens[i]` tokens of sequence i are left out of pooling when the pooling excludes the prompt.
    public func forward(hidden: UnsafePointer<Float>, offsets: [Int], promptTokens: [Int], threads: Int = 1) -> Tape {
        let rows = offsets.count - 1, d = pooling.dimension, width = pooling.outputDimension
        var x = [Float](repeating: 0, count: rows * width)
        var used: [Range<Int>] = [], argmax: [[[Int32]]] = []
        x.withUnsafeMutableBufferPointer { out in
            for r in 0..<rows {
                let length = offsets[r + 1] - offsets[r]
                let range = (pooling.includePrompt ? 0 : min(promptTokens[r], length))..<length
                used.append(range)
                argmax.append(pooling.modes.enumerated().map { i, mode in
                    mode.pool(hidden + offsets[r] * d, length: length, dimension: d, used: range,
                              out: out.baseAddress! + r * width + i * d)
                })
            }
        }
        var inputs: [[Float]] = [], outputs: [[Float]] = []
        for layer in dense {
            inputs.append(x)
            var y = [Float](repeating: 0, count: rows * layer.outputDimension)
            x.withUnsafeBufferPointer { xb in
                y.withUnsafeMutableBufferPointer { yb in
                    linear(m: rows, n: layer.outputDimension, k: layer.inputDimension, a: xb.baseAddress!, lda: layer.inputDimension,
                           w: layer.weight.value.pointer, ldw: layer.inputDimension, c: yb.baseAddress!, ldc: layer.outputDimension,
                           threads: threads)
                }
            }
            if let bias = layer.bias {
                for r in 0..<rows { for i in 0..<layer.outputDimension { y[r * layer.outputDimension + i] += bias.value.pointer[i] } }
            }
            if layer.activation == .tanh { for i in y.indices { y[i] = tanhf(y[i]) } }
            outputs.append(y)
            x = y
        }
        var norms = [Float](repeating: 1, count: rows)
        if normalize {
            let w = outputDimension
            for r in 0..<rows {
                var s: Float = 0
                for i in 0..<w { s += x[r * w + i] * x[r * w + i] }
                // torch.nn.functional.normalize: x / max(‖x‖, 1e-12).
                let norm = max(s.squareRoot(), 1e-12)
                norms[r] = norm
                for i in 0..<w { x[r * w + i] /= norm }
            }
        }
        return Tape(rows: rows, output: x, offsets: offsets, used: used, argmax: argmax, denseInputs: inputs,
                    denseOutputs: outputs, norms: norms)
    }

    /// Given dL/d(output) (rows × outputDimension), accumulates the trained Dense layers' gradients and adds
    /// dL/d(hidden) into `gradHidden` (tokens × C, packed as the forward's).
    public func backward(_ tape: Tape, gradOutput: [Float], gradHidden: UnsafeMutablePointer<Float>, threads: Int = 1) {
        let rows = tape.rows
        var g = gradOutput
        if normalize {
            // y = x / ‖x‖: dx = (dy − y (y·dy)) / ‖x‖.
            let w = outputDimension
            for r in 0..<rows {
                var dot: Float = 0
                for i in 0..<w { dot += tape.output[r * w + i] * g[r * w + i] }
                for i in 0..<w { g[r * w + i] = (g[r * w + i] - tape.output[r * w + i] * dot) / tape.norms[r] }
            }
        }
        for (l, layer) in dense.enumerated().reversed() {
            let n = layer.outputDimension, k = layer.inputDimension
            if layer.activation == .tanh {
                let y = tape.denseOutputs[l]
                for i in g.indices { g[i] *= 1 - y[i] * y[i] }
            }
            if let bias = layer.bias?.gradient {
                for r in 0..<rows { for i in 0..<n { bias.pointer[i] += g[r * n + i] } }
            }
            var dx = [Float](repeating: 0, count: rows * k)
            g.withUnsafeBufferPointer { gb in
                if let dw = layer.weight.gradient {
                    tape.denseInputs[l].withUnsafeBufferPointer { xb in
                        linearWeightGradient(m: rows, n: n, k: k, gradOut: gb.baseAddress!, lddy: n, x: xb.baseAddress!, ldx: k,
                                             gradWeight: dw.pointer, ldw: k, threads: threads)
                    }
                }
                dx.withUnsafeMutableBufferPointer { db in
                    linearInputGradient(m: rows, n: n, k: k, gradOut: gb.baseAddress!, lddy: n, w: layer.weight.value.pointer,
                                        ldw: k, gradIn: db.baseAddress!, lddx: k, threads: threads)
                }
            }
            g = dx
        }
        let d = pooling.dimension, width = pooling.outputDimension
        g.withUnsafeBufferPointer { gb in
            for r in 0..<rows {
                let length = tape.offsets[r + 1] - tape.offsets[r]
                for (i, mode) in pooling.modes.enumerated() {
                    mode.poolBackward(gradOut: gb.baseAddress! + r * width + i * d, length: length, dimension: d,
                                      used: tape.used[r], argmax: tape.argmax[r][i], gradIn: gradHidden + tape.offsets[r] * d)
                }
            }
        }
    }
}
