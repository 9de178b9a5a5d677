import Foundation
import TestSupport
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `serve ARGUMENTS --port 0`, started; its address from the first line it prints. Its log goes to `stderr`
/// when given.
func startServer(_ arguments: [String], logLevel: String = "error", stderr: Pipe? = nil,
                 environment: [String: String] = [:]) throws -> (Process, URL) {
    let process = Process()
    process.executableURL = Tool.binary
    process.arguments = ["serve"] + arguments + ["--port", "0", "--log-level", logLevel]
    if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
    let stdout = Pipe()
    process.standardOutput = stdout
    process.standardError = stderr ?? FileHandle.nullDevice
    try process.run()
    var line = Data()
    while !line.contains(UInt8(ascii: "\n")) {
        let chunk = stdout.fileHandleForReading.availableData
        guard !chunk.isEmpty else { break }
        line.append(chunk)
    }
    let banner = String(decoding: line, as: UTF8.self)
    guard let range = banner.range(of: "http://"),
          let url = URL(string: String(banner[range.lowerBound...]).trimmingCharacters(in: .whitespacesAndNewlines)) else {
        process.terminate()
        throw NSError(domain: "serve", code: 1, userInfo: [NSLocalizedDescriptionKey: "no address in '\(banner)' from serve \(arguments)"])
    }
    return (process, url)
}

/// POST `body` (a JSON object) to `url`/`route`; the answer's status and its JSON.
func postJSON(_ url: URL, _ route: String, _ body: [String: Any]) async throws -> (status: Int, json: Any) {
    var request = URLRequest(url: url.appendingPathComponent(route))
    request.httpMethod = "POST"
    request.httpBody = try JSONSerialization.data(withJSONObject: body)
    let (data, response) = try await URLSession.shared.data(for: request)
    return ((response as? HTTPURLResponse)?.statusCode ?? 0, try JSONSerialization.jsonObject(with: data))
}
