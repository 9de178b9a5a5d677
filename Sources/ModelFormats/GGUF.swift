import Foundation

/// The scalar and container types a GGUF metadata value can have (GGUF spec, `gguf_metadata_value_type`).
public enum GGUFValueType: UInt32, Sendable {
    case uint8 = 0, int8 = 1, uint16 = 2, int16 = 3, uint32 = 4, int32 = 5, float32 = 6, bool = 7
    case string = 8, array = 9, uint64 = 10, int64 = 11, float64 = 12

    /// Encoded size of one element, or nil for variable-length types (string, array).
    var fixedSize: Int? {
        switch self {
        case .uint8, .int8, .bool: 1
        case .uint16, .int16: 2
        case .uint32, .int32, .float32: 4
        case .uint64, .int64, .float64: 8
        case .string, .array: nil
        }
    }
}

/// One metadata value. Arrays stay in the mapping (`GGUFArray`) so a 262k-entry vocabulary costs nothing
/// until it is asked for.
public enum GGUFValue: Sendable {
    case uint8(UInt8), int8(Int8), uint16(UInt16), int16(Int16), uint32(UInt32), int32(Int32)
    case uint64(UInt64), int64(Int64), float32(Float), float64(Double), bool(Bool)
    case string(String)
    case array(GGUFArray)

    /// Any integer type widened to Int (bools as 0/1); nil for other types or out-of-range UInt64.
    public var intValue: Int? {
        switch self {
        case .uint8(let v): Int(v)
        case .int8(let v): Int(v)
        case .uint16(let v): Int(v)
        case .int16(let v): Int(v)
        case .uint32(let v): Int(v)
        case .int32(let v): Int(v)
        case .uint64(let v): Int(exactly: v)
        case .int64(let v): Int(v)
        case .bool(let v): v ? 1 : 0
        default: nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .float32(let v): Double(v)
        case .float64(let v): v
        default: intValue.map(Double.init)
        }
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var arrayValue: GGUFArray? {
        if case .array(let a) = self { return a }
        return nil
    }
}

/// A metadata array: element type, count and its bytes inside the mapped file (already bounds-checked).
public struct GGUFArray: Sendable {
    public let elementType: GGUFValueType
    public let count: Int
    let file: MappedFile
    let offset: Int
    let byteCount: Int
    let key: String

    /// All elements as values (nested arrays included). Prefer the typed accessors for big arrays.
    public func values() throws(FormatError) -> [GGUFValue] {
        var reader = GGUFReader(file: file, position: offset, end: offset + byteCount)
        var out: [GGUFValue] = []
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(try reader.value(of: elementType, key: key)) }
        return out
    }

    /// The elements of a string array.
    public func strings() throws(FormatError) -> [String] {
        guard elementType == .string else { throw typeError("string") }
        var reader = GGUFReader(file: file, position: offset, end: offset + byteCount)
        var out: [String] = []
        out.reserveCapacity(count)
        for _ in 0..<count { out.append(try reader.string(key: key)) }
        return out
    }

    /// The elements of a float32/float64 array as Float.
    public func floats() throws(FormatError) -> [Float] {
        switch elementType {
        case .float32: return fixed(Float.self)
        case .float64: return fixed(Double.self).map { Float($0) }
        default: throw typeError("float")
        }
    }

    /// The elements of any integer array widened to Int.
    public func integers() throws(FormatError) -> [Int] {
        switch elementType {
        case .uint8: fixed(UInt8.self).map { Int($0) }
        case .int8: fixed(Int8.self).map { Int($0) }
        case .uint16: fixed(UInt16.self).map { Int($0) }
        case .int16: fixed(Int16.self).map { Int($0) }
        case .uint32: fixed(UInt32.self).map { Int($0) }
        case .int32: fixed(Int32.self).map { Int($0) }
        case .uint64: fixed(UInt64.self).map { Int(truncatingIfNeeded: $0) }
        case .int64: fixed(Int64.self).map { Int($0) }
        case .bool: fixed(UInt8.self).map { Int($0) }
        default: throw typeError("integer")
        }
    }

    private func fixed<T>(_: T.Type) -> [T] {
        // Unaligned-safe bulk copy out of the mapping (GGUF does not align metadata).
        [T](unsafeUninitializedCapacity: count) { buf, n in
            UnsafeMutableRawBufferPointer(buf).copyMemory(from: file.bytes(at: offset, count: count * MemoryLayout<T>.stride))
            n = count
        }
    }

    private func typeError(_ wanted: String) -> FormatError {
        FormatError(file: file.url.path, item: key, message: "expected a \(wanted) array, found \(elementType) elements")
    }
}

/// One tensor's description from the GGUF header. `offset` is relative to `GGUFFile.dataOffset`.
public struct GGUFTensorInfo: Sendable, Equatable {
    public let name: String
    /// Dimensions as stored, innermost (contiguous) first, as in ggml's `ne`.
    public let dimensions: [Int]
    /// Raw `ggml_type` value (0 = F32, 1 = F16, 12 = Q4_K, 14 = Q6_K, ...).
    public let ggmlType: UInt32
    public let offset: Int

    public init(name: String, dimensions: [Int], ggmlType: UInt32, offset: Int) {
        self.name = name
        self.dimensions = dimensions
        self.ggmlType = ggmlType
        self.offset = offset
    }

    public var elementCount: Int { dimensions.reduce(1, *) }
}

/// A GGUF file (versions 2 and 3, little-endian): metadata and tensor infos parsed eagerly; tensor data
/// and big metadata arrays are left in the memory mapping.
public final class GGUFFile: Sendable {
    public let file: MappedFile
    public let version: UInt32
    /// Metadata in file order.
    public let metadataKeys: [String]
    public let metadata: [String: GGUFValue]
    public let tensors: [GGUFTensorInfo]
    /// Absolute file offset where tensor data starts (aligned to `alignment`).
    public let dataOffset: Int
    public let alignment: Int

    public var url: URL { file.url }

    /// Whether the file at `url` starts with the GGUF magic (a cheap check that reads four bytes).
    public static func hasMagic(_ url: URL) -> Bool {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    public convenience init(url: URL) throws(FormatError) {
        try self.init(file: try MappedFile(url: url))
    }

    public init(file: MappedFile) throws(FormatError) {
        self.file = file
        let path = file.url.path
        var r = GGUFReader(file: file, position: 0, end: file.size)
        let magic = try r.fixed(UInt32.self, key: "header.magic")
        guard magic == 0x4655_4747 else { // "GGUF" read little-endian
            throw FormatError(file: path, item: "header.magic", message: "not a GGUF file (magic 0x\(String(magic, radix: 16)))")
        }
        version = try r.fixed(UInt32.self, key: "header.version")
        guard version == 2 || version == 3 else {
            throw FormatError(file: path, item: "header.version", message: "unsupported GGUF version \(version) (expected 2 or 3)")
        }
        let tensorCount = try r.count(key: "header.tensor_count")
        let kvCount = try r.count(key: "header.metadata_kv_count")

        var keys: [String] = []
        var meta: [String: GGUFValue] = [:]
        for i in 0..<kvCount {
            let key = try r.string(key: "metadata[\(i)].key")
            let rawType = try r.fixed(UInt32.self, key: key)
            guard let type = GGUFValueType(rawValue: rawType) else {
                throw FormatError(file: path, item: key, message: "unknown metadata value type \(rawType)")
            }
            keys.append(key)
            meta[key] = try r.value(of: type, key: key)
        }
        metadataKeys = keys
        metadata = meta

        // Each tensor info takes at least 24 bytes (name length, dimension count, type, offset): a declared
        // count sizes the reservation only as far as the file could hold, and a count past that ends in the
        // truncation error of the first info that is not there.
        var infos: [GGUFTensorInfo] = []
        infos.reserveCapacity(min(tensorCount, (r.end - r.position) / 24))
        for i in 0..<tensorCount {
            let name = try r.string(key: "tensor[\(i)].name")
            let nDims = Int(try r.fixed(UInt32.self, key: name))
            guard nDims <= 8 else {
                throw FormatError(file: path, item: name, message: "implausible dimension count \(nDims)")
            }
            var dims: [Int] = []
            for _ in 0..<nDims { dims.append(try r.count(key: name)) }
            let type = try r.fixed(UInt32.self, key: name)
            let offset = try r.count(key: name)
            infos.append(GGUFTensorInfo(name: name, dimensions: dims, ggmlType: type, offset: offset))
        }
        tensors = infos

        let align = meta["general.alignment"]?.intValue ?? 32
        guard align > 0, align & (align - 1) == 0 else {
            throw FormatError(file: path, item: "general.alignment", message: "alignment \(align) is not a power of two")
        }
        alignment = align
        dataOffset = (r.position + align - 1) / align * align
        guard dataOffset <= file.size else {
            throw FormatError(file: path, item: "tensor data", message: "truncated: data section starts at \(dataOffset), file has \(file.size) bytes")
        }
        // Offsets must lie inside the file; sizes depend on ggml types and are checked by the dequantizer.
        for t in infos where t.offset > file.size - dataOffset {
            throw FormatError(file: path, item: t.name, message: "truncated: tensor offset \(t.offset) beyond end of file")
        }
    }

    public subscript(key: String) -> GGUFValue? { metadata[key] }

    public func tensor(named name: String) -> GGUFTensorInfo? { tensors.first { $0.name == name } }

    /// Metadata value that must be present, as a typed error otherwise.
    public func require(_ key: String) throws(FormatError) -> GGUFValue {
        guard let v = metadata[key] else {
            throw FormatError(file: file.url.path, item: key, message: "missing metadata key")
        }
        return v
    }
}

/// Bounds-checked little-endian cursor over the mapping; every failure names the key being read.
struct GGUFReader {
    let file: MappedFile
    var position: Int
    let end: Int

    init(file: MappedFile, position: Int, end: Int) {
        self.file = file
        self.position = position
        self.end = end
    }

    private func truncated(_ key: String, need: Int) -> FormatError {
        FormatError(file: file.url.path, item: key, message: "truncated: need \(need) bytes at offset \(position), file has \(file.size)")
    }

    mutating func skip(_ n: Int, key: String) throws(FormatError) {
        guard n >= 0, n <= end - position else { throw truncated(key, need: n) }
        position += n
    }

    mutating func fixed<T: FixedWidthInteger>(_: T.Type, key: String) throws(FormatError) -> T {
        let n = MemoryLayout<T>.size
        guard n <= end - position else { throw truncated(key, need: n) }
        let v = file.base.loadUnaligned(fromByteOffset: position, as: T.self)
        position += n
        return T(littleEndian: v)
    }

    /// A u64 length/count/offset that must fit comfortably in memory-sized ints.
    mutating func count(key: String) throws(FormatError) -> Int {
        let v = try fixed(UInt64.self, key: key)
        guard v < UInt64(1) << 48 else {
            throw FormatError(file: file.url.path, item: key, message: "implausible count/offset \(v) (corrupt file?)")
        }
        return Int(v)
    }

    mutating func string(key: String) throws(FormatError) -> String {
        let n = try count(key: key)
        guard n <= end - position else { throw truncated(key, need: n) }
        let s = String(decoding: file.bytes(at: position, count: n), as: UTF8.self)
        position += n
        return s
    }

    mutating func value(of type: GGUFValueType, key: String) throws(FormatError) -> GGUFValue {
        switch type {
        case .uint8: return .uint8(try fixed(UInt8.self, key: key))
        case .int8: return .int8(try fixed(Int8.self, key: key))
        case .uint16: return .uint16(try fixed(UInt16.self, key: key))
        case .int16: return .int16(try fixed(Int16.self, key: key))
        case .uint32: return .uint32(try fixed(UInt32.self, key: key))
        case .int32: return .int32(try fixed(Int32.self, key: key))
        case .uint64: return .uint64(try fixed(UInt64.self, key: key))
        case .int64: return .int64(try fixed(Int64.self, key: key))
        case .float32: return .float32(Float(bitPattern: try fixed(UInt32.self, key: key)))
        case .float64: return .float64(Double(bitPattern: try fixed(UInt64.self, key: key)))
        case .bool: return .bool(try fixed(UInt8.self, key: key) != 0)
        case .string: return .string(try string(key: key))
        case .array: return .array(try array(key: key))
        }
    }

    /// Reads an array header and skips over its elements, remembering where they are.
    /// Arrays nest at most `maxArrayDepth` deep (llama.cpp writes one level): deeper is corrupt, where
    /// recursing on would exhaust the stack.
    static let maxArrayDepth = 4

    mutating func array(key: String, depth: Int = 0) throws(FormatError) -> GGUFArray {
        guard depth < Self.maxArrayDepth else {
            throw FormatError(file: file.url.path, item: key, message: "arrays nested deeper than \(Self.maxArrayDepth) levels")
        }
        let rawType = try fixed(UInt32.self, key: key)
        guard let type = GGUFValueType(rawValue: rawType) else {
            throw FormatError(file: file.url.path, item: key, message: "unknown array element type \(rawType)")
        }
        let n = try count(key: key)
        let start = position
        if let size = type.fixedSize {
            guard n <= (end - position) / size else { throw truncated(key, need: n * size) }
            position += n * size
        } else if type == .string {
            for _ in 0..<n { try skip(try count(key: key), key: key) }
        } else {
            for _ in 0..<n { _ = try array(key: key, depth: depth + 1) }
        }
        return GGUFArray(elementType: type, count: n, file: file, offset: start, byteCount: position - start, key: key)
    }
}
