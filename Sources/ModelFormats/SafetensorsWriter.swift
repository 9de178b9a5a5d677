import Foundation

/// Serializes tensors in the safetensors format: an 8-byte little-endian header length, a JSON header
/// (name → dtype, shape, data_offsets), padded with spaces to 8 bytes, then the data.
public enum SafetensorsWriter {
    /// F32 tensors from their values.
    public static func encode(_ tensors: [(name: String, shape: [Int], values: [Float])],
                              metadata: [String: String] = [:]) throws -> Data {
        try encode(tensors, copying: [], metadata: metadata)
    }

    /// F32 tensors from their values, then tensors copied as they are stored (dtype and bytes unchanged) from a
    /// checkpoint the caller keeps open while this runs.
    public static func encode(_ tensors: [(name: String, shape: [Int], values: [Float])], copying stored: [SafetensorsTensor],
                              metadata: [String: String] = [:]) throws -> Data {
        var header: [String: Any] = metadata.isEmpty ? [:] : ["__metadata__": metadata]
        var offset = 0
        for t in tensors {
            precondition(t.shape.reduce(1, *) == t.values.count, "\(t.name): shape \(t.shape) does not match \(t.values.count) values")
            header[t.name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.values.count]]
            offset += 4 * t.values.count
        }
        for t in stored {
            header[t.name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + t.byteCount]]
            offset += t.byteCount
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data()
        data.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(json)
        for t in tensors { t.values.withUnsafeBytes { data.append(contentsOf: $0) } }
        for t in stored { data.append(UnsafeRawBufferPointer(start: t.file.base + t.offset, count: t.byteCount).bindMemory(to: UInt8.self)) }
        return data
    }
}
