import ArgumentParser
import Foundation
import GemmaEncoder

extension AttentionMode: ExpressibleByArgument {}

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Embed texts ({\"text\"} rows) or token ids ({\"ids\"} rows).",
        discussion: """
        Output: JSON Lines {"embedding": […]} (or {"hidden_states": [[…], …]} with --pooling none), or a float32
        N×D .npy when --output ends in .npy. With --text, a JSON array on stdout.
        """)

    @OptionGroup var model: ModelOptions
    @OptionGroup var io: InputOptions

    @Option(name: .customLong("pooling"),
            help: "Pooling: mean|first|last|max|mean_sqrt_len_tokens|weightedmean, or none for every token's state. Default: the model's (sentence-transformers), else mean.")
    var poolingName: String?

    /// true for `--pooling none`: token states instead of one vector.
    var tokenStates: Bool { poolingName == "none" }
    var pooling: Pooling? { poolingName.flatMap(Pooling.init(rawValue:)) }

    @Option(help: "Attention: bidirectional (encoder) or causal (decoder).")
    var attention: AttentionMode = .bidirectional

    @Flag(name: .customLong("no-normalize"), help: "Do not L2-normalize pooled vectors.")
    var noNormalize = false

    @Option(help: "A prompt by name from config_sentence_transformers.json (e.g. query, document).")
    var prompt: String?

    @Option(name: .customLong("prompt-text"), help: "A literal prompt prepended to every text.")
    var promptText: String?

    @Option(help: "Matryoshka: keep the first N dimensions (e.g. 512, 256, 128) and re-normalize.")
    var dim: Int?

    @Option(name: .customLong("batch-tokens"), help: "Tokens per forward batch.")
    var batchTokens: Int = 8192

    func validate() throws {
        if prompt != nil, promptText != nil { throw ValidationError("give --prompt or --prompt-text, not both") }
        if let dim, dim <= 0 { throw ValidationError("--dim must be positive") }
        if batchTokens <= 0 { throw ValidationError("--batch-tokens must be positive") }
        if let name = poolingName, !tokenStates, pooling == nil || pooling!.isLearned {
            throw ValidationError("--pooling \(name): expected mean, first, last, max, mean_sqrt_len_tokens, weightedmean or none")
        }
        if tokenStates, dim != nil { throw ValidationError("--dim needs pooled vectors, not --pooling none") }
        if tokenStates, io.output?.hasSuffix(".npy") == true {
            throw ValidationError(".npy output needs pooled vectors; use .jsonl with --pooling none")
        }
    }

    func run() throws {
        do {
            try embed()
        } catch let error as ValidationError {
            throw error
        } catch {
            fail(error)
        }
    }

    private func embed() throws {
        let encoder = try model.load()
        let promptText = try prompt.map { try encoder.prompt(named: $0) } ?? self.promptText
        var options = EmbeddingOptions(prompt: promptText, attention: attention, pooling: pooling,
                                       normalize: noNormalize ? false : nil, dimension: dim)
        options.batchTokens = batchTokens
        if let dim {
            var full = options
            full.dimension = nil
            let maximum = encoder.dimension(options: full)
            guard dim <= maximum else { fail("--dim \(dim) must be between 1 and the model's \(maximum)") }
        }

        let rows: [InputRow] = try io.text.map { [.text($0)] } ?? readRows(path: io.input!, allowIds: true)
        let inputs = rows.map { row -> EncoderInput in
            switch row {
            case .text(let t): return encoder.tokenize([t], prompt: promptText)[0]
            case .ids(let ids): return EncoderInput(ids: ids)
            }
        }
        let truncated = inputs.filter(\.truncated).count
        if truncated > 0 {
            note("note: \(truncated) of \(inputs.count) inputs were longer than \(encoder.maxSequenceLength) tokens and were truncated")
        }

        let out = try AtomicOutput(path: io.output)
        let npy = io.output?.hasSuffix(".npy") == true
        if npy { out.write(npyHeader(rows: inputs.count, columns: encoder.dimension(options: options))) }
        let progress = Progress(total: io.text == nil ? inputs.count : 0, label: "embedding")
        let chunk = 256
        for start in stride(from: 0, to: inputs.count, by: chunk) {
            let part = Array(inputs[start..<min(start + chunk, inputs.count)])
            if tokenStates {
                for states in try encoder.hiddenStates(part, attention: attention, batchTokens: batchTokens) {
                    let rows = states.map { jsonArray($0) }.joined(separator: ",")
                    out.write(io.text != nil ? "[\(rows)]\n" : "{\"hidden_states\":[\(rows)]}\n")
                }
            } else {
                for v in try encoder.embed(part, options: options) {
                    if npy {
                        v.withUnsafeBytes { out.write(Data($0)) }
                    } else {
                        out.write(io.text != nil ? jsonArray(v) + "\n" : "{\"embedding\":\(jsonArray(v))}\n")
                    }
                }
            }
            progress.update(start + part.count)
        }
        progress.finish()
        try out.commit()
    }
}
