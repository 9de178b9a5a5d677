import EncoderService
import Foundation
import ServiceFixtures
import TestSupport
import XCTest

/// GET /openapi.json and /docs: every route the server answers is described, each example request is
/// answered 200, and each answer matches the response schema the description publishes (schemas recorded
/// from the same Codable types the handlers decode and encode; objects closed, so a field added to an answer
/// without reaching the description fails here).
final class APIDescriptionTests: XCTestCase {
    var fixture: ServerFixture!

    override func setUpWithError() throws { fixture = try ServerFixture.shared() }

    func testEveryRouteAnswersItsExampleInTheDescribedShape() async throws {
        try await withRouter(fixture.service()) { client in
            let reply = try await client.send("GET", "openapi.json")
            XCTAssertEqual(reply.status, 200, reply.text)
            let spec = reply.object
            XCTAssertEqual(spec["openapi"] as? String, "3.1.0")
            let paths = spec["paths"] as? [String: [String: Any]] ?? [:]
            XCTAssertEqual(Set(paths.keys), ["/v1/embeddings", "/embed", "/rerank", "/predict", "/search", "/tokenize", "/health", "/info",
                                             "/metrics", "/openapi.json", "/docs", "/"])
            let schemas = (spec["components"] as? [String: Any])?["schemas"] as? [String: Any] ?? [:]
            let components = try JSONSerialization.data(withJSONObject: schemas)
            var checked = 0
            for (path, item) in paths.sorted(by: { $0.key < $1.key }) {
                for (method, value) in item {
                    let operation = value as? [String: Any] ?? [:]
                    var body: Data?
                    if let request = operation["requestBody"] as? [String: Any] {
                        let media = (request["content"] as? [String: Any])?["application/json"] as? [String: Any] ?? [:]
                        let example = try XCTUnwrap(media["example"], "\(path) has no example request")
                        body = try JSONSerialization.data(withJSONObject: example)
                        XCTAssertNotNil(media["schema"], path)
                    }
                    let answer = try await client.send(method.uppercased(), String(path.dropFirst()), body: body)
                    XCTAssertEqual(answer.status, 200, "\(method) \(path): \(answer.text)")
                    let responses = operation["responses"] as? [String: Any] ?? [:]
                    let ok = (responses["200"] as? [String: Any])?["content"] as? [String: Any] ?? [:]
                    let (contentType, media) = try XCTUnwrap(ok.first, path)
                    XCTAssertEqual(answer.headers["content-type"]?.split(separator: ";").first.map(String.init),
                                   contentType.split(separator: ";").first.map(String.init), path)
                    if let schema = (media as? [String: Any])?["schema"] {
                        let violation = try OpenAPIValidation.violation(of: answer.body, schema: try JSONSerialization.data(withJSONObject: schema),
                                                                        components: components)
                        XCTAssertNil(violation, "\(method) \(path) answered outside its schema: \(answer.text.prefix(300))")
                        checked += 1
                    }
                    // Model routes list the error statuses their handlers throw, in the Error shape.
                    if body != nil {
                        for status in ["401", "413", "422", "429", "500", "503"] { XCTAssertNotNil(responses[status], "\(path) lacks \(status)") }
                    }
                }
            }
            XCTAssertEqual(checked, 8, "every JSON answer was checked")
            // The pages and the health check need no key; /info does when the server has one.
            for path in ["/", "/docs", "/openapi.json", "/health"] {
                XCTAssertEqual(((paths[path]?["get"] as? [String: Any])?["security"] as? [Any])?.count, 0, path)
            }
            XCTAssertNotNil(((paths["/info"]?["get"] as? [String: Any])?["responses"] as? [String: Any])?["401"])

            // The request schemas are the handlers' own types: /search's fields, `query` alone required.
            let search = ((paths["/search"]?["post"] as? [String: Any])?["requestBody"] as? [String: Any])
            let schema = (((search?["content"] as? [String: Any])?["application/json"] as? [String: Any])?["schema"] as? [String: Any]) ?? [:]
            XCTAssertEqual(Set((schema["properties"] as? [String: Any] ?? [:]).keys),
                           ["index", "query", "k", "mode", "rerank", "candidates", "nprobe", "ef_search", "vector"])
            XCTAssertEqual(schema["required"] as? [String], ["query"])

            // An error answer has the Error shape; the validator is not vacuous.
            let refused = try await client.send("POST", "search", body: Data(#"{"k": 3}"#.utf8))
            XCTAssertEqual(refused.status, 422, refused.text)
            let error = Data(##"{"$ref": "#/components/schemas/Error"}"##.utf8)
            XCTAssertNil(try OpenAPIValidation.violation(of: refused.body, schema: error, components: components))
            let searchAnswer = ((((paths["/search"]?["post"] as? [String: Any])?["responses"] as? [String: Any])?["200"] as? [String: Any])?["content"]
                as? [String: Any])?["application/json"] as? [String: Any]
            let searchSchema = try JSONSerialization.data(withJSONObject: try XCTUnwrap(searchAnswer?["schema"]))
            for (wrong, reason) in [(#"{"index": "docs", "results": []}"#, "missing mode"),
                                    (#"{"index": "docs", "mode": "vector", "results": [], "extra": 1}"#, "extra is not in the schema"),
                                    (#"{"index": "docs", "mode": "vector", "results": [{"id": "a", "score": "high", "text": "t"}]}"#, "a string where")] {
                let violation = try OpenAPIValidation.violation(of: Data(wrong.utf8), schema: searchSchema, components: components)
                XCTAssertTrue(violation?.contains(reason) == true, "\(wrong): \(violation ?? "accepted")")
            }
        }
    }

    /// /docs renders the description in a browser: one section per route, each request's fields and example,
    /// and its Send button answers from this server.
    func testDocsPageRendersEveryRouteInChromium() async throws {
        let service = fixture.service()
        service.start()
        let server = try await RunningServer.start(service, logger: quietLogger)
        do {
            let browser = try HeadlessChromium()
            defer { browser.quit() }
            let tab = try browser.newTab("http://127.0.0.1:\(server.port)/docs")
            try browser.waitUntil("document.querySelectorAll('section.route').length === 12", session: tab)
            let search = try XCTUnwrap(browser.evaluate("document.getElementById('postSearch').textContent", session: tab) as? String)
            XCTAssertTrue(search.contains("ef_search") && search.contains("required"), search)
            _ = try browser.evaluate("document.querySelector('#postSearch button').click()", session: tab)
            try browser.waitUntil("document.querySelector('#postSearch pre.answer').textContent.startsWith('200')", session: tab)
            let answer = try XCTUnwrap(browser.evaluate("document.querySelector('#postSearch pre.answer').textContent", session: tab) as? String)
            XCTAssertTrue(answer.contains("\"results\""), answer)
        } catch {
            try await server.shutdown()
            throw error
        }
        try await server.shutdown()
    }
}
