import Foundation

/// Element types of safetensors tensors that we can turn into Float.
public enum SafetensorsDType: String, Sendable {
    case f32 = "F32", bf16 = "BF16", f16 = "F16"

    var byteSize: Int { self == .f32 ? 4 : 2 }
}

/// One tensor's entry in a safetensors header, resolved to absolute offsets in its file.
public struct SafetensorsTensor: Sendable {
    public let name: String
    public let dtype: SafetensorsDType
    public let shape: [Int]
    public let file: MappedFile
    /// Absolute byte offset of the data in `file`.
    public let offset: Int
    public let byteCount: Int

    public var elementCount: Int { shape.reduce(1, *) }

    /// The tensor as Float: borrowed from the mapping for aligned F32, converted once otherwise.
    public func floats() -> FloatBuffer {
        let n = elementCount
        let raw = file.base + offset
        switch dtype {
        case .f32 where Int(bitPattern: raw) % MemoryLayout<Float>.alignment == 0:
            return FloatBuffer(borrowing: raw.assumingMemoryBound(to: Float.self), count: n, owner: file)
        case .f32:
            return FloatBuffer(count: n) { dst in
                memcpy(dst.baseAddress!, raw, n * 4)
            }
        case .bf16:
            return FloatBuffer(count: n) { dst in
                for i in 0..<n {
                    let bits = UInt32(raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16
                    dst[i] = Float(bitPattern: bits)
                }
            }
        case .f16:
            return FloatBuffer(count: n) { dst in
                for i in 0..<n {
                    dst[i] = Float(halfBits: raw.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                }
            }
        }
    }
}

extension Float {
    /// IEEE 754 binary16 → binary32, done by hand because Float16 is unavailable on some x86 toolchains.
    public init(halfBits h: UInt16) {
        let sign = UInt32(h & 0x8000) << 16
        let exp = Int((h >> 10) & 0x1F)
        let mant = UInt32(h & 0x3FF)
        if exp == 0x1F {
            self = Float(bitPattern: sign | 0x7F80_0000 | (mant << 13))
        } else if exp == 0 {
            // Subnormal (or zero): value = mant × 2^-24.
            let v = Float(mant) * Float(sign: .plus, exponent: -24, significand: 1)
            self = sign != 0 ? -v : v
        } else {
            self = Float(bitPattern: sign | (UInt32(exp + 112) << 23) | (mant << 13))
        }
    }
}

/// A single `.safetensors` file, memory-mapped; the header is parsed and every entry bounds-checked up front.
public final class SafetensorsFile: Sendable {
    public let url: URL
    public let tensors: [String: SafetensorsTensor]
    public let metadata: [String: String]

    public init(url: URL) throws(FormatError) {
        self.url = url
        let file = try MappedFile(url: url)
        let path = url.path
        guard file.size >= 8 else {
            throw FormatError(file: path, message: "truncated: \(file.size) bytes, too short for a safetensors header")
        }
        // Compared as UInt64: a declared length past Int's range is a corrupt header, not a trap.
        let declared = file.base.loadUnaligned(as: UInt64.self).littleEndian
        guard declared > 1, declared <= UInt64(file.size - 8) else {
            throw FormatError(file: path, message: "corrupt header: declared length \(declared) but the file has \(file.size) bytes")
        }
        let headerLength = Int(declared)
        let headerData = Data(file.bytes(at: 8, count: headerLength))
        guard let json = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
            throw FormatError(file: path, message: "corrupt header: not a JSON object")
        }
        let dataStart = 8 + headerLength
        var tensors: [String: SafetensorsTensor] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in json {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let entry = value as? [String: Any],
                  let dtypeName = entry["dtype"] as? String,
                  let shape = entry["shape"] as? [Int],
                  let offsets = entry["data_offsets"] as? [Int], offsets.count == 2 else {
                throw FormatError(file: path, item: name, message: "corrupt header entry (needs dtype, shape, data_offsets)")
            }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
                throw FormatError(file: path, item: name, message: "unsupported dtype \(dtypeName) (F32, BF16 and F16 are supported)")
            }
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[1] >= offsets[0] else {
                throw FormatError(file: path, item: name, message: "corrupt header entry: shape \(shape), offsets \(offsets)")
            }
            // Sizes from the header are checked for overflow before they are compared with the file.
            let expected = (shape + [dtype.byteSize]).reduce(Int?(1)) { acc, n in
                acc.flatMap { a in let (p, o) = a.multipliedReportingOverflow(by: n); return o ? nil : p }
            }
            let byteCount = offsets[1] - offsets[0]
            guard let expected, byteCount == expected else {
                throw FormatError(file: path, item: name, message: "data size \(byteCount) bytes does not match shape \(shape) of \(dtypeName)")
            }
            guard offsets[1] <= file.size - dataStart else {
                throw FormatError(file: path, item: name, message: "truncated: data ends \(offsets[1]) bytes after the header but the file has \(file.size - dataStart) there")
            }
            tensors[name] = SafetensorsTensor(name: name, dtype: dtype, shape: shape, file: file,
                                              offset: dataStart + offsets[0], byteCount: byteCount)
        }
        // No two tensors may share bytes (the safetensors crate refuses such files too): a crafted header could
        // otherwise alias one tensor's data as another's.
        let ranges = tensors.values.filter { $0.byteCount > 0 }.sorted { ($0.offset, $0.name) < ($1.offset, $1.name) }
        for (a, b) in zip(ranges, ranges.dropFirst()) where b.offset < a.offset + a.byteCount {
            throw FormatError(file: path, item: b.name, message: "corrupt header: its data overlaps that of \(a.name)")
        }
        self.tensors = tensors
        self.metadata = metadata
    }
}

/// All safetensors weights of a checkpoint: one file, or the shards listed in `model.safetensors.index.json`.
public final class SafetensorsCheckpoint: Sendable {
    public let files: [SafetensorsFile]
    private let index: [String: SafetensorsTensor]
    /// What error messages name when a tensor is missing.
    public let location: String

    public var tensorNames: [String] { Array(index.keys) }

    /// `url` is a `.safetensors` file, an index `.json`, or a directory holding either.
    public init(url: URL) throws(FormatError) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw FormatError(file: url.path, message: "no such file or directory")
        }
        var target = url
        if isDirectory.boolValue {
            let indexURL = url.appendingPathComponent("model.safetensors.index.json")
            let single = url.appendingPathComponent("model.safetensors")
            if FileManager.default.fileExists(atPath: indexURL.path) {
                target = indexURL
            } else if FileManager.default.fileExists(atPath: single.path) {
                target = single
            } else {
                throw FormatError(file: url.path, message: "no model.safetensors or model.safetensors.index.json")
            }
        }
        var files: [SafetensorsFile] = []
        if target.pathExtension == "json" {
            let shardNames = try Self.shardNames(indexURL: target)
            let dir = target.deletingLastPathComponent()
            for name in shardNames {
                files.append(try SafetensorsFile(url: dir.appendingPathComponent(name)))
            }
        } else {
            files.append(try SafetensorsFile(url: target))
        }
        var index: [String: SafetensorsTensor] = [:]
        for file in files {
            for (name, tensor) in file.tensors { index[name] = tensor }
        }
        self.files = files
        self.index = index
        self.location = target.path
    }

    private static func shardNames(indexURL: URL) throws(FormatError) -> [String] {
        let data: Data
        do { data = try Data(contentsOf: indexURL) } catch {
            throw FormatError(file: indexURL.path, message: "cannot read: \(error.localizedDescription)")
        }
        guard let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
              let weightMap = json["weight_map"] as? [String: String] else {
            throw FormatError(file: indexURL.path, item: "weight_map", message: "missing or not an object of tensor → file")
        }
        return Array(Set(weightMap.values)).sorted()
    }

    /// The tensor called `name`, checked against `shape` when given.
    public func tensor(_ name: String, shape: [Int]? = nil) throws(FormatError) -> SafetensorsTensor {
        guard let t = index[name] else {
            throw FormatError(file: location, item: name, message: "missing tensor")
        }
        if let shape, t.shape != shape {
            throw FormatError(file: t.file.url.path, item: name, message: "shape \(t.shape) does not match the config's \(shape)")
        }
        return t
    }

    public func contains(_ name: String) -> Bool { index[name] != nil }
}
