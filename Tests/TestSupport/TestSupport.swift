import Foundation

/// Tests/Fixtures: reference data copied from the peers' outputs (see its README).
public let fixturesDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")

/// A fresh temporary directory, removed by the returned closure.
public func temporaryDirectory(_ label: String) throws -> URL {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("\(label)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}

/// Writes a safetensors file from (name, dtype, shape, raw bytes) entries; `headerOverride` replaces the
/// JSON header to make corrupt files.
public func writeSafetensors(_ url: URL, _ entries: [(String, String, [Int], [UInt8])], headerOverride: String? = nil) throws {
    var header: [String: Any] = [:]
    var data: [UInt8] = []
    for (name, dtype, shape, bytes) in entries {
        header[name] = ["dtype": dtype, "shape": shape, "data_offsets": [data.count, data.count + bytes.count]]
        data += bytes
    }
    let encoded = try JSONSerialization.data(withJSONObject: header, options: .sortedKeys)
    var json = headerOverride.map { Array($0.utf8) } ?? Array(encoded)
    while json.count % 8 != 0 { json.append(0x20) }
    var out = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) }
    out += json + data
    try Data(out).write(to: url)
}

/// Little-endian F32 bytes.
public func f32Bytes(_ values: [Float]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

/// BF16 bytes (the upper half of each F32).
public func bf16Bytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { v -> [UInt8] in let b = UInt16(v.bitPattern >> 16); return [UInt8(b & 0xFF), UInt8(b >> 8)] }
}

public func cosine(_ a: [Float], _ b: [Float]) -> Double {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    var dot = 0.0, na = 0.0, nb = 0.0
    for (x, y) in zip(a, b) {
        dot += Double(x) * Double(y)
        na += Double(x) * Double(x)
        nb += Double(y) * Double(y)
    }
    return dot / max((na * nb).squareRoot(), 1e-30)
}

/// Largest |a − b| over two equally long runs.
public func maxAbsDiff<A: Collection<Float>, B: Collection<Float>>(_ a: A, _ b: B) -> Float {
    precondition(a.count == b.count, "length \(a.count) vs \(b.count)")
    return zip(a, b).map { abs($0 - $1) }.max() ?? 0
}
