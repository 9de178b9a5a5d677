import ArgumentParser
import DocumentIndex
import Foundation
import GemmaEncoder
import TaskHeads

extension SearchMode: ExpressibleByArgument {}

struct SearchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "search",
        abstract: "Query an index: vector, keyword (BM25) or hybrid (reciprocal rank fusion).",
        discussion: """
        One query prints a ranked list (or with --json the object {"id", "results": [{"id", "score", "text", "metadata"}]}).
        --input takes {"id", "text"} query rows and writes one such object per query. With --rerank the first \
        --candidates results are re-scored by a cross-encoder reranker (scores are then the reranker's).
        """)

    @Option(help: "The index directory.")
    var index: String

    @OptionGroup var model: IndexModelOption

    @Option(name: [.short, .long], help: "Results per query.")
    var k = 10

    @Option(help: "vector, keyword or hybrid. (default: the best measured on the index's labelled queries: hybrid when `index tune` found a fusion above vector search, else vector)")
    var mode: SearchMode?

    @Flag(help: "JSON output for a single query.")
    var json = false

    @Option(help: "JSON Lines queries {\"id\", \"text\"}.")
    var input: String?

    @Option(help: "Output file for --input (default stdout).")
    var output: String?

    @Option(help: "A reranker directory: re-score the first --candidates results with it.")
    var rerank: String?

    @Option(help: "First-stage results re-scored by --rerank.")
    var candidates = 50

    @Option(help: "IVF indexes: inverted lists visited per query (default: the index's stored value; its list count searches exhaustively).")
    var nprobe: Int?

    @Option(name: .customLong("ef-search"), help: "HNSW indexes (or IVF over an HNSW quantizer): candidates explored per query (default: the index's stored value).")
    var efSearch: Int?

    @Argument(help: "The query.")
    var query: String?

    func validate() throws {
        guard (query == nil) != (input == nil) else { throw ValidationError("give a query or --input FILE.jsonl") }
        if k <= 0 || candidates <= 0 { throw ValidationError("-k and --candidates must be positive") }
        if (nprobe ?? 1) <= 0 || (efSearch ?? 1) <= 0 { throw ValidationError("--nprobe and --ef-search must be positive") }
    }

    func run() throws {
        do {
            let searchIndex = try openIndex()
            let pipeline = SearchPipeline(index: searchIndex, mode: mode ?? searchIndex.manifest.bestSearchMode, candidates: candidates,
                                          tuning: SearchTuning(nprobe: nprobe, efSearch: efSearch))
            let reranker = try rerank.map { try RerankerOptions(reranker: $0).load() }
            func search(_ text: String) throws -> [RankedHit] { try pipeline.search(text, k: k, reranker: reranker) }
            if let query {
                let results = try search(query)
                if json {
                    print(resultObject(id: nil, results))
                } else {
                    // Each result: rank, score, id and headline, then a snippet with the query's words in bold on a terminal.
                    let terminal = isatty(1) != 0
                    for (rank, hit) in results.enumerated() {
                        let summary = ResultSummary(text: hit.result.text, metadataJSON: hit.result.metadataJSON, query: query,
                                                    titleField: searchIndex.manifest.titleField)
                        let id = terminal ? "\u{1B}[1m\(hit.result.id)\u{1B}[0m" : hit.result.id
                        print(String(format: "%2d  %.4f  %@  %@", rank + 1, hit.score, id as NSString, summary.headline as NSString))
                        print("              " + Self.marked(summary, bold: terminal))
                    }
                }
                return
            }
            let out = try AtomicOutput(path: output)
            let rows = try JSONLines.read(path: input!)
            let progress = Progress(total: rows.count, label: "searching")
            for (n, row) in rows.enumerated() {
                guard let text = row.object["text"] as? String else {
                    throw InputError(description: "\(input!):\(row.line): row has no \"text\" field")
                }
                out.write(resultObject(id: row.object["id"], try search(text)) + "\n")
                progress.update(n + 1)
            }
            progress.finish()
            try out.commit()
        } catch {
            fail(error)
        }
    }

    /// The snippet with its highlights in bold (ANSI), or plain.
    static func marked(_ summary: ResultSummary, bold: Bool) -> String {
        guard bold else { return summary.snippet }
        var out = "", characters = Array(summary.snippet), at = 0
        for range in summary.highlights {
            out += String(characters[at..<range.lowerBound]) + "\u{1B}[1m" + String(characters[range]) + "\u{1B}[0m"
            at = range.upperBound
        }
        characters.removeFirst(at)
        return out + String(characters)
    }

    private func openIndex() throws -> SearchIndex {
        try model.open(index)
    }

    private func resultObject(id: Any?, _ hits: [RankedHit]) -> String {
        let items = hits.map { hit -> [String: Any] in
            let r = hit.result
            let metadata = (try? JSONSerialization.jsonObject(with: Data(r.metadataJSON.utf8))) ?? [String: Any]()
            return ["id": r.id, "score": hit.score, "text": r.text, "metadata": metadata]
        }
        var object: [String: Any] = ["results": items]
        object["id"] = id ?? NSNull()
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data("{}".utf8)
        return String(decoding: data, as: UTF8.self)
    }
}
