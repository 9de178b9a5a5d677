import ArgumentParser
import Foundation
import GemmaEncoder

struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "A cached model name (see `models list`) or a path to a model directory or .gguf file.")
    var model: String = KnownModel.defaultName

    @Option(name: .customLong("precision"), help: "How Linear weights are stored and multiplied: f32 (default, exact), bf16 (bf16 products where the CPU has them), int8 (Q8_0 blocks; V, O and down in bf16), or auto (the fastest here whose cosine to f32 stays ≥ 0.9999).")
    var precisionChoice: PrecisionChoice = .f32

    var precision: WeightPrecision { precisionChoice.resolved }

    func source() throws -> ModelSource { try ModelStore().source(model) }

    func load() throws -> TextEncoder { try TextEncoder(source: try source(), precision: precision) }
}

extension PrecisionChoice: ExpressibleByArgument {}

struct InputOptions: ParsableArguments {
    @Option(name: .long, help: "JSON Lines input, one object per line.")
    var input: String?

    @Option(name: .long, help: "One text, instead of --input; the result goes to stdout as JSON.")
    var text: String?

    @Option(name: .long, help: "Output file (.jsonl, or .npy where supported). Default: stdout.")
    var output: String?

    func validate() throws {
        guard (input == nil) != (text == nil) else {
            throw ValidationError("give exactly one of --input FILE.jsonl or --text \"…\"")
        }
    }
}

/// The TOKEN of a `--scoring first-token:TOKEN` value (`rerank`, `train`, `bench-train`); nil for any other value.
func firstTokenScoring(_ value: String) -> String? {
    let prefix = "first-token:"
    guard value.hasPrefix(prefix), value.count > prefix.count else { return nil }
    return String(value.dropFirst(prefix.count))
}

/// `fail` for a library error, with the command that fixes it where there is one.
func fail(_ error: any Error) -> Never {
    if case let EncoderError.notCached(model, _) = error { fail("\(error): run gemma-encoder models fetch \(model)") }
    fail("\(error)")
}

/// Writes an error to stderr and exits non-zero, for errors found after argument validation.
func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    exit(1)
}

func note(_ message: String) {
    FileHandle.standardError.write(Data("\(message)\n".utf8))
}
