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

    private var pid: pid_t
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
        // A browser that exits while we write must not take the test process down with SIGPIPE.
        signal(SIGPIPE, SIG_IGN)
        // Close-on-exec, so no other spawn inherits them (Glibc's module does not export pipe2); dup2 clears it on
        // the browser's 3 and 4.
        var commands: [Int32] = [-1, -1], answers: [Int32] = [-1, -1]
        guard pipe(&commands) == 0 else { throw Failure(description: "pipe: \(errno)") }
        guard pipe(&answers) == 0 else {
            commands.forEach { _ = Glibc.close($0) }
            throw Failure(description: "pipe: \(errno)")
        }
        for fd in commands + answers { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, commands[0], 3)
        posix_spawn_file_actions_adddup2(&actions, answers[1], 4)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        let arguments = [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                         "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe", "--window-size=1100,900",
                         "--user-data-dir=\(profile.path)", "about:blank"]
        var argv = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, executable, &actions, nil, &argv, environ)
        _ = Glibc.close(commands[0]); _ = Glibc.close(answers[1])
        guard status == 0 else {
            _ = Glibc.close(commands[1]); _ = Glibc.close(answers[0])
            throw Failure(description: "could not start \(executable): \(status)")
        }
        pid = child
        toBrowser = FileHandle(fileDescriptor: commands[1], closeOnDealloc: true)
        fromBrowser = FileHandle(fileDescriptor: answers[0], closeOnDealloc: true)
    }

    deinit { quit() }

    /// Closes the browser (politely, then by force) and reaps it; safe to call twice.
    public func quit() {
        defer { try? FileManager.default.removeItem(at: profile) }
        guard pid > 0 else { return }
        var status: Int32 = 0
        if waitpid(pid, &status, WNOHANG) == 0 {
            _ = try? send("Browser.close", timeout: 5)
            for _ in 0..<50 where waitpid(pid, &status, WNOHANG) == 0 { usleep(100_000) }
            if waitpid(pid, &status, WNOHANG) == 0 {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
            }
        }
        pid = 0
    }

    /// Sends one command and returns its result, skipping the events that arrive before it.
    @discardableResult
    public func send(_ method: String, _ params: [String: Any] = [:], session: String? = nil, timeout: Double = 30) throws -> [String: Any] {
        let id = nextID
        nextID += 1
        var message: [String: Any] = ["id": id, "method": method, "params": params]
        if let session { message["sessionId"] = session }
        try toBrowser.write(contentsOf: try JSONSerialization.data(withJSONObject: message) + Data([0]))
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let reply = try readMessage(until: deadline, waitingFor: method)
            guard reply["id"] as? Int == id else { continue }
            if let error = reply["error"] as? [String: Any] { throw Failure(description: "\(method): \(error["message"] ?? error)") }
            return reply["result"] as? [String: Any] ?? [:]
        }
    }

    /// The next message, or an error once `deadline` passes (a hung browser fails the test instead of hanging it).
    private func readMessage(until deadline: Date, waitingFor method: String) throws -> [String: Any] {
        while true {
            if let end = buffer.firstIndex(of: 0) {
                let message = buffer[buffer.startIndex..<end]
                buffer = Data(buffer[(end + 1)...])
                return try JSONSerialization.jsonObject(with: message) as? [String: Any] ?? [:]
            }
            let left = deadline.timeIntervalSinceNow
            var ready = pollfd(fd: fromBrowser.fileDescriptor, events: Int16(POLLIN), revents: 0)
            guard left > 0, poll(&ready, 1, Int32(left * 1000)) > 0 else {
                throw Failure(description: "Chromium did not answer \(method) in time")
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
            // An evaluation racing a navigation ("context destroyed") is retried, not fatal.
            if (try? evaluate(expression, session: session)) as? Bool == true { return }
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
