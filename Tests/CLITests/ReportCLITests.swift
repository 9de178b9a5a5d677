import Foundation
import TestSupport
import XCTest

/// The HTML reports, opened in headless Chromium as a person would open them: `train` writes report.html
/// into its output (plots of loss and the validation metric, the epochs, the settings), `eval --report` a
/// confusion matrix and per-class precision / recall / F1, `eval-retrieval --report` a row per mode and the
/// recall@k curves; every number on the page is the one the command records in JSON.
final class ReportCLITests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try temporaryDirectory("reports") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func write(_ name: String, _ text: String) throws -> String {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    private func json(_ text: String) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], text)
    }

    /// A table of the page as rows of cell texts.
    private func table(_ browser: HeadlessChromium, _ tab: String, _ id: String) throws -> [[String]] {
        let text = try browser.evaluate("""
            JSON.stringify([...document.querySelectorAll('#\(id) tbody tr')].map((tr) => [...tr.children].map((td) => td.textContent)))
            """, session: tab) as? String ?? "[]"
        return try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [[String]] ?? []
    }

    private func open(_ browser: HeadlessChromium, _ path: String) throws -> String {
        let tab = try browser.newTab(URL(fileURLWithPath: path).absoluteString)
        try browser.waitUntil("document.readyState === 'complete' && document.querySelector('h1') !== null", session: tab)
        return tab
    }

    func testTrainEvalAndRetrievalReportsRenderWithTheRecordedNumbers() throws {
        let model = try tinyEncoderDirectory(in: dir).path
        let texts = ["the cat sat", "a dog ran", "hello there", "tiny words", "more text"]
        let rows = (0..<36).map { #"{"text": "\#(texts[$0 % 5]) \#($0)", "label": "\#(["x", "y", "z"][$0 % 3])"}"# }
        let train = try write("train.jsonl", rows.prefix(30).joined(separator: "\n"))
        let test = try write("test.jsonl", rows.suffix(6).joined(separator: "\n"))
        let head = dir.appendingPathComponent("head").path
        let t = try Tool.run(["train", "--task", "classification", "--data", train, "--model", model, "--hidden", "8", "--epochs", "3",
                              "--lr", "1e-2", "--no-cache", "--out", head])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stderr.contains("report: \(head)/report.html"), t.stderr)
        let config = try json(try String(contentsOfFile: head + "/head.json", encoding: .utf8))
        let epochs = try XCTUnwrap((config["training"] as? [String: Any])?["epochs"] as? [[String: Any]])
        XCTAssertEqual(epochs.count, 3)

        let e = try Tool.run(["eval", "--head", head, "--model", model, "--data", test, "--json", "--report", dir.appendingPathComponent("eval.html").path])
        XCTAssertEqual(e.status, 0, e.stderr)
        let evaluation = try json(e.stdout)

        let corpusLines = try debianCorpusLines(20)
        let corpus = try write("corpus.jsonl", corpusLines.joined(separator: "\n"))
        let queries = try write("queries.jsonl", try corpusLines.prefix(8).map { line -> String in
            let row = try json(line)
            let object: [String: Any] = ["id": row["id"]!, "text": (row["metadata"] as? [String: Any])?["title"] ?? "", "relevant": [row["id"]!]]
            return String(decoding: try JSONSerialization.data(withJSONObject: object), as: UTF8.self)
        }.joined(separator: "\n"))
        let index = dir.appendingPathComponent("index").path
        XCTAssertEqual(try Tool.run(["index", "build", "--index", index, "--corpus", corpus, "--model", model]).status, 0)
        let r = try Tool.run(["eval-retrieval", "--index", index, "--queries", queries, "--json", "--report", dir.appendingPathComponent("retrieval.html").path])
        XCTAssertEqual(r.status, 0, r.stderr)
        let retrieval = try json(r.stdout)

        let browser = try HeadlessChromium()
        defer { browser.quit() }

        // Training: two plots (loss, validation accuracy), a point per epoch and series, the epochs as recorded.
        let trained = try open(browser, head + "/report.html")
        XCTAssertEqual(try browser.evaluate("document.querySelectorAll('svg.plot').length", session: trained) as? Int, 2)
        XCTAssertEqual(try browser.evaluate("document.querySelector('svg.plot').querySelectorAll('circle').length", session: trained) as? Int, 6,
                       "train and validation loss, three epochs each")
        let shown = try table(browser, trained, "epochs")
        XCTAssertEqual(shown.map { $0[0] }, epochs.map { String($0["epoch"] as? Int ?? -1) })
        XCTAssertEqual(shown.map { $0[1] }, epochs.map { String(format: "%.4f", $0["trainLoss"] as? Double ?? $0["train_loss"] as? Double ?? .nan) })
        XCTAssertEqual(shown.map { $0[2] }, epochs.map { String(format: "%.4f", $0["validLoss"] as? Double ?? $0["valid_loss"] as? Double ?? .nan) })
        let settings = try table(browser, trained, "settings")
        XCTAssertTrue(settings.contains(["task", "classification"]), "\(settings)")
        let embedded = try XCTUnwrap(browser.evaluate("document.getElementById('report-data').textContent", session: trained) as? String)
        XCTAssertEqual(try json(embedded) as NSDictionary, config as NSDictionary, "the page embeds head.json")

        // Evaluation: the confusion matrix of --json, and each class's scores computed from it.
        let evaluated = try open(browser, dir.appendingPathComponent("eval.html").path)
        let confusion = try XCTUnwrap(evaluation["confusion"] as? [[Int]])
        let labels = try XCTUnwrap(evaluation["labels"] as? [String])
        XCTAssertEqual(try table(browser, evaluated, "confusion"), zip(labels, confusion).map { [$0] + $1.map(String.init) })
        let perClass = try table(browser, evaluated, "per-class")
        XCTAssertEqual(perClass.count, labels.count)
        for (c, row) in perClass.enumerated() {
            let tp = Double(confusion[c][c]), predicted = Double(confusion.reduce(0) { $0 + $1[c] }), support = confusion[c].reduce(0, +)
            let precision = predicted > 0 ? tp / predicted : 0, recall = support > 0 ? tp / Double(support) : 0
            let f1 = precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0
            XCTAssertEqual(row, [labels[c], String(format: "%.4f", precision), String(format: "%.4f", recall), String(format: "%.4f", f1), String(support)])
        }

        // Retrieval: a row per mode with --json's figures, a recall@k series per mode over k = 1, 5, 10, 20, 100.
        let searched = try open(browser, dir.appendingPathComponent("retrieval.html").path)
        let modes = try table(browser, searched, "modes")
        XCTAssertEqual(Set(modes.map { $0[0] }), Set(retrieval.keys))
        for row in modes {
            let m = try XCTUnwrap(retrieval[row[0]] as? [String: Double])
            XCTAssertEqual(Array(row.dropFirst()), ["ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10", "recall@20", "recall@100", "map@100"]
                .map { String(format: "%.4f", m[$0] ?? .nan) }, row[0])
        }
        XCTAssertEqual(try browser.evaluate("document.querySelectorAll('svg.plot g.series').length", session: searched) as? Int, retrieval.count)
        XCTAssertEqual(try browser.evaluate("document.querySelector('svg.plot g.series').querySelectorAll('circle').length", session: searched) as? Int, 5)
    }
}
