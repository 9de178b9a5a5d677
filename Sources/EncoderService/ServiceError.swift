import DocumentIndex
import EncoderKernels
import Foundation
import GemmaEncoder
import ModelFormats
import TaskHeads
import VectorSearch

/// A request the service refuses or fails, by kind; the kind fixes the status code and error_type the way
/// Text Embeddings Inference does: the client's problems are 4xx, a failing model, head or index 424, a
/// failure of the service itself 500.
public struct ServiceError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// A request over a limit or otherwise invalid (TEI's Validation, 413).
        case validation
        /// Nothing to work on: no inputs, an empty text or query (TEI's Empty, 400).
        case empty
        /// No API key, or the wrong one, on a server that requires it (401).
        case unauthorized
        /// Token ids outside the vocabulary, or text the tokenizer cannot take (422).
        case tokenizer
        /// Malformed JSON, wrong types, invalid UTF-8 (422, as TEI's JSON extractor answers).
        case malformed
        /// An unknown model, head, index or route, or none loaded (404).
        case notFound
        /// A body over the size limit (413).
        case payloadTooLarge
        /// The queue is full: retry later (429).
        case overloaded
        /// Shutting down (503).
        case unhealthy
        /// The model, a head or an index failed (TEI's Backend, 424).
        case backend
        /// The service itself failed: a bug, not the client's or a backend's fault (500).
        case `internal`
        /// A status the HTTP layer chose (e.g. 405), passed through.
        case http(status: Int, type: String)
    }

    public var kind: Kind
    public var message: String
    public var retryAfterSeconds: Int?

    public init(_ kind: Kind, _ message: String, retryAfterSeconds: Int? = nil) {
        self.kind = kind
        self.message = message
        self.retryAfterSeconds = retryAfterSeconds
    }

    public var status: Int {
        switch kind {
        case .validation, .payloadTooLarge: 413
        case .empty: 400
        case .unauthorized: 401
        case .tokenizer, .malformed: 422
        case .notFound: 404
        case .overloaded: 429
        case .unhealthy: 503
        case .backend: 424
        case .internal: 500
        case let .http(status, _): status
        }
    }

    /// TEI's error_type (Validation, Empty, Tokenizer, Backend, Overloaded, Unhealthy) and ours for the rest.
    public var type: String {
        switch kind {
        case .validation, .malformed: "Validation"
        case .empty: "Empty"
        case .unauthorized: "Unauthorized"
        case .tokenizer: "Tokenizer"
        case .notFound: "NotFound"
        case .payloadTooLarge: "PayloadTooLarge"
        case .overloaded: "Overloaded"
        case .unhealthy: "Unhealthy"
        case .backend: "Backend"
        case .internal: "Internal"
        case let .http(_, type): type
        }
    }

    public var description: String { "\(status) \(type): \(message)" }

    public static func validation(_ m: String) -> ServiceError { ServiceError(.validation, m) }
    public static func empty(_ m: String) -> ServiceError { ServiceError(.empty, m) }
    public static func tokenizer(_ m: String) -> ServiceError { ServiceError(.tokenizer, m) }
    public static func malformed(_ m: String) -> ServiceError { ServiceError(.malformed, m) }
    public static func notFound(_ m: String) -> ServiceError { ServiceError(.notFound, m) }
    public static func backend(_ m: String) -> ServiceError { ServiceError(.backend, m) }
    public static func overloaded(_ m: String) -> ServiceError { ServiceError(.overloaded, m, retryAfterSeconds: 1) }
}

extension ServiceError {
    /// Any error met while serving a request, by its kind: the scheduler's refusals as such, an error about
    /// the input (encoder input, token ids) as the client's, the model's, tokenizer's, heads' and indexes'
    /// own errors as backend failures, and anything else as the service's own (500).
    public init(classifying error: any Error) {
        switch error {
        case let error as ServiceError: self = error
        case let error as SchedulerError: self = Self(scheduler: error)
        case let EncoderError.invalidInput(message): self = .validation(message)
        case ModelError.tokenOutOfRange: self = .tokenizer("\(error)")
        case let error as DecodingError:
            self = .malformed("request body does not match the API: \(error.codingPathDescription): \(error.shortDescription)")
        // TokenizerError is about loading a tokenizer: the model's files, not the request.
        case is EncoderError, is ModelError, is WeightError, is FormatError, is TokenizerError, is HeadError, is IndexError,
             is DocumentStoreError, is VectorSearchError:
            self = .backend("\(error)")
        default: self = ServiceError(.internal, "\(error)")
        }
    }

    init(scheduler error: SchedulerError) {
        switch error {
        case let .overloaded(queued): self = .overloaded("model overloaded: \(queued) tokens already queued; retry later")
        case let .tooLarge(tokens, limit):
            self = .validation("the request has \(tokens) tokens; at most \(limit) can be queued at once (send fewer inputs)")
        case .stopped: self = ServiceError(.unhealthy, "the service is shutting down")
        }
    }

    /// Runs library work for a request, its errors classified.
    static func mapping<T>(_ body: () throws -> T) throws(ServiceError) -> T {
        do { return try body() } catch { throw ServiceError(classifying: error) }
    }
}
