import ArgumentParser
import Foundation
import GemmaEncoder

struct ModelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "models",
        abstract: "Fetch and list models in the cache ($GEMMA_ENCODER_CACHE or ~/.cache/gemma-encoder).",
        subcommands: [Fetch.self, List.self])

    struct Fetch: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Download, verify and unpack known models (idempotent, resumable).")

        @Argument(help: "Model names: \(KnownModel.all.map(\.name).joined(separator: ", ")).")
        var names: [String] = [KnownModel.defaultName]

        func validate() throws {
            for name in names where !KnownModel.all.contains(where: { $0.name == name }) {
                throw ValidationError("unknown model '\(name)' (known: \(KnownModel.all.map(\.name).joined(separator: ", ")))")
            }
        }

        func run() throws {
            let fetcher = ModelFetcher(store: ModelStore())
            for name in names {
                do {
                    let path = try fetcher.fetch(KnownModel.all.first { $0.name == name }!, log: note)
                    print(path.path)
                } catch {
                    fail(error)
                }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show cached models and the ones that can be fetched.")

        func run() throws {
            let store = ModelStore()
            let cached = store.cachedModels()
            print("cache: \(store.modelsDirectory.path)")
            for model in cached {
                print(String(format: "  %-24@ %8.1f MB  %@", model.name as NSString, Double(model.bytes) / 1e6, model.path.path as NSString))
            }
            for known in KnownModel.all where !cached.contains(where: { $0.name == known.name }) {
                print(String(format: "  %-24@ %@", known.name as NSString, "not cached: gemma-encoder models fetch \(known.name)  (\(known.summary))" as NSString))
            }
        }
    }
}
