import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOCore

/// What makes the service safe to expose beyond loopback: an API key, TLS, browser origins, and the limits
/// that keep stalled or too many clients from exhausting it. The defaults serve a trusted loopback caller
/// as before, with timeouts and a connection limit that no well-behaved client meets.
public struct ServerExposure: Sendable {
    /// A key every route but `/health` requires as `Authorization: Bearer KEY`; nil: none.
    public var apiKey: String?
    /// Origins a browser page may call from (CORS), e.g. "https://app.example.org", or "*" for any; empty: no
    /// CORS headers at all, so browsers keep other origins' pages out.
    public var corsOrigins: [String] = []
    /// Seconds a connection may stay silent — idle between requests, or stalled in the middle of sending one —
    /// before it is closed. A request being answered is never cut.
    public var idleTimeout: Double = 60
    /// Connections served at once; further ones wait in the listen queue until one closes.
    public var maxConnections = 1_024
    /// PEM certificate chain and private key: HTTPS instead of HTTP.
    public var tls: (certificate: String, key: String)?

    public init() {}

    /// The server's channel: HTTP/1.1, over TLS when configured; a bad certificate or key file is an error
    /// naming it.
    func serverBuilder() throws -> HTTPServerBuilder {
        let http = HTTPServerBuilder.http1(configuration: .init(idleTimeout: .nanoseconds(Int64(idleTimeout * 1e9))))
        guard let tls else { return http }
        let chain: [NIOSSLCertificate], key: NIOSSLPrivateKey
        do { chain = try NIOSSLCertificate.fromPEMFile(tls.certificate) } catch {
            throw ServiceError.validation("\(tls.certificate): not a PEM certificate (\(error))")
        }
        do { key = try NIOSSLPrivateKey(file: tls.key, format: .pem) } catch {
            throw ServiceError.validation("\(tls.key): not a PEM private key (\(error))")
        }
        let configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain.map { .certificate($0) },
                                                                      privateKey: .privateKey(key))
        return try .tls(http, tlsConfiguration: configuration)
    }

    public var scheme: String { tls == nil ? "http" : "https" }
}

/// Requires the API key on every route but `/health` (a load balancer's probe carries no secret) and the pages
/// (`/`, `/docs`, `/openapi.json`: descriptions without data, whose scripts send the key the user types). The
/// comparison takes the same time wherever the keys differ, so response times do not reveal a prefix.
struct APIKeyMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let key: [UInt8]

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // The health check and the pages hold no data (the pages ask for the key and send it with their calls).
        if Self.open.contains(request.uri.path) { return try await next(request, context) }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
              Self.equal(Array(header.utf8.dropFirst(7)), key) else {
            throw ServiceError(.unauthorized, request.headers[.authorization] == nil
                ? "this server requires an API key: send Authorization: Bearer <key>" : "wrong API key")
        }
        return try await next(request, context)
    }

    static let open: Set<String> = ["/health", "/", "/docs", "/openapi.json"]

    /// Equal bytes, in time that depends only on the lengths.
    static func equal(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(a.count == b.count ? 0 : 1)
        for i in 0..<max(a.count, b.count) {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return difference == 0
    }
}

/// CORS for the named origins only: their requests get `Access-Control-Allow-Origin` (and `Vary: Origin`),
/// their preflight requests a 204 with the methods and headers the routes take — before the API key check,
/// since browsers send no credentials on a preflight. Other origins get no CORS headers.
struct CORSOriginsMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let origins: Set<String>

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard let origin = request.headers[.origin], origins.contains(origin) || origins.contains("*") else {
            // Answers differ by Origin, so caches must keep them apart.
            var response = try await next(request, context)
            Self.varyByOrigin(&response.headers)
            return response
        }
        let allowed = origins.contains("*") ? "*" : origin
        if request.method == .options, request.headers[.accessControlRequestMethod] != nil {
            return Response(status: .noContent, headers: [
                .accessControlAllowOrigin: allowed, .vary: "Origin",
                .accessControlAllowMethods: "GET, POST, OPTIONS",
                .accessControlAllowHeaders: "Content-Type, Authorization",
                .accessControlMaxAge: "600",
            ])
        }
        // Errors become their answers here, so that a refusal (a wrong key, say) reaches the page readable.
        var response: Response
        do { response = try await next(request, context) } catch { response = ObservingMiddleware.response(for: error, request) }
        response.headers[.accessControlAllowOrigin] = allowed
        Self.varyByOrigin(&response.headers)
        response.headers[.accessControlExposeHeaders] = HTTPFront.truncatedHeader.canonicalName
        return response
    }

    /// Adds Origin to the response's Vary, keeping what is there.
    static func varyByOrigin(_ headers: inout HTTPFields) {
        if let vary = headers[.vary], !vary.isEmpty {
            if !vary.lowercased().contains("origin") { headers[.vary] = vary + ", Origin" }
        } else {
            headers[.vary] = "Origin"
        }
    }
}
