import ArgumentParser
import Foundation
import GemmaEncoder
import GemmaTokenizer

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Turn {\"text\"} rows into {\"ids\"} rows with the model's tokenizer (tokenizer.json or GGUF).")

    @OptionGroup var model: ModelOptions
    @OptionGroup var io: InputOptions

    @Flag(name: .customLong("no-special-tokens"), help: "Do not add <bos>/<eos>.")
    var noSpecialTokens = false

    @Option(name: .customLong("max-length"), help: "Truncate to this many tokens, special tokens kept.")
    var maxLength: Int?

    func run() throws {
        do {
            let tokenizer = try model.source().loadTokenizer()
            let texts: [String] = try io.text.map { [$0] } ?? readRows(path: io.input!, allowIds: false).map {
                guard case .text(let t) = $0 else { preconditionFailure("ids rows are not read here") }
                return t
            }
            let out = try AtomicOutput(path: io.output)
            var truncated = 0
            for text in texts {
                let t = tokenizer.encode(text, addSpecialTokens: !noSpecialTokens, maxLength: maxLength)
                if t.truncated { truncated += 1 }
                let ids = "[" + t.ids.map(String.init).joined(separator: ",") + "]"
                out.write(io.text != nil ? ids + "\n" : "{\"ids\":\(ids)}\n")
            }
            try out.commit()
            if truncated > 0 { note("note: \(truncated) of \(texts.count) texts were truncated to \(maxLength!) tokens") }
        } catch {
            fail(error)
        }
    }
}
