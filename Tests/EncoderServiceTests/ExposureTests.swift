import EncoderService
import ServiceFixtures
import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

/// The service exposed beyond loopback (`ServerExposure`): API key, CORS, TLS, stalled clients and the
/// connection limit — each against a real server on a loopback socket, through curl and raw sockets.
final class ExposureTests: XCTestCase {
    var fixture: ServerFixture!
    var dir: URL!

    override func setUpWithError() throws {
        fixture = try ServerFixture.shared()
        dir = try temporaryDirectory("exposure")
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    private func serve(_ exposure: ServerExposure, _ body: (Int) async throws -> Void) async throws {
        let service = fixture.service()
        service.start()
        let server = try await RunningServer.start(service, logger: quietLogger, exposure: exposure)
        do { try await body(server.port) } catch {
            try await server.shutdown()
            throw error
        }
        try await server.shutdown()
    }

    func testAPIKeyIsRequiredOnEveryRouteButHealth() async throws {
        var exposure = ServerExposure()
        exposure.apiKey = "s3cret-key"
        try await serve(exposure) { port in
            let base = "http://127.0.0.1:\(port)"
            let embed = ["-X", "POST", "-H", "Content-Type: application/json", "-d", #"{"inputs": ["hello there"]}"#, base + "/embed"]
            XCTAssertEqual(try Curl.run(["\(base)/health"]).status, 200, "the probe needs no key")
            for (headers, message) in [([String](), "requires an API key"), (["-H", "Authorization: Bearer wrong"], "wrong API key"),
                                       (["-H", "Authorization: Bearer s3cret-keyX"], "wrong API key"),
                                       (["-H", "Authorization: Basic s3cret-key"], "wrong API key")] {
                let reply = try Curl.run(headers + embed)
                XCTAssertEqual(reply.status, 401, "\(headers)")
                XCTAssertEqual(reply.object["error_type"] as? String, "Unauthorized")
                XCTAssertTrue((reply.object["error"] as? String ?? "").contains(message), reply.body)
                XCTAssertEqual(reply.headers["www-authenticate"], "Bearer")
            }
            for path in ["/info", "/metrics"] {
                XCTAssertEqual(try Curl.run([base + path]).status, 401, path)
            }
            let ok = try Curl.run(["-H", "Authorization: Bearer s3cret-key"] + embed)
            XCTAssertEqual(ok.status, 200, ok.body)
            XCTAssertEqual(try Curl.run(["-H", "Authorization: Bearer s3cret-key", base + "/metrics"]).status, 200)
        }
    }

    func testCORSOnlyForNamedOrigins() async throws {
        var exposure = ServerExposure()
        exposure.apiKey = "k"
        exposure.corsOrigins = ["https://app.example.org"]
        try await serve(exposure) { port in
            let url = "http://127.0.0.1:\(port)/embed"
            let preflight = ["-X", "OPTIONS", "-H", "Access-Control-Request-Method: POST", "-H", "Access-Control-Request-Headers: authorization, content-type"]
            let allowed = try Curl.run(preflight + ["-H", "Origin: https://app.example.org", url])
            XCTAssertEqual(allowed.status, 204, "a preflight carries no key and is answered")
            XCTAssertEqual(allowed.headers["access-control-allow-origin"], "https://app.example.org")
            XCTAssertTrue(allowed.headers["access-control-allow-headers"]?.contains("Authorization") == true)
            let other = try Curl.run(preflight + ["-H", "Origin: https://evil.example", url])
            XCTAssertNil(other.headers["access-control-allow-origin"])
            XCTAssertNotEqual(other.status, 204)
            // A refusal reaches the allowed page with its CORS headers, so the page can read why.
            let post = ["-X", "POST", "-H", "Content-Type: application/json", "-d", #"{"inputs": ["a dog ran"]}"#]
            let refused = try Curl.run(post + ["-H", "Origin: https://app.example.org", url])
            XCTAssertEqual(refused.status, 401)
            XCTAssertEqual(refused.headers["access-control-allow-origin"], "https://app.example.org")
            let served = try Curl.run(post + ["-H", "Origin: https://app.example.org", "-H", "Authorization: Bearer k", url])
            XCTAssertEqual(served.status, 200)
            XCTAssertEqual(served.headers["access-control-allow-origin"], "https://app.example.org")
            XCTAssertNil(try Curl.run(post + ["-H", "Origin: https://evil.example", "-H", "Authorization: Bearer k", url]).headers["access-control-allow-origin"])
        }
        // Without --cors-origin, no CORS header for anyone.
        try await serve(ServerExposure()) { port in
            let reply = try Curl.run(["-H", "Origin: https://app.example.org", "http://127.0.0.1:\(port)/health"])
            XCTAssertEqual(reply.status, 200)
            XCTAssertNil(reply.headers["access-control-allow-origin"])
        }
    }

    func testHTTPSWithACertificateAndKey() async throws {
        let cert = dir.appendingPathComponent("cert.pem").path, key = dir.appendingPathComponent("key.pem").path
        let openssl = Process()
        openssl.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        openssl.arguments = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                             "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"]
        openssl.standardError = FileHandle.nullDevice
        openssl.standardOutput = FileHandle.nullDevice
        try openssl.run()
        openssl.waitUntilExit()
        XCTAssertEqual(openssl.terminationStatus, 0, "openssl made a self-signed certificate")
        var exposure = ServerExposure()
        exposure.tls = (cert, key)
        try await serve(exposure) { port in
            let reply = try Curl.run(["--cacert", cert, "-X", "POST", "-H", "Content-Type: application/json", "-d", #"{"inputs": ["hello"]}"#,
                                      "https://127.0.0.1:\(port)/embed"])
            XCTAssertEqual(reply.status, 200, reply.body)
            XCTAssertEqual((reply.json as? [[Double]])?.first?.count, fixture.tiny.dimension(options: .init()))
            // Plain HTTP to the TLS port gets no HTTP answer.
            XCTAssertNil(try? Curl.run(["--max-time", "5", "http://127.0.0.1:\(port)/health"]).status)
        }
        // A key that is not a key is named at start.
        try "not a key".write(toFile: key, atomically: true, encoding: .utf8)
        exposure.tls = (cert, key)
        let service = fixture.service()
        do {
            _ = try await RunningServer.start(service, logger: quietLogger, exposure: exposure)
            XCTFail("a server started with a broken key")
        } catch {
            XCTAssertTrue("\(error)".contains(key), "\(error)")
        }
    }

    /// Half a request, then silence: the connection is closed after the idle timeout, and the server keeps
    /// answering others meanwhile. Connections past the limit wait until one closes.
    func testStalledClientsAreClosedAndConnectionsLimited() async throws {
        var exposure = ServerExposure()
        exposure.idleTimeout = 1
        exposure.maxConnections = 2
        try await serve(exposure) { port in
            let stalled = try RawConnection(port: port)
            try stalled.send("POST /embed HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inp")
            let start = Date()
            XCTAssertTrue(stalled.waitForClose(seconds: 10), "a stalled request is closed")
            let waited = Date().timeIntervalSince(start)
            XCTAssertGreaterThanOrEqual(waited, 0.5)
            XCTAssertLessThan(waited, 5)
            // Two silent connections (half a header line each) fill the limit: a third client is not served
            // until one of them is closed by the timeout.
            let first = try RawConnection(port: port), second = try RawConnection(port: port)
            try first.send("GET /hea")
            try second.send("GET /hea")
            usleep(200_000)
            let blocked = Date()
            let reply = try Curl.run(["--max-time", "8", "http://127.0.0.1:\(port)/health"])
            XCTAssertEqual(reply.status, 200)
            XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(blocked), 0.5, "the third connection waited for a free slot")
            first.close()
            second.close()
        }
    }
}

/// curl as the client: status, lower-cased headers, body. Throws when curl gets no HTTP answer.
enum Curl {
    struct Failed: Error { let code: Int32; let stderr: String }

    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: String
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(body.utf8), options: [.fragmentsAllowed]) }
        var object: [String: Any] { json as? [String: Any] ?? [:] }
    }

    static func run(_ arguments: [String]) throws -> Reply {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["curl", "-s", "-S", "-i", "--max-time", "20"] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw Failed(code: process.terminationStatus, stderr: errors) }
        let text = String(decoding: data, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { throw Failed(code: -1, stderr: "no header end in \(text)") }
        let lines = text[..<split.lowerBound].components(separatedBy: "\r\n")
        let status = Int(lines.first?.split(separator: " ").dropFirst().first ?? "") ?? 0
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return Reply(status: status, headers: headers, body: String(text[split.upperBound...]))
    }
}

/// A raw TCP connection to the loopback server, for clients that misbehave.
final class RawConnection {
    private var fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw POSIXError(.ECONNREFUSED) }
    }

    func send(_ text: String) throws {
        let bytes = Array(text.utf8)
        guard Glibc.send(fd, bytes, bytes.count, Int32(MSG_NOSIGNAL)) == bytes.count else { throw POSIXError(.EPIPE) }
    }

    /// Whether the server closed the connection (a read returns end of file or a reset) within `seconds`.
    func waitForClose(seconds: Double) -> Bool {
        var timeout = timeval(tv_sec: Int(seconds), tv_usec: Int(seconds.truncatingRemainder(dividingBy: 1) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, 0)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}
