import ArgumentParser
import GemmaEncoder

@main
struct GemmaEncoderCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma-encoder",
        abstract: "Gemma-family language models as text encoders: embeddings on the CPU.",
        subcommands: [EmbedCommand.self, TokenizeCommand.self, IndexCommand.self, SearchCommand.self, ModelsCommand.self, BenchCommand.self])
}
