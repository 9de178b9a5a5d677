import Foundation
import Hummingbird
import HummingbirdTesting
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// An HTTP answer as the tests read it, whichever way the request travelled.
struct Reply: Sendable {
    var status: Int
    /// Lower-cased names.
    var headers: [String: String]
    var body: Data

    var json: Any? { try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) }
    var object: [String: Any] { json as? [String: Any] ?? [:] }
    var text: String { String(decoding: body, as: UTF8.self) }
}

/// Sends requests to the service: over a loopback socket (`SocketClient`) or through HummingbirdTesting
/// (`TestingClient`), so the same assertions serve both.
protocol ServiceClient: Sendable {
    func send(_ method: String, _ path: String, body: Data?) async throws -> Reply
}

extension ServiceClient {
    func send(_ method: String, _ path: String) async throws -> Reply { try await send(method, path, body: nil) }

    func post(_ path: String, _ object: Any) async throws -> Reply {
        try await send("POST", path, body: try JSONSerialization.data(withJSONObject: object, options: [.fragmentsAllowed]))
    }
}

/// A method name HTTPTypes does not accept.
struct BadMethod: Error { let name: String }

/// HummingbirdTesting's client, in router mode (straight into the router, with the service's middleware and
/// error mapping, no socket) or live mode (one keep-alive connection to a test server).
struct TestingClient: ServiceClient {
    let client: any TestClientProtocol

    func send(_ method: String, _ path: String, body: Data?) async throws -> Reply {
        guard let httpMethod = HTTPRequest.Method(method) else { throw BadMethod(name: method) }
        var headers: HTTPFields = [:]
        if body != nil { headers[.contentType] = "application/json" }
        let response = try await client.execute(uri: "/" + path, method: httpMethod, headers: headers,
                                                body: body.map { ByteBuffer(bytes: $0) })
        var fields: [String: String] = [:]
        for field in response.headers { fields[field.name.canonicalName] = field.value }
        return Reply(status: Int(response.status.code), headers: fields, body: Data(response.body.readableBytesView))
    }
}

/// A server's reply that URLSession did not hand over as HTTP.
struct NotHTTP: Error { let response: String }

/// URLSession against a live loopback server: the way a real client reaches `gemma-encoder serve`, with many
/// connections at once. @unchecked: URLSession is thread-safe but not marked Sendable on Linux.
struct SocketClient: ServiceClient, @unchecked Sendable {
    let base: URL
    let session: URLSession

    init(port: Int) {
        base = URL(string: "http://127.0.0.1:\(port)")!  // a valid URL for every port number
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 64
        configuration.timeoutIntervalForRequest = 60
        session = URLSession(configuration: configuration)
    }

    func send(_ method: String, _ path: String, body: Data?) async throws -> Reply {
        var request = URLRequest(url: base.appendingPathComponent(path))
        request.httpMethod = method
        request.httpBody = body
        if body != nil { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        let (data, response) = try await session.data(for: request)
        guard let http = response as? HTTPURLResponse else { throw NotHTTP(response: "\(response)") }
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields { headers[String(describing: key).lowercased()] = String(describing: value) }
        return Reply(status: http.statusCode, headers: headers, body: data)
    }
}

func floats(_ any: Any?) -> [Float] { (any as? [Any] ?? []).map { Float(($0 as? NSNumber)?.doubleValue ?? .nan) } }
