import EncoderService
import Foundation
import ServiceFixtures
import TestSupport
import XCTest

/// GET /: the search page in headless Chromium against a real server on loopback: a query typed into the
/// box and submitted with Enter shows the same hits, in the same order and with the same scores, as /search
/// answers for it; the query's words are marked in the snippets; the mode and rerank controls change the
/// request; the address carries the search, so reloading it searches again.
final class SearchPageTests: XCTestCase {
    var fixture: ServerFixture!

    override func setUpWithError() throws { fixture = try ServerFixture.shared() }

    func testTypedQueryShowsTheSearchResults() async throws {
        let service = fixture.service()
        service.start()
        let server = try await RunningServer.start(service, logger: quietLogger)
        let client = SocketClient(port: server.port)
        do {
            let browser = try HeadlessChromium()
            defer { browser.quit() }
            let tab = try browser.newTab("http://127.0.0.1:\(server.port)/")
            try browser.waitUntil("document.querySelectorAll('#index option').length === 1", session: tab)
            _ = try browser.evaluate("document.getElementById('q').focus()", session: tab)
            try browser.type("cat sat", session: tab)
            try browser.pressEnter(session: tab)
            try browser.waitUntil("document.querySelectorAll('#results li').length > 0", session: tab)
            let expected = try await client.post("search", ["query": "cat sat", "k": 10, "rerank": false])
            try assertShown(browser, tab, expected, marks: ["cat", "sat"])
            let address = try XCTUnwrap(browser.evaluate("location.search", session: tab) as? String)
            XCTAssertEqual(address, "?q=cat+sat&index=docs")

            // Keyword mode, reranked, 3 hits: through the controls, then from the address alone in a new tab.
            _ = try browser.evaluate("""
                document.getElementById('mode').value = 'keyword'; document.getElementById('rerank').checked = true;
                document.getElementById('k').value = '3'; document.getElementById('results').replaceChildren();
                document.getElementById('go').click()
                """, session: tab)
            try browser.waitUntil("document.querySelectorAll('#results li').length > 0", session: tab)
            let reranked = try await client.post("search", ["query": "cat sat", "k": 3, "mode": "keyword", "rerank": true])
            try assertShown(browser, tab, reranked, marks: ["cat", "sat"])
            let status = try XCTUnwrap(browser.evaluate("document.getElementById('status').textContent", session: tab) as? String)
            XCTAssertTrue(status.contains("keyword, reranked"), status)
            let again = try browser.newTab("http://127.0.0.1:\(server.port)/" + (try XCTUnwrap(browser.evaluate("location.search", session: tab) as? String)))
            try browser.waitUntil("document.querySelectorAll('#results li').length > 0", session: again)
            try assertShown(browser, again, reranked, marks: ["cat", "sat"])

            // A refused search (an index the server does not serve) shows the server's message instead of results.
            _ = try browser.evaluate("""
                const o = document.createElement('option'); o.value = 'gone'; o.textContent = 'gone';
                document.getElementById('index').append(o); document.getElementById('index').value = 'gone';
                document.getElementById('go').click()
                """, session: tab)
            try browser.waitUntil("document.getElementById('status').className === 'error'", session: tab)
            let message = try XCTUnwrap(browser.evaluate("document.getElementById('status').textContent", session: tab) as? String)
            XCTAssertTrue(message.contains("unknown index 'gone'"), message)
            XCTAssertEqual(try browser.evaluate("document.querySelectorAll('#results li').length", session: tab) as? Int, 0)
            if let directory = ProcessInfo.processInfo.environment["GEMMA_ENCODER_SCREENSHOTS"] {
                try browser.screenshot(session: again).write(to: URL(fileURLWithPath: directory).appendingPathComponent("search-page-test.png"))
            }
        } catch {
            try await server.shutdown()
            throw error
        }
        try await server.shutdown()
    }

    /// The page's hits (id, score to four places, marked words) are /search's answer, in order.
    private func assertShown(_ browser: HeadlessChromium, _ tab: String, _ expected: Reply, marks: Set<String>,
                             file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(expected.status, 200, expected.text, file: file, line: line)
        let hits = expected.object["results"] as? [[String: Any]] ?? []
        let shown = try browser.evaluate("""
            JSON.stringify([...document.querySelectorAll('#results li')].map((li) => ({
              id: li.querySelector('.id').textContent, score: li.querySelector('.score').textContent,
              headline: li.querySelector('.headline').textContent,
              marks: [...li.querySelectorAll('mark')].map((m) => m.textContent.toLowerCase()) })))
            """, session: tab) as? String ?? "[]"
        let rows = try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [[String: Any]] ?? []
        XCTAssertFalse(hits.isEmpty, file: file, line: line)
        XCTAssertEqual(rows.map { $0["id"] as? String }, hits.map { $0["id"] as? String }, file: file, line: line)
        XCTAssertEqual(rows.map { $0["score"] as? String }, hits.map { String(format: "%.4f", $0["score"] as? Double ?? .nan) }, file: file, line: line)
        XCTAssertEqual(rows.map { $0["headline"] as? String }, hits.map { ($0["summary"] as? [String: Any])?["headline"] as? String },
                       file: file, line: line)
        let marked = Set(rows.flatMap { $0["marks"] as? [String] ?? [] })
        XCTAssertFalse(marked.isEmpty, "no query word is marked", file: file, line: line)
        XCTAssertTrue(marked.isSubset(of: marks), "\(marked) marks words outside the query", file: file, line: line)
    }
}
