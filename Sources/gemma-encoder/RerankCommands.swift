import ArgumentParser
import DocumentIndex
import Foundation
import GemmaEncoder
import TaskHeads

extension RankingLoss: ExpressibleByArgument {}

/// A reranker directory and its base model.
struct RerankerOptions: ParsableArguments {
    @Option(help: "The reranker directory (from `train --task rerank`).")
    var reranker: String

    /// A trained reranker: a head directory, or a T5Gemma checkpoint trained as a first-token ranker (`train --task
    /// rerank --scoring first-token:TOKEN`), which scores with its recorded token and template.
    func load(model: String? = nil) throws -> any PairScorer {
        try TrainedReranker.load(URL(fileURLWithPath: reranker), model: model).scorer
    }
}

struct RerankCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rerank",
        abstract: "Order candidate documents for a query with a cross-encoder reranker.",
        discussion: """
        Candidates: JSON Lines rows with a text (and any other fields, e.g. an id, kept in the output). Prints the \
        candidates best first with their scores, or with --json each row with a "score" field added.
        With a T5Gemma checkpoint instead of a trained reranker, --scoring first-token:TOKEN scores each pair \
        RankT5-style: the pair text (--template) is encoded once and the decoder's first step gives TOKEN's logit \
        (TOKEN as the vocabulary spells it, e.g. ▁yes, or #ID).
        Example: gemma-encoder rerank --reranker rerankers/debian --query "edit text in a terminal" --input candidates.jsonl --top 5
        Example: gemma-encoder rerank --model t5gemma-checkpoint --scoring first-token:▁yes --query "edit text" --input candidates.jsonl
        """)

    @Option(help: "The reranker directory (from `train --task rerank`).")
    var reranker: String?

    @Option(help: "The base model (default: the one recorded in head.json); with --scoring, the T5Gemma checkpoint.")
    var model: String?

    @Option(help: "Score with a T5Gemma checkpoint's decoder instead of a reranker: first-token:TOKEN.")
    var scoring: String?

    @Option(help: "With --scoring: the pair text, with {query} and {document}. (default: \(FirstTokenScorer.defaultTemplate))")
    var template: String = FirstTokenScorer.defaultTemplate

    @Option(help: "The query.")
    var query: String

    @Option(help: "JSON Lines candidates.")
    var input: String

    @Option(name: .customLong("text-field"), help: "Field holding a candidate's text.")
    var textField = "text"

    @Option(help: "Print only the best N.")
    var top: Int?

    @Flag(help: "JSON Lines output: each candidate row with its score.")
    var json = false

    func validate() throws {
        if let top, top <= 0 { throw ValidationError("--top must be positive") }
        switch (reranker, scoring) {
        case (nil, nil): throw ValidationError("give --reranker DIR, or --model with --scoring first-token:TOKEN")
        case (_?, _?): throw ValidationError("--reranker and --scoring exclude each other")
        case (nil, let scoring?):
            guard model != nil else { throw ValidationError("--scoring needs --model (a T5Gemma checkpoint)") }
            guard firstTokenScoring(scoring) != nil else { throw ValidationError("--scoring must be first-token:TOKEN, not '\(scoring)'") }
        default: break
        }
        if scoring == nil, template != FirstTokenScorer.defaultTemplate {
            throw ValidationError("--template applies to --scoring; a trained reranker has its own template")
        }
    }

    /// The trained reranker, or the T5Gemma checkpoint's first-token scorer.
    func scorer() throws -> any PairScorer {
        if let token = scoring.flatMap(firstTokenScoring), let model {
            return try FirstTokenScorer(model: try TextEncoder(model: model), token: token, template: template)
        }
        return try RerankerOptions(reranker: reranker!).load(model: model)
    }

    func run() throws {
        do {
            let rows = try JSONLines.read(path: input)
            let texts = try rows.map { row in
                guard let t = row.object[textField] as? String else {
                    throw InputError(description: "\(input):\(row.line): row has no string field \"\(textField)\"")
                }
                return t
            }
            let ranked = try scorer().rank(query: query, documents: texts).prefix(top ?? texts.count)
            for (rank, item) in ranked.enumerated() {
                if json {
                    var object = rows[item.index].object
                    object["score"] = Double(item.score)
                    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
                    print(String(decoding: data, as: UTF8.self))
                } else {
                    let id = rows[item.index].object["id"].map { "\($0)  " } ?? ""
                    let line = texts[item.index].split(separator: "\n").first.map(String.init) ?? ""
                    print(String(format: "%2d  %8.4f  ", rank + 1, item.score) + id + line)
                }
            }
        } catch {
            fail(error)
        }
    }
}

struct MineNegativesCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mine-negatives",
        abstract: "Build training rows from an index's top results (hard negatives), as sentence-transformers' miner does.",
        discussion: """
        Queries: {"id", "text", "relevant": [document ids]} rows. Output: {"id", "query", "positive", "negatives": […]} \
        rows (what `train --task rerank` and `train --task embedding` read), the positive being the first relevant \
        document's text, the negatives chosen among the best-ranked documents that are not relevant: ranks \
        --range-min ..< --range-max of them, scored by the cosine of the stored vectors (or by --cross-encoder), \
        kept if they pass the score bounds and margins, then the first (--sampling top) or a seeded random choice \
        (random) of --num-negatives. A margin keeps near-duplicates of the positive, which are often unlabelled \
        positives, out of the negatives.
        Example: gemma-encoder mine-negatives --index indexes/debian --queries corpora/debian-retrieval-train.jsonl \
        --output pairs.jsonl --num-negatives 3 --range-min 2 --relative-margin 0.05
        """)

    @Option(help: "The index directory.")
    var index: String

    @OptionGroup var model: IndexModelOption

    @Option(help: "JSON Lines queries.")
    var queries: String

    @Option(help: "Output JSON Lines file.")
    var output: String

    @Option(name: [.customLong("num-negatives"), .customLong("negatives")], help: "Hard negatives per query.")
    var negatives = 7

    @Option(name: [.customLong("range-min"), .customLong("skip")], help: "Skip this many top non-relevant results first (near-duplicates of the positive).")
    var rangeMin = 0

    @Option(name: .customLong("range-max"), help: "Consider only this many top non-relevant results (default: range-min + 10 × negatives, at least 50).")
    var rangeMax: Int?

    @Option(name: .customLong("absolute-margin"), help: "Keep a negative only if its score ≤ the positive's − this.")
    var absoluteMargin: Double?

    @Option(name: .customLong("relative-margin"), help: "Keep a negative only if its score ≤ the positive's × (1 − this).")
    var relativeMargin: Double?

    @Option(name: .customLong("max-score"), help: "Keep a negative only if its score ≤ this.")
    var maxScore: Double?

    @Option(name: .customLong("min-score"), help: "Keep a negative only if its score ≥ this.")
    var minScore: Double?

    @Option(help: "top (the best-ranked that pass) or random (a seeded choice among all that pass).")
    var sampling: NegativeMining.Sampling = .top

    @Option(help: "Seed of random sampling.")
    var seed: UInt64 = 0

    @Option(name: .customLong("cross-encoder"), help: "A reranker directory (train --task rerank) that rescores the positive and the candidates; bounds and margins then apply to its scores.")
    var crossEncoder: String?

    @Flag(name: .customLong("output-scores"), help: "Also write positive_score and negative_scores.")
    var outputScores = false

    @Flag(name: .customLong("keep-short-rows"), help: "Also write the queries that found fewer negatives than asked (by default they are left out, as sentence-transformers' n-tuple output does: `train --task rerank --negatives N` needs N in every row).")
    var keepShortRows = false

    @Option(help: "Which search finds the candidates: vector, keyword or hybrid.")
    var mode: SearchMode = .vector

    var options: NegativeMining.Options {
        var o = NegativeMining.Options()
        o.negatives = negatives
        o.rangeMin = rangeMin
        o.rangeMax = rangeMax
        o.absoluteMargin = absoluteMargin
        o.relativeMargin = relativeMargin
        o.maxScore = maxScore
        o.minScore = minScore
        o.sampling = sampling
        o.seed = seed
        o.mode = mode
        return o
    }

    func validate() throws {
        if negatives <= 0 { throw ValidationError("--negatives must be positive (--num-negatives)") }
        if rangeMin < 0 { throw ValidationError("--range-min must not be negative") }
        if let rangeMax, rangeMax <= rangeMin { throw ValidationError("--range-max must be above --range-min") }
        if let m = absoluteMargin, !(m.isFinite && m >= 0) { throw ValidationError("--absolute-margin must be a number ≥ 0") }
        if let m = relativeMargin, !(m.isFinite && m >= 0 && m < 1) { throw ValidationError("--relative-margin must be in [0, 1)") }
        do { try options.validate() } catch { throw ValidationError("\(error)") }
    }

    func run() throws {
        do {
            let searchIndex = try model.open(index)
            let rescorer = try crossEncoder.map { try RerankerOptions(reranker: $0).load() }
            let mined = try NegativeMining.mine(searchIndex, queries: try RetrievalQuery.read(path: queries), options: options,
                                                rescorer: rescorer)
            let short = mined.filter { $0.negatives.count < negatives }.count
            let rows = keepShortRows ? mined : mined.filter { $0.negatives.count >= negatives }
            guard !rows.isEmpty else {
                fail("\(queries): no query found \(negatives) negatives that pass the filters, nothing written (raise --range-max, loosen the margins or lower --num-negatives)")
            }
            let out = try AtomicOutput(path: output)
            for row in rows {
                var object: [String: Any] = ["id": row.queryID, "query": row.query, "positive": row.positive, "negatives": row.negatives]
                if outputScores {
                    object["positive_score"] = row.positiveScore
                    object["negative_scores"] = row.negativeScores
                }
                out.write(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self) + "\n")
            }
            try out.commit()
            let shortNote = short == 0 ? ""
                : keepShortRows ? "; \(short) of them found fewer than \(negatives) that pass the filters (raise --range-max or loosen the margins)"
                : "; \(short) quer\(short == 1 ? "y" : "ies") left out, having found fewer than \(negatives) that pass the filters (raise --range-max, loosen the margins, or --keep-short-rows)"
            note("\(output): \(rows.count) rows, \(rows.map(\.negatives.count).min() ?? 0)–\(rows.map(\.negatives.count).max() ?? 0) negatives each" + shortNote)
        } catch {
            fail(error)
        }
    }
}

extension NegativeMining.Sampling: ExpressibleByArgument {}

struct EvalRetrievalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-retrieval",
        abstract: "nDCG@10, MRR@10, Recall@k and MAP of vector, keyword, hybrid and reranked search over labelled queries.",
        discussion: """
        Queries: {"id", "text", "relevant": [document ids]} rows. "reranked" re-scores the first --candidates vector \
        results with --rerank and keeps the rest of the top 100 after them.
        """)

    @Option(help: "The index directory.")
    var index: String

    @OptionGroup var model: IndexModelOption

    @Option(help: "JSON Lines queries.")
    var queries: String

    @Option(help: "A reranker directory to evaluate as well.")
    var rerank: String?

    @Option(help: "First-stage results the reranker re-scores.")
    var candidates = 50

    @Flag(help: "Print one JSON object {mode: {\"ndcg@10\", \"mrr@10\", \"recall@1\" … \"recall@100\", \"map@100\"}}.")
    var json = false

    @Option(name: .customLong("per-query"), help: "Also write each query's metrics per mode to this JSON Lines file ({\"id\", \"mode\", metrics…}).")
    var perQuery: String?

    @Option(help: "Also write an HTML report here: a row per mode and the recall@k curves.")
    var report: String?

    func validate() throws {
        if candidates <= 0 { throw ValidationError("--candidates must be positive") }
    }

    func run() throws {
        do {
            let searchIndex = try model.open(index)
            let reranker = try rerank.map { try RerankerOptions(reranker: $0).load() }
            let rows = try RetrievalQuery.read(path: queries)
            let progress = Progress(total: reranker == nil ? 0 : rows.count, label: "reranking")
            let each = try RetrievalEvaluation.evaluatePerQuery(searchIndex, queries: rows, reranker: reranker, candidates: candidates,
                                                                progress: { done, _ in progress.update(done) })
            progress.finish()
            let metrics = each.mapValues(RetrievalMetrics.mean)
            if let perQuery {
                let out = try AtomicOutput(path: perQuery)
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                for mode in each.keys.sorted() {
                    for (query, m) in zip(rows, each[mode]!) {
                        var object = try JSONSerialization.jsonObject(with: try encoder.encode(m)) as! [String: Any]
                        object["id"] = query.id
                        object["mode"] = mode
                        out.write(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self) + "\n")
                    }
                }
                try out.commit()
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let metricsJSON = try encoder.encode(metrics)
            if let report {
                try ReportPages.write(ReportPages.retrieval(metrics, queries: rows.count, index: index, data: metricsJSON), to: report)
            }
            if json {
                print(String(decoding: metricsJSON, as: UTF8.self))
            } else {
                print("\(rows.count) queries\n" + "mode".padding(toLength: 19, withPad: " ", startingAt: 0)
                      + "  nDCG@10   MRR@10  Recall@1  Recall@10  Recall@100   MAP@100")
                for mode in ["vector", "keyword", "hybrid", "reranked", "reranked_cross_only"] {
                    guard let m = metrics[mode] else { continue }
                    print(mode.padding(toLength: 19, withPad: " ", startingAt: 0) + String(format: " %8.4f %8.4f %9.4f %10.4f %11.4f %9.4f", m.ndcg10, m.mrr10, m.recall1, m.recall10, m.recall100, m.map100))
                }
            }
        } catch {
            fail(error)
        }
    }
}

extension RerankerOptions {
    init(reranker: String) {
        self.init()
        self.reranker = reranker
    }
}
