import ArgumentParser
import Foundation
import GemmaEncoder

extension AttentionMode: ExpressibleByArgument {}

enum EmbedFormat: String, ExpressibleByArgument, CaseIterable {
    case jsonl, npy
}

struct EmbedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "embed",
        abstract: "Embed texts ({\"text\"} rows) or token ids ({\"ids\"} rows).",
        discussion: """
        Output: JSON Lines {"embedding": […]} (or {"hidden_states": [[…], …]} with --pooling none), with the
        input row's "id" (a string or an integer) carried through, or a float32 N×D .npy (--format npy, the
        default when --output ends in .npy) with the ids beside it. With --text, a JSON array on stdout.
        As a streaming worker (a Spark partition piped through it): --input - --output - reads rows on
        standard input and writes each group of 256 before reading on, in input order, in bounded memory;
        the first bad row ends the run (exit 1) with its line number on stderr.
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

    @Option(name: .customLong("format"), help: "Output format: jsonl (one row per input, its \"id\" carried through) or npy (float32 N×D; needs --output FILE.npy, the ids go beside it in FILE.ids.jsonl). Default: npy when --output ends in .npy, else jsonl.")
    var formatChoice: EmbedFormat?

    var format: EmbedFormat { formatChoice ?? (io.output?.hasSuffix(".npy") == true ? .npy : .jsonl) }

    func validate() throws {
        if prompt != nil, promptText != nil { throw ValidationError("give --prompt or --prompt-text, not both") }
        if let dim, dim <= 0 { throw ValidationError("--dim must be positive") }
        if batchTokens <= 0 { throw ValidationError("--batch-tokens must be positive") }
        if let name = poolingName, !tokenStates, pooling == nil || pooling!.isLearned {
            throw ValidationError("--pooling \(name): expected mean, first, last, max, mean_sqrt_len_tokens, weightedmean or none")
        }
        if tokenStates, dim != nil { throw ValidationError("--dim needs pooled vectors, not --pooling none") }
        if tokenStates, format == .npy {
            throw ValidationError(".npy output needs pooled vectors; use .jsonl with --pooling none")
        }
        if format == .npy, io.text != nil || io.output == nil || io.output == "-" {
            throw ValidationError("--format npy needs --input and --output FILE.npy (the header's row count is written at the end, so not to standard output)")
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
        let rows = EmbeddingRows(encoder: encoder, options: options, prompt: promptText, tokenStates: tokenStates,
                                 attention: attention, batchTokens: batchTokens)
        if let text = io.text {
            let out = try AtomicOutput(path: io.output)
            rows.input(.text(text), id: nil)
            try rows.flush { vector, _ in out.write(jsonArray(vector) + "\n") } states: { states, _ in
                out.write("[" + states.map { jsonArray($0) }.joined(separator: ",") + "]\n")
            }
            return try out.commit()
        }
        try stream(rows, from: io.input!, to: io.output == "-" ? nil : io.output)
    }

    /// Embeds the rows of a file or of standard input ("-") as they arrive, 256 at a time, writing each
    /// group before reading the next: memory stays bounded however long the stream (a Spark partition piped
    /// through the binary). A bad row ends the run with its line number: on standard output the rows before
    /// it have gone out, in order; a file output is not published at all.
    private func stream(_ rows: EmbeddingRows, from input: String, to output: String?) throws {
        let reader = try JSONLines.Reader(path: input)
        let out = try AtomicOutput(path: output)
        let npy = format == .npy
        // The row count is known only at the end: a header with room for any count now, the real one then.
        let header = npyHeader(rows: Int.max, columns: npy ? rows.dimension : 0)
        if npy { out.write(header) }
        // .npy holds numbers only: the ids go beside it, one JSON value per line (null for a row without), always
        // written so that an ids file left by an earlier run never sits beside vectors it does not describe.
        let idsOutput = npy ? try AtomicOutput(path: Self.idsPath(output!)) : nil
        // The total (an extra pass over a file) only where progress is drawn.
        let progress = Progress(total: input == "-" || isatty(2) == 0 ? nil : JSONLines.lineCount(path: input), label: "embedding")
        let write = {
            try rows.flush { vector, id in
                if npy {
                    vector.withUnsafeBytes { out.write(Data($0)) }
                    idsOutput!.write((id ?? "null") + "\n")
                } else {
                    out.write(id.map { "{\"id\":\($0),\"embedding\":" } ?? "{\"embedding\":")
                    out.write(jsonArray(vector) + "}\n")
                }
            } states: { states, id in
                out.write(id.map { "{\"id\":\($0),\"hidden_states\":[" } ?? "{\"hidden_states\":[")
                out.write(states.map { jsonArray($0) }.joined(separator: ",") + "]}\n")
            }
            progress.update(rows.written)
        }
        do {
            while true {
                let row: JSONLines.Row?
                do {
                    row = try reader.next()
                    if let row { rows.input(try inputRow(row, file: reader.name, allowIds: true), id: try rowID(row, file: reader.name)) }
                } catch {
                    if output == nil { try write() }
                    throw error
                }
                guard row != nil else { break }
                if rows.pending == 256 { try write() }
            }
            try write()
        } catch {
            out.abandon()
            idsOutput?.abandon()
            throw error
        }
        progress.finish()
        if rows.truncated > 0 {
            note("note: \(rows.truncated) of \(rows.written) inputs were longer than \(rows.encoder.maxSequenceLength) tokens and were truncated")
        }
        if npy { out.overwrite(npyHeader(rows: rows.written, columns: rows.dimension, length: header.count), at: 0) }
        // Both outputs are checked before either is published, so a failed write replaces neither.
        do {
            try out.check()
            try idsOutput?.check()
        } catch {
            out.abandon()
            idsOutput?.abandon()
            throw error
        }
        try out.commit()
        try idsOutput?.commit()
    }

    /// Where `--format npy` puts the ids: `vectors.npy` → `vectors.ids.jsonl`.
    static func idsPath(_ npyPath: String) -> String {
        (npyPath.hasSuffix(".npy") ? String(npyPath.dropLast(4)) : npyPath) + ".ids.jsonl"
    }
}

/// Rows waiting to be embedded, in input order, and what has been written.
private final class EmbeddingRows {
    let encoder: TextEncoder
    let options: EmbeddingOptions
    let prompt: String?
    let tokenStates: Bool
    let attention: AttentionMode
    let batchTokens: Int
    private var inputs: [EncoderInput] = []
    private var ids: [String?] = []
    private(set) var written = 0
    private(set) var truncated = 0

    init(encoder: TextEncoder, options: EmbeddingOptions, prompt: String?, tokenStates: Bool, attention: AttentionMode,
         batchTokens: Int) {
        self.encoder = encoder
        self.options = options
        self.prompt = prompt
        self.tokenStates = tokenStates
        self.attention = attention
        self.batchTokens = batchTokens
    }

    var pending: Int { inputs.count }
    var dimension: Int { encoder.dimension(options: options) }

    func input(_ row: InputRow, id: String?) {
        let input: EncoderInput
        switch row {
        case .text(let t): input = encoder.tokenize([t], prompt: prompt)[0]
        case .ids(let ids): input = EncoderInput(ids: ids)
        }
        if input.truncated { truncated += 1 }
        inputs.append(input)
        ids.append(id)
    }

    /// Embeds the pending rows and hands each result, in input order, to `vector` (pooled) or `states`
    /// (`--pooling none`), with its id.
    func flush(vector: ([Float], String?) -> Void, states: ([[Float]], String?) -> Void) throws {
        guard !inputs.isEmpty else { return }
        if tokenStates {
            for (row, s) in try encoder.hiddenStates(inputs, attention: attention, batchTokens: batchTokens).enumerated() { states(s, ids[row]) }
        } else {
            for (row, v) in try encoder.embed(inputs, options: options).enumerated() { vector(v, ids[row]) }
        }
        written += inputs.count
        inputs.removeAll(keepingCapacity: true)
        ids.removeAll(keepingCapacity: true)
    }
}
