import Foundation
import ModelFormats

/// What can go wrong between a model directory and an embedding; each case names the file or input.
public enum EncoderError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(file: String, field: String, String)
    case unsupported(String)
    case modelNotFound(String)
    case fetchFailed(String)
    case invalidInput(String)

    public var description: String {
        switch self {
        case let .invalidConfig(file, field, message): return "\(file): \(field): \(message)"
        case let .unsupported(m), let .modelNotFound(m), let .fetchFailed(m), let .invalidInput(m): return m
        }
    }
}

/// A model file's bytes; a read failure is an EncoderError naming the file, never a raw Foundation error.
func readFile(_ url: URL) throws(EncoderError) -> Data {
    do { return try Data(contentsOf: url) } catch {
        throw .invalidConfig(file: url.path, field: "(file)", "cannot read: \(error.localizedDescription)")
    }
}

func readJSONObject(_ url: URL) throws(EncoderError) -> [String: Any] {
    let data = try readFile(url)
    guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
        throw .invalidConfig(file: url.path, field: "(file)", "not a JSON object")
    }
    return object
}
