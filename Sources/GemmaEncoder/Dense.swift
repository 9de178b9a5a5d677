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
    /// (out × in), row-major, and the optional bias (out): what training copies into its parameters.
    public let weight: FloatBuffer
    public let bias: FloatBuffer?

    public init(weight: FloatBuffer, bias: FloatBuffer?, inputDimension: Int, outputDimension: Int,
                activation: ActivationFunction) {
        precondition(weight.count == inputDimension * outputDimension && (bias?.count ?? outputDimension) == outputDimension)
        self.weight = weight
        self.bias = bias
        self.inputDimension = inputDimension
        self.outputDimension = outputDimension
        self.activation = activation
    }

    /// `config.json` (`in_features`, `out_features`, `bias`, `activation_function`) and `model.safetensors` of a
    /// Dense module directory.
    public init(directory: URL) throws(EncoderError) {
        let configURL = directory.appendingPathComponent("config.json")
        let config: DenseConfigFile
        do throws(FormatError) { config = try JSONFile.decode(DenseConfigFile.self, from: configURL) } catch { throw EncoderError(error) }
        let name = config.activation_function ?? ActivationFunction.identity.rawValue
        guard let activation = ActivationFunction(rawValue: name) else {
            throw .invalidConfig(file: configURL.path, field: "activation_function", "unsupported '\(name)' (Identity and Tanh are supported)")
        }
        let weightsURL = directory.appendingPathComponent("model.safetensors")
        guard FileManager.default.fileExists(atPath: weightsURL.path) else {
            throw .unsupported("\(directory.path): Dense weights must be in model.safetensors (pytorch_model.bin is not read)")
        }
        let (inDim, outDim) = (config.in_features, config.out_features)
        do throws(FormatError) {
            let checkpoint = try SafetensorsCheckpoint(url: weightsURL)
            weight = try checkpoint.tensor("linear.weight", shape: [outDim, inDim]).floats()
            let hasBias = config.bias ?? checkpoint.contains("linear.bias")
            bias = hasBias ? try checkpoint.tensor("linear.bias", shape: [outDim]).floats() : nil
        } catch {
            throw EncoderError(error)
        }
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

/// A Dense module's `config.json`.
private struct DenseConfigFile: Decodable {
    var in_features: Int
    var out_features: Int
    var bias: Bool?
    var activation_function: String?
}
