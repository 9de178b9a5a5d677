import EncoderKernels
import Foundation
import XCTest

/// `CPUBudget`: the threads are the cores the process may use, cut to its cgroup's CPU quota (v2 `cpu.max` along
/// the cgroup's path, v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`), or GEMMA_ENCODER_THREADS; read from a
/// directory standing for `/`, laid out as Linux lays out /proc and /sys/fs/cgroup.
final class CPUBudgetTests: XCTestCase {
    var root: URL!

    override func setUpWithError() throws {
        root = FileManager.default.temporaryDirectory.appendingPathComponent("cpu-budget-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: root) }

    func write(_ text: String, _ path: String) throws {
        let url = root.appendingPathComponent(path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try text.write(to: url, atomically: true, encoding: .utf8)
    }

    func threads(available: Int = 64, environment: [String: String] = [:]) throws -> Int {
        try CPUBudget.resolve(environment: environment, root: root, available: available)
    }

    func testNoCgroupOrNoQuotaKeepsTheAvailableCores() throws {
        XCTAssertEqual(try threads(), 64, "no /proc/self/cgroup")
        try write("0::/user.slice/session.scope\n", "proc/self/cgroup")
        try write("max 100000\n", "sys/fs/cgroup/user.slice/session.scope/cpu.max")
        XCTAssertEqual(try threads(), 64, "max: unlimited")
        XCTAssertEqual(try threads(available: 0), 1, "never below one")
    }

    func testCgroupV2QuotaBindsAlongThePath() throws {
        try write("0::/kubepods/pod1/app\n", "proc/self/cgroup")
        try write("max 100000\n", "sys/fs/cgroup/kubepods/pod1/app/cpu.max")
        try write("250000 100000\n", "sys/fs/cgroup/kubepods/pod1/cpu.max")   // 2.5 CPUs: 3 threads
        try write("800000 100000\n", "sys/fs/cgroup/kubepods/cpu.max")
        XCTAssertEqual(try threads(), 3, "the parent's 2.5 CPUs bind the child, rounded up")
        XCTAssertEqual(try threads(available: 2), 2, "never more than the cores it may run on")
        try write("50000 100000\n", "sys/fs/cgroup/kubepods/pod1/app/cpu.max")
        XCTAssertEqual(try threads(), 1, "half a CPU: one thread")
    }

    func testCgroupV1Quota() throws {
        try write("12:cpuset:/\n11:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n", "proc/self/cgroup")
        try write("-1\n", "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_quota_us")
        try write("100000\n", "sys/fs/cgroup/cpu,cpuacct/docker/abc/cpu.cfs_period_us")
        XCTAssertEqual(try threads(), 64, "-1: no quota")
        // A container sees its own cgroup at the mount itself.
        try FileManager.default.removeItem(at: root.appendingPathComponent("sys/fs/cgroup/cpu,cpuacct/docker"))
        try write("400000\n", "sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        try write("100000\n", "sys/fs/cgroup/cpu/cpu.cfs_period_us")
        XCTAssertEqual(try threads(), 4)
    }

    func testTheVariableOverridesAndMalformedValuesAreRefused() throws {
        try write("0::/\n", "proc/self/cgroup")
        try write("100000 100000\n", "sys/fs/cgroup/cpu.max")
        XCTAssertEqual(try threads(), 1)
        XCTAssertEqual(try threads(environment: [CPUBudget.variable: "6"]), 6, "the user's count, quota or not")
        for bad in ["0", "-2", "two", "", "99999"] {
            XCTAssertThrowsError(try threads(environment: [CPUBudget.variable: bad]), bad) { error in
                XCTAssertTrue("\(error)".contains("GEMMA_ENCODER_THREADS='\(bad)'"), "\(error)")
            }
        }
    }
}
