import Foundation
import FuzzTargets

/// libFuzzer's entry points for the target named by FUZZ_TARGET (see `FuzzTarget`). With FUZZ_WRITE_SEEDS set
/// to a directory, writes every target's seed corpus there and exits instead. Built only by `scripts/fuzz`
/// (-sanitize=fuzzer,address).

/// The runner, built once before the first input (libFuzzer calls the initializer first), so the fixtures'
/// cost is not charged to an input.
let runner: FuzzRunner = {
    let environment = ProcessInfo.processInfo.environment
    do {
        let workspace = try FuzzWorkspace()
        if let seeds = environment["FUZZ_WRITE_SEEDS"] {
            try FuzzSeeds.write(to: URL(fileURLWithPath: seeds), workspace: workspace)
            exit(0)
        }
        guard let name = environment["FUZZ_TARGET"], let target = FuzzTarget(rawValue: name) else {
            fatalError("set FUZZ_TARGET to one of: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        return FuzzRunner(target: target, workspace: workspace)
    } catch {
        fatalError("the fuzz workspace could not be prepared: \(error)")
    }
}()

/// libFuzzer's driver, started from our own main: SwiftPM links an executable's main as `<module>_main`
/// (so its code can be imported by tests), which leaves libFuzzer's `main` out of the link.
@_silgen_name("LLVMFuzzerRunDriver")
func runDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
               _ test: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("gemma_encoder_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return runDriver(&count, &arguments) { bytes, size in fuzzerTestOneInput(bytes, size) }
}

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    _ = runner
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ bytes: UnsafePointer<UInt8>?, _ count: Int) -> CInt {
    let data = bytes.map { Data(bytes: $0, count: count) } ?? Data()
    do { try runner.run(data) } catch { fatalError("\(runner.target.rawValue): \(error)") }
    return 0
}
