import Foundation

/// Content that names its own version: the version (UInt64 LE), then bytes of a SplitMix64 stream seeded
/// by it. Two versions differ almost everywhere, so a torn write (a mix of two, or a prefix) never passes
/// `version(of:size:)`. Shared by the kill test and the writer it kills.
public enum VersionedContent {
    public static func make(version: Int, size: Int) -> Data {
        precondition(size >= 8 && size % 8 == 0, "size must be a positive multiple of 8")
        var words = [UInt64](repeating: 0, count: size / 8)
        words[0] = UInt64(version).littleEndian
        var state = UInt64(version) &* 0x9E37_79B9_7F4A_7C15 &+ 1
        for i in 1..<words.count { words[i] = next(&state).littleEndian }
        return words.withUnsafeBytes { Data($0) }
    }

    /// The version `data` is exactly the content of, or nil (wrong size, unknown bytes, a mix).
    public static func version(of data: Data, size: Int) -> Int? {
        guard data.count == size, size >= 8 else { return nil }
        let version = Int(data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) })
        guard version >= 0, version < 1 << 40 else { return nil }
        return make(version: version, size: size) == data ? version : nil
    }

    private static func next(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
