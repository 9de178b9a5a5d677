import ArgumentParser
import EncoderKernels
import Foundation
import GemmaEncoder
import VectorSearch

@main
struct GemmaEncoderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemma-encoder",
        abstract: "Gemma-family language models as text encoders: embeddings, heads, search and reranking on the CPU.",
        subcommands: [EmbedCommand.self, TokenizeCommand.self, IndexCommand.self, SearchCommand.self, ModelsCommand.self,
                      TrainCommand.self, ClassifyCommand.self, EvalCommand.self, FeaturesCommand.self, RerankCommand.self, MineNegativesCommand.self, EvalRetrievalCommand.self,
                      ServeCommand.self, BenchCommand.self, BenchTrainCommand.self, BenchIndexCommand.self, BenchServeCommand.self])

    static func main() async {
        // A malformed thread count is refused before anything runs (the library would fall back silently).
        do throws(CPUBudgetError) { _ = try CPUBudget.resolve() } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            Glibc.exit(2)
        }
        // OpenBLAS chose generic kernels for a CPU it does not recognize: start again with the right ones
        // (BLASCore). If the exec fails, the run goes on, slower but correct.
        if let core = BLASCore.recommended {
            setenv("OPENBLAS_CORETYPE", core, 1)
            execv("/proc/self/exe", CommandLine.unsafeArgv)
        }
        // FAISS runs single-threaded under our own parallelism: OpenMP's spinning workers would starve the
        // OpenBLAS threads that both the encoder and FAISS's exhaustive search use (see VectorIndex).
        try? VectorIndex.setOpenMPThreads(1)
        await main(nil)
    }
}
