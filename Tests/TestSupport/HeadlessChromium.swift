import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Debian's Chromium, headless, driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`: the
/// browser reads NUL-terminated JSON commands on fd 3 and writes answers and events on fd 4), so a test loads
/// a page, types into it and reads the DOM as a user's browser would, with no WebSocket client.
public final class HeadlessChromium {
    public struct Failure: Error, CustomStringConvertible { public let description: String }

    public static let executable = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }

    private let pid: pid_t
    private let toBrowser: FileHandle
    private let fromBrowser: FileHandle
    private var buffer = Data()
    private var nextID = 1
    private let profile: URL

    public init() throws {
        guard let executable = Self.executable else {
            throw Failure(description: "Chromium is not installed (Debian's chromium package; scripts/install-deps installs it)")
        }
        profile = FileManager.default.temporaryDirectory.appendingPathComponent("chromium-\(UUID().uuidString)")
        var commands: [Int32] = [0, 0], answers: [Int32] = [0, 0]
        guard pipe(&commands) == 0, pipe(&answers) == 0 else { throw Failure(description: "pipe: \(errno)") }
        // Our ends stay ours: the browser gets only fds 3 and 4.
        _ = fcntl(commands[1], F_SETFD, FD_CLOEXEC)
        _ = fcntl(answers[0], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, commands[0], 3)
        posix_spawn_file_actions_adddup2(&actions, answers[1], 4)
        let devnull = Glibc.open("/dev/null", O_WRONLY)
        posix_spawn_file_actions_adddup2(&actions, devnull, 1)
        posix_spawn_file_actions_adddup2(&actions, devnull, 2)
        let arguments = [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                         "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe", "--window-size=1100,900",
                         "--user-data-dir=\(profile.path)", "about:blank"]
        var argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, executable, &actions, nil, &argv, environ)
        Glibc.close(commands[0]); Glibc.close(answers[1]); Glibc.close(devnull)
        guard status == 0 else { throw Failure(description: "could not start \(executable): \(status)") }
        pid = child
        toBrowser = FileHandle(fileDescriptor: commands[1], closeOnDealloc: true)
        fromBrowser = FileHandle(fileDescriptor: answers[0], closeOnDealloc: true)
    }

    deinit { quit() }

    public func quit() {
        guard pid > 0, kill(pid, 0) == 0 else { return }
        _ = try? send("Browser.close")
        var status: Int32 = 0
        for _ in 0..<50 where waitpid(pid, &status, WNOHANG) == 0 { usleep(100_000) }
        if kill(pid, 0) == 0 { kill(pid, SIGKILL); waitpid(pid, &status, 0) }
        try? FileManager.default.removeItem(at: profile)
    }

    /// Sends one command and returns its result, skipping the events that arrive before it.
    @discardableResult
    public func send(_ method: String, _ params: [String: Any] = [:], session: String? = nil) throws -> [String: Any] {
        let id = nextID
        nextID += 1
        var message: [String: Any] = ["id": id, "method": method, "params": params]
        if let session { message["sessionId"] = session }
        toBrowser.write(try JSONSerialization.data(withJSONObject: message) + Data([0]))
        while true {
            let reply = try readMessage()
            guard reply["id"] as? Int == id else { continue }
            if let error = reply["error"] as? [String: Any] { throw Failure(description: "\(method): \(error["message"] ?? error)") }
            return reply["result"] as? [String: Any] ?? [:]
        }
    }

    private func readMessage() throws -> [String: Any] {
        while true {
            if let end = buffer.firstIndex(of: 0) {
                let message = buffer[buffer.startIndex..<end]
                buffer = Data(buffer[(end + 1)...])
                return try JSONSerialization.jsonObject(with: message) as? [String: Any] ?? [:]
            }
            let chunk = fromBrowser.availableData
            guard !chunk.isEmpty else { throw Failure(description: "Chromium closed the DevTools pipe") }
            buffer += chunk
        }
    }

    /// A new tab at `url`; returns the session its commands go to.
    public func newTab(_ url: String) throws -> String {
        let target = try send("Target.createTarget", ["url": "about:blank"])["targetId"] as? String ?? ""
        let session = try send("Target.attachToTarget", ["targetId": target, "flatten": true])["sessionId"] as? String ?? ""
        try send("Page.enable", session: session)
        try send("Page.navigate", ["url": url], session: session)
        return session
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    public func evaluate(_ expression: String, session: String) throws -> Any? {
        let result = try send("Runtime.evaluate", ["expression": expression, "returnByValue": true, "awaitPromise": true], session: session)
        if let exception = result["exceptionDetails"] as? [String: Any] {
            throw Failure(description: "\(expression): \((exception["exception"] as? [String: Any])?["description"] ?? exception)")
        }
        return (result["result"] as? [String: Any])?["value"]
    }

    /// Polls `expression` until it is true (or `seconds` pass).
    public func waitUntil(_ expression: String, session: String, seconds: Double = 20) throws {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try evaluate(expression, session: session) as? Bool == true { return }
            usleep(50_000)
        }
        throw Failure(description: "timed out waiting for \(expression)")
    }

    /// Types `text` where the focus is, as keyboard input (input events fire as they do for a person).
    public func type(_ text: String, session: String) throws {
        try send("Input.insertText", ["text": text], session: session)
    }

    /// Presses Enter (a form's implicit submission).
    public func pressEnter(session: String) throws {
        for kind in ["keyDown", "keyUp"] {
            var event: [String: Any] = ["type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13]
            if kind == "keyDown" { event["text"] = "\r" }
            try send("Input.dispatchKeyEvent", event, session: session)
        }
    }

    /// The page as a PNG.
    public func screenshot(session: String) throws -> Data {
        let data = try send("Page.captureScreenshot", ["format": "png"], session: session)["data"] as? String ?? ""
        guard let png = Data(base64Encoded: data) else { throw Failure(description: "no screenshot") }
        return png
    }
}
