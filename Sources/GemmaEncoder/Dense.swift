import EncoderKernels
import Foundation
import ModelFormats

/// sentence-transformers' Dense module: y = activation(W·x + b), weights in `model.safetensors` as
/// `linear.weight` (out × in) and optional `linear.bias`.
public struct DenseLayer: Sendable {
    public enum ActivationFunction: String, Sendable {
        case identity = "torch.nn.modules.linear.Identity"
        case tanh = "torch.nn.modules.activation.Tanh"
    }

    public let inputDimension: Int
    public let outputDimension: Int
    public let activation: ActivationFunction
    let weight: FloatBuffer
    let bias: FloatBuffer?

    public init(weight: FloatBuffer, bias: FloatBuffer?, inputDimension: Int, outputDimension: Int,
                activation: ActivationFunction) {
        precondition(weight.count == inputDimension * outputDimension && (bias?.count ?? outputDimension) == outputDimension)
        self.weight = weight
        self.bias = bias
        self.inputDimension = inputDimension
        self.outputDimension = outputDimension
        self.activation = activation
    }

    public init(directory: URL) throws {
        let configURL = directory.appendingPathComponent("config.json")
        let config = try readJSONObject(configURL)
        guard let inDim = config["in_features"] as? Int else {
            throw EncoderError.invalidConfig(file: configURL.path, field: "in_features", "missing field")
        }
        guard let outDim = config["out_features"] as? Int else {
            throw EncoderError.invalidConfig(file: configURL.path, field: "out_features", "missing field")
        }
        let name = (config["activation_function"] as? String) ?? ActivationFunction.identity.rawValue
        guard let activation = ActivationFunction(rawValue: name) else {
            throw EncoderError.invalidConfig(file: configURL.path, field: "activation_function",
                                             "unsupported '\(name)' (Identity and Tanh are supported)")
        }
        let weightsURL = directory.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsURL.path) else {
            throw EncoderError.unsupported("\(directory.path): Dense weights must be in model.safetensors (pytorch_model.bin is not read)")
        }
        let checkpoint = try SafetensorsCheckpoint(url: weightsURL)
        weight = try checkpoint.tensor("linear.weight", shape: [outDim, inDim]).floats()
        let hasBias = (config["bias"] as? Bool) ?? checkpoint.contains("linear.bias")
        bias = hasBias ? try checkpoint.tensor("linear.bias", shape: [outDim]).floats() : nil
        inputDimension = inDim
        outputDimension = outDim
        self.activation = activation
    }

    /// Applies the layer to `rows` vectors at once (rows × in → rows × out).
    public func apply(_ x: [Float], rows: Int) -> [Float] {
        var y = [Float](repeating: 0, count: rows * outputDimension)
        x.withUnsafeBufferPointer { xb in
            y.withUnsafeMutableBufferPointer { yb in
                linear(m: rows, n: outputDimension, k: inputDimension, a: xb.baseAddress!, lda: inputDimension,
                                w: weight.pointer, ldw: inputDimension, c: yb.baseAddress!, ldc: outputDimension)
            }
        }
        if let bias {
            for r in 0..<rows { for i in 0..<outputDimension { y[r * outputDimension + i] += bias.pointer[i] } }
        }
        if activation == .tanh { for i in y.indices { y[i] = tanhf(y[i]) } }
        return y
    }
}
