import ArgumentParser
import Foundation
import GemmaEncoder
import TaskHeads

/// Dumps the pooled vectors a head trains on, so an outside baseline (scripts/baseline-logreg) sees exactly
/// the head's input. `embed` is not that: it runs the model's sentence-transformers pipeline (Dense layers,
/// normalization), which a head does not.
struct FeaturesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "features",
        abstract: "Write the vectors a head with parameter-free pooling is trained on, as a float32 N×D .npy.",
        discussion: """
        The encoder's final token states (through the token-state cache `train` uses), pooled over every token, \
        no Dense layers, no normalization, with the prompt `train` would use for --task.
        Example: gemma-encoder features --input corpora/debian-sections-train.jsonl --output train.npy
        """)

    @OptionGroup var model: ModelOptions

    @Option(help: "JSON Lines rows with a text field.")
    var input: String

    @Option(help: "The .npy file to write.")
    var output: String

    @Option(name: .customLong("text-field"), help: "Field holding the text.")
    var textField = "text"

    @Option(help: "The task whose default prompt applies (classification: the model's Classification prompt).")
    var task: HeadTask = .classification

    @Option(help: "Pooling: mean, first, last or max (as train's --pooling).")
    var pooling: Pooling = .mean

    @OptionGroup var prompt: PromptOptions

    @Option(help: "Attention: bidirectional (encoder) or causal (decoder).")
    var attention: AttentionMode = .bidirectional

    @Flag(name: .customLong("no-cache"), help: "Do not read or write the token-state cache.")
    var noCache = false

    func validate() throws {
        if pooling.isLearned { throw ValidationError("--pooling \(pooling.rawValue) is learned by a head: no fixed vectors to write") }
        if !output.hasSuffix(".npy") { throw ValidationError("--output must end in .npy") }
        if task == .rerank { throw ValidationError("--task: classification or regression") }
    }

    func run() throws {
        do {
            let texts = try JSONLines.read(path: input).map { row in
                guard let t = row.object[textField] as? String else {
                    throw InputError(description: "\(input):\(row.line): row has no string field \"\(textField)\"")
                }
                return t
            }
            let encoder = try model.load()
            let request = TokenStateCache.Request(texts: texts, prompt: try prompt.resolve(encoder, default: task.defaultPromptName),
                                                  attention: attention, modelDigest: try ModelFingerprint.digest(of: encoder.source))
            let stages = StageProgress()
            let states = try (noCache ? nil : TokenStateCache()).states(request, encoder: encoder,
                                                                        progress: { stages.update("encoding \(input)", $0, $1) })
            stages.finish()
            let vectors = try HeadFeatures.pooled(states, pooling: pooling)
            let out = try AtomicOutput(path: output)
            out.write(npyHeader(rows: states.count, columns: states.dimension))
            vectors.withUnsafeBytes { out.write(Data($0)) }
            try out.commit()
            note("wrote \(output): \(states.count) × \(states.dimension), \(pooling.rawValue) pooling, prompt "
                 + (request.prompt.map { "\"\($0)\"" } ?? "none"))
        } catch {
            fail(error)
        }
    }
}
