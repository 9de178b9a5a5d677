#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `renameat2(RENAME_EXCHANGE)`: swaps two paths in one step, so a directory can be replaced with no moment
/// where its name points at nothing (rename(2) cannot replace a non-empty directory). Glibc declares it only
/// under _GNU_SOURCE, which Swift's Glibc module does not see, so the symbol is looked up at run time.
enum RenameExchange {
    /// RENAME_EXCHANGE from <linux/fs.h>.
    private static let exchangeFlag: UInt32 = 1 << 1

    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32

    enum Outcome {
        case swapped
        /// The system or file system cannot exchange (no renameat2, EINVAL, ENOSYS, ENOTSUP).
        case unsupported
        case failed
    }

    /// Swaps `a` and `b`; on `.failed`, errno says why.
    static func swap(_ a: String, _ b: String) -> Outcome {
        #if os(Linux)
        // A nil handle is RTLD_DEFAULT in glibc: search the process's global symbols.
        guard let symbol = dlsym(nil, "renameat2") else { return .unsupported }
        let renameat2 = unsafeBitCast(symbol, to: RenameAt2.self)
        if renameat2(AT_FDCWD, a, AT_FDCWD, b, exchangeFlag) == 0 { return .swapped }
        return [EINVAL, ENOSYS, ENOTSUP].contains(errno) ? .unsupported : .failed
        #else
        return .unsupported
        #endif
    }
}
