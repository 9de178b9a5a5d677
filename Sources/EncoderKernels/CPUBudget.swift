import Foundation

/// How many threads the process computes with: the cores it may run on (its affinity, as Foundation counts
/// them), no more than its cgroup's CPU quota grants — a container limited to 2 CPUs on a 64-core host gets 2
/// threads, not 64 that the kernel then throttles in turn — or `GEMMA_ENCODER_THREADS` when set (e.g. two
/// services sharing a machine). Read once; every pool, batch plan and scheduler sizes itself by it.
public enum CPUBudget {
    /// The variable that overrides the count.
    public static let variable = "GEMMA_ENCODER_THREADS"

    /// With a malformed variable (which the CLI refuses at start), the count without it.
    public static let threads: Int = (try? resolve()) ?? (try? resolve(environment: [:])) ?? 1

    /// The threads the process may use, or an error naming a malformed `GEMMA_ENCODER_THREADS`. `root` stands
    /// for `/` (tests give a directory of their own holding `proc/self/cgroup` and `sys/fs/cgroup/…`).
    public static func resolve(environment: [String: String] = ProcessInfo.processInfo.environment,
                               root: URL = URL(fileURLWithPath: "/"),
                               available: Int = ProcessInfo.processInfo.activeProcessorCount) throws(CPUBudgetError) -> Int {
        if let text = environment[variable] {
            guard let n = Int(text.trimmingCharacters(in: .whitespaces)), n >= 1, n <= 4096 else {
                throw CPUBudgetError(message: "\(variable)='\(text)': give a number of threads from 1 to 4096")
            }
            return n
        }
        let cores = max(1, available)
        guard let quota = quota(root: root) else { return cores }
        return max(1, min(cores, Int(quota.rounded(.up))))
    }

    /// The CPUs the process's cgroup grants (quota / period), the tightest along its path for cgroup v2 (a
    /// parent's limit binds its children); nil when unlimited or not found.
    static func quota(root: URL) -> Double? {
        guard let membership = try? String(contentsOf: root.appendingPathComponent("proc/self/cgroup"), encoding: .utf8) else { return nil }
        let cgroups = root.appendingPathComponent("sys/fs/cgroup")
        var limits: [Double] = []
        for line in membership.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = fields[2].split(separator: "/").map(String.init)
            if fields[0] == "0", fields[1].isEmpty {
                // v2: cpu.max ("max 100000" or "QUOTA PERIOD") in the process's cgroup and each ancestor.
                for depth in 0...path.count {
                    let file = path.prefix(depth).reduce(cgroups) { $0.appendingPathComponent($1) }.appendingPathComponent("cpu.max")
                    guard let text = try? String(contentsOf: file, encoding: .utf8) else { continue }
                    let parts = text.split(whereSeparator: \.isWhitespace)
                    if parts.count == 2, let q = Double(parts[0]), let p = Double(parts[1]), q > 0, p > 0 { limits.append(q / p) }
                }
            } else if fields[1].split(separator: ",").contains("cpu") {
                // v1: cpu.cfs_quota_us (-1: none) over cpu.cfs_period_us, in the process's cgroup under the cpu
                // hierarchy's mount, or at the mount itself (a container sees its own cgroup there).
                for mount in [String(fields[1]), "cpu"] {
                    let base = cgroups.appendingPathComponent(mount)
                    for directory in [path.reduce(base) { $0.appendingPathComponent($1) }, base] {
                        func number(_ name: String) -> Double? {
                            (try? String(contentsOf: directory.appendingPathComponent(name), encoding: .utf8))
                                .flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                        }
                        if let q = number("cpu.cfs_quota_us"), let p = number("cpu.cfs_period_us"), q > 0, p > 0 { limits.append(q / p) }
                    }
                }
            }
        }
        return limits.min()
    }
}

public struct CPUBudgetError: Error, CustomStringConvertible, Equatable {
    public var message: String
    public var description: String { message }
}
