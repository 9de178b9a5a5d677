import ArgumentParser
import DocumentIndex
import Foundation
import GemmaEncoder

struct IndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "index",
        abstract: "Build and maintain a vector index (FAISS + SQLite) over a JSON Lines corpus.",
        subcommands: [Build.self, Add.self, Delete.self, Info.self, Train.self, Merge.self, Tune.self])

    struct IndexLocation: ParsableArguments {
        @Option(help: "The index directory (e.g. indexes/debian).")
        var index: String

        var url: URL { URL(fileURLWithPath: index) }
    }

    struct CorpusOptions: ParsableArguments {
        @Option(help: "JSON Lines corpus, one document per line (- reads standard input).")
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
            abstract: "Create an index from a corpus; re-running after an interruption resumes where it stopped.",
            discussion: """
            A shard of a sharded index: --trained DIR (made by index train) and --first-id N, a range of internal
            ids no other shard uses; the shards are then joined by index merge.
            """)

        @OptionGroup var location: IndexLocation
        @OptionGroup var corpus: CorpusOptions
        @OptionGroup var model: ModelOptions

        @Option(help: "FAISS factory string (Flat, HNSW32, IVF256,Flat, IVF256,PQ32, SQ8). Default: by corpus size.")
        var factory: String?

        @Option(help: "Attention for documents and queries: bidirectional or causal (a decoder adapted as an encoder). Recorded in the manifest.")
        var attention: AttentionMode?

        @Option(help: "Pooling instead of the model's own: mean, first, last or max. Recorded in the manifest.")
        var pooling: Pooling?

        @Option(help: "Build a shard from this trained quantizer (index train); factory, attention and pooling come from it.")
        var trained: String?

        @Option(name: .customLong("first-id"), help: "First internal (64-bit) id of a new index: shards of one index take disjoint ranges. (default: 1)")
        var firstID: Int64?

        @Option(name: .customLong("title-field"), help: "The metadata field holding a document's title (in the row's metadata object, or a top-level field of a row without one): it fills the model's document prompt (EmbeddingGemma: \"title: TITLE | text: …\" instead of \"title: none\") and heads the results. Recorded in the manifest.")
        var titleField = "title"

        @Flag(name: .customLong("no-titles"), help: "Embed documents with the model's plain document prompt, titles or not.")
        var noTitles = false

        func validate() throws {
            if trained != nil, factory != nil || attention != nil || pooling != nil {
                throw ValidationError("--trained sets the factory, attention and pooling (those it was trained with); drop --factory, --attention and --pooling")
            }
            if let firstID, firstID < 0 { throw ValidationError("--first-id must not be negative") }
        }

        func run() throws {
            do {
                let documents = try Corpus.load(path: corpus.corpus, idField: corpus.idField, textField: corpus.textField)
                let encoder = try model.load()
                let index = try FlagHints.indexModel(location.url) {
                    try SearchIndex.create(directory: location.url, encoder: encoder, modelName: model.model, factory: factory,
                                           expectedCount: documents.count, attention: attention, pooling: pooling,
                                           trained: trained.map { URL(fileURLWithPath: $0) }, titleField: noTitles ? nil : titleField)
                }
                let added = try runWithProgress(total: documents.count) { progress in
                    try index.add(documents, batch: corpus.batch, resume: true, firstID: firstID, progress: progress)
                }
                note("\(location.index): \(index.count) documents (\(added) embedded now), factory \(index.manifest.factory)")
            } catch {
                fail(error)
            }
        }
    }

    struct Train: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Train an IVF quantizer once on a sample, for the shards of a sharded index (index build --trained).",
            discussion: """
            Writes an empty index holding the trained quantizer (and PQ codebooks); every shard built from it
            assigns vectors to the same lists, so index merge joins them into exactly the index one process would
            build. The sample: a JSON Lines corpus, a few hundred rows per list (FAISS warns below 39 per list).
            """)

        @Option(help: "FAISS factory string of an IVF index: IVFn,Flat, IVFn,PQm or IVFn,SQ8.")
        var factory: String

        @Option(help: "JSON Lines sample of the corpus to train on.")
        var sample: String

        @Option(name: [.customShort("o"), .customLong("out")], help: "The directory to write (replaced if it exists).")
        var out: String

        @Option(name: .customLong("id-field"), help: "Field holding the document id.")
        var idField = "id"

        @Option(name: .customLong("text-field"), help: "Field holding the document text.")
        var textField = "text"

        @OptionGroup var model: ModelOptions

        @Option(help: "Attention for documents and queries: bidirectional or causal. Recorded in the manifest.")
        var attention: AttentionMode?

        @Option(help: "Pooling instead of the model's own: mean, first, last or max. Recorded in the manifest.")
        var pooling: Pooling?

        func run() throws {
            do {
                let documents = try Corpus.load(path: sample, idField: idField, textField: textField)
                let encoder = try model.load()
                let manifest = try runWithProgress(total: documents.count, label: "embedding the sample") { progress in
                    try SearchIndex.train(directory: URL(fileURLWithPath: out), encoder: encoder, modelName: model.model,
                                          factory: factory, sample: documents, attention: attention, pooling: pooling,
                                          progress: progress)
                }
                note("\(out): \(manifest.factory) trained on \(documents.count) documents (quantizer sha256 \(manifest.quantizer!.prefix(12))…)")
            } catch {
                fail(error)
            }
        }
    }

    struct Merge: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Merge shard indexes (built from one trained quantizer) into one index.",
            discussion: """
            FAISS inverted lists are appended (ids kept) and the SQLite document stores copied into one, whose
            full-text index is rebuilt from them. Shards trained from different quantizers or models, or holding
            the same id, are refused before anything is written. The result is published whole or not at all.
            """)

        @Option(help: "The merged index directory (replaced if it exists).")
        var out: String

        @Flag(help: "Keep the merged inverted lists on disk (index.ivfdata, memory-mapped when searched) instead of in memory: for indexes larger than memory. The shards are mapped, not loaded.")
        var ondisk = false

        @Argument(help: "Shard index directories.")
        var shards: [String]

        func validate() throws {
            if shards.isEmpty { throw ValidationError("give the shard directories to merge") }
        }

        func run() throws {
            do {
                let progress = Progress(total: shards.count, label: "merging shards")
                let manifest = try SearchIndex.merge(shards: shards.map { URL(fileURLWithPath: $0) }, into: URL(fileURLWithPath: out),
                                                     onDisk: ondisk) {
                    done, _ in progress.update(done)
                }
                progress.finish()
                note("\(out): \(manifest.count) documents from \(shards.count) shards, factory \(manifest.factory)")
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

    struct Tune: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Fit hybrid search's fusion to labelled queries and store it in the index's manifest.",
            discussion: """
            Queries: JSON Lines {"id", "text", "relevant": [document ids]} (as eval-retrieval reads them). Tries \
            reciprocal rank fusion and a normalized score combination at vector weights 0, 0.05, …, 1 (the ends are \
            keyword and vector search alone), keeps the best nDCG@10, and prints what each scored. Hybrid search then \
            uses it, and `search` defaults to hybrid when it beat vector search on these queries. Tune on queries \
            you will not evaluate on. Shards (--index repeated) are tuned as one, as they are searched together, and \
            the fit is stored in each.
            Example: gemma-encoder index tune --index indexes/debian --queries corpora/debian-retrieval-train.jsonl
            """)

        @Option(help: "The index directory; repeated: shards searched as one, tuned together, the fit stored in each.")
        var index: [String]
        @OptionGroup var model: IndexModelOption

        @Option(help: "Labelled queries (JSON Lines with id, text, relevant).")
        var queries: String

        @Flag(help: "Measure and print, without storing the fusion.")
        var dryRun = false

        @Flag(help: "Remove a stored fusion (back to the standard one: normalized scores, vector weight 0.7).")
        var reset = false

        @Flag(help: "One JSON object: every candidate's nDCG@10 and the choice.")
        var json = false

        func run() throws {
            do {
                guard let first = index.first else { throw ValidationError("give the index with --index") }
                let opened = try model.open(first)
                let shards = try [opened] + index.dropFirst().map { try SearchIndex(directory: URL(fileURLWithPath: $0), encoder: opened.model) }
                let searched: any SearchableIndex = shards.count == 1 ? opened : try IndexShards(shards)
                let name = index.joined(separator: ", ")
                if reset {
                    try shards.forEach { try $0.setFusion(nil) }
                    return note("\(name): hybrid search uses the standard \(HybridFusion.standard)")
                }
                let report = try searched.tuneFusion(try RetrievalQuery.read(path: queries))
                if !dryRun { try shards.forEach { try $0.setFusion(report.best) } }
                let tuned = report.best.tuned!
                if json {
                    let object: [String: Any] = [
                        "queries": tuned.queries, "vector_ndcg@10": report.vectorNDCG10, "keyword_ndcg@10": report.keywordNDCG10,
                        "best": ["method": report.best.method.rawValue, "vector_weight": report.best.vectorWeight, "ndcg@10": tuned.ndcg10],
                        "candidates": report.candidates.map { ["method": $0.fusion.method.rawValue, "vector_weight": $0.fusion.vectorWeight,
                                                               "ndcg@10": $0.ndcg10] },
                        "stored": !dryRun,
                    ]
                    print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
                } else {
                    print("vector weight   rrf      score    (nDCG@10 on \(tuned.queries) queries)")
                    for w in SearchIndex.fusionWeights {
                        let row = HybridFusion.Method.allCases.map { m in
                            report.candidates.first { $0.fusion.method == m && $0.fusion.vectorWeight == w }.map { String(format: "%.4f", $0.ndcg10) } ?? "-"
                        }
                        print(String(format: "%13.2f   %@   %@", w, row[0], row[1]))
                    }
                    print(String(format: "vector alone %.4f, keyword alone %.4f; best: %@ (%.4f)", report.vectorNDCG10, report.keywordNDCG10,
                                 report.best.description, tuned.ndcg10))
                }
                note(dryRun ? "\(name): nothing stored (--dry-run)"
                            : "\(name): hybrid search uses \(report.best); `search` defaults to \(report.best.bestMode.rawValue)")
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
func runWithProgress<T>(total: Int, label: String = "indexing", _ body: (@escaping IndexProgress) throws -> T) throws -> T {
    let progress = Progress(total: total, label: label)
    defer { progress.finish() }
    return try body { done, _ in progress.update(done) }
}
