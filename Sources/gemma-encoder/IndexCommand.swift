import ArgumentParser
import DocumentIndex
import Foundation
import GemmaEncoder

struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Build and maintain a vector index (FAISS + SQLite) over a JSON Lines corpus.",
        subcommands: [Build.self, Add.self, Delete.self, Info.self])

    struct IndexLocation: ParsableArguments {
        @Option(help: "The index directory (e.g. indexes/debian).")
        var index: String

        var url: URL { URL(fileURLWithPath: index) }
    }

    struct CorpusOptions: ParsableArguments {
        @Option(help: "JSON Lines corpus, one document per line.")
        var corpus: String

        @Option(name: .customLong("id-field"), help: "Field holding the document id.")
        var idField = "id"

        @Option(name: .customLong("text-field"), help: "Field holding the document text.")
        var textField = "text"

        @Option(help: "Documents embedded and committed per batch.")
        var batch = 256

        func validate() throws {
            if batch <= 0 { throw ValidationError("--batch must be positive") }
        }
    }

    struct Build: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create an index from a corpus; re-running after an interruption resumes where it stopped.")

        @OptionGroup var location: IndexLocation
        @OptionGroup var corpus: CorpusOptions
        @OptionGroup var model: ModelOptions

        @Option(help: "FAISS factory string (Flat, HNSW32, IVF256,Flat, IVF256,PQ32, SQ8). Default: by corpus size.")
        var factory: String?

        @Option(help: "Attention for documents and queries: bidirectional or causal (a decoder adapted as an encoder). Recorded in the manifest.")
        var attention: AttentionMode?

        @Option(help: "Pooling instead of the model's own: mean, first, last or max. Recorded in the manifest.")
        var pooling: Pooling?

        func run() throws {
            do {
                let documents = try Corpus.load(path: corpus.corpus, idField: corpus.idField, textField: corpus.textField)
                let encoder = try model.load()
                let index = try FlagHints.indexModel(location.url) {
                    try SearchIndex.create(directory: location.url, encoder: encoder, modelName: model.model, factory: factory,
                                           expectedCount: documents.count, attention: attention, pooling: pooling)
                }
                let added = try runWithProgress(total: documents.count) { progress in
                    try index.add(documents, batch: corpus.batch, resume: true, progress: progress)
                }
                note("\(location.index): \(index.count) documents (\(added) embedded now), factory \(index.manifest.factory)")
            } catch {
                fail(error)
            }
        }
    }

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Add documents to an existing index (ids must be new).")

        @OptionGroup var location: IndexLocation
        @OptionGroup var corpus: CorpusOptions
        @OptionGroup var model: IndexModelOption

        func run() throws {
            do {
                let documents = try Corpus.load(path: corpus.corpus, idField: corpus.idField, textField: corpus.textField)
                let index = try model.open(location.index)
                let added = try runWithProgress(total: documents.count) { progress in
                    try index.add(documents, batch: corpus.batch, resume: false, progress: progress)
                }
                note("\(location.index): added \(added), \(index.count) documents")
            } catch {
                fail(error)
            }
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Remove documents by id.")

        @OptionGroup var location: IndexLocation
        @OptionGroup var model: IndexModelOption

        @Option(name: .customLong("id"), parsing: .upToNextOption, help: "Document ids to remove.")
        var ids: [String]

        func run() throws {
            do {
                let index = try model.open(location.index)
                let removed = try index.delete(ids: ids)
                note("\(location.index): removed \(removed) of \(ids.count), \(index.count) documents")
            } catch {
                fail(error)
            }
        }
    }

    struct Info: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show an index's manifest.")

        @OptionGroup var location: IndexLocation

        func run() throws {
            do {
                print(String(decoding: try Data(contentsOf: location.url.appendingPathComponent("manifest.json")), as: UTF8.self))
            } catch {
                fail("\(location.index): not an index directory (no readable manifest.json)")
            }
        }
    }
}

/// `--model` for commands on an existing index, which default to the model its manifest records.
struct IndexModelOption: ParsableArguments {
    @Option(help: "The model (default: the one recorded in the index's manifest; another model is an error).")
    var model: String?
}

/// Runs `body` with a progress callback drawn on a terminal.
func runWithProgress<T>(total: Int, _ body: (@escaping IndexProgress) throws -> T) throws -> T {
    let progress = Progress(total: total, label: "indexing")
    defer { progress.finish() }
    return try body { done, _ in progress.update(done) }
}
