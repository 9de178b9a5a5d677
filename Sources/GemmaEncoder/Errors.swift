import Foundation
import ModelFormats

/// What can go wrong between a model directory and an embedding; each case names the file or input.
public enum EncoderError: Error, CustomStringConvertible, Equatable {
    case invalidConfig(file: String, field: String, String)
    case unsupported(String)
    case modelNotFound(String)
    case fetchFailed(String)
    case invalidInput(String)
    /// A known model that has not been fetched into the cache yet.
    case notCached(model: String, cache: String)

    /// A container or config file error, in the encoder's terms (file, field, message).
    public init(_ error: FormatError) {
        self = .invalidConfig(file: error.file, field: error.item ?? "(file)", error.message)
    }

    public var description: String {
        switch self {
        case let .invalidConfig(file, field, message): return "\(file): \(field): \(message)"
        case let .unsupported(m), let .modelNotFound(m), let .fetchFailed(m), let .invalidInput(m): return m
        case let .notCached(model, cache): return "model '\(model)' is not in the cache (\(cache)): fetch it first"
        }
    }
}
