import Foundation

/// A one-line progress report (items/s, ETA) on stderr, only when stderr is a terminal. A total of nil is a
/// stream of unknown length (items and items/s, no ETA); 0 shows nothing.
/// Updates may come from worker threads, so drawing is serialized by a lock.
final class Progress: @unchecked Sendable {
    private let lock = NSLock()
    private let total: Int?
    private let label: String
    private let start = Date()
    private var lastDraw = Date.distantPast
    private let enabled: Bool

    init(total: Int?, label: String) {
        self.total = total
        self.label = label
        enabled = isatty(2) != 0 && total != 0
    }

    func update(_ done: Int) {
        lock.lock()
        defer { lock.unlock() }
        guard enabled, Date().timeIntervalSince(lastDraw) > 0.2 || done == total else { return }
        lastDraw = Date()
        let elapsed = max(Date().timeIntervalSince(start), 1e-6)
        let rate = Double(done) / elapsed
        let line: String
        if let total {
            let eta = rate > 0 ? Double(total - done) / rate : 0
            line = String(format: "\r%@ %d/%d  %.1f/s  ETA %@ ", label, done, total, rate, Self.clock(eta))
        } else {
            line = String(format: "\r%@ %d  %.1f/s ", label, done, rate)
        }
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        guard enabled else { return }
        FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
