import DocumentIndex
import EncoderService
import Foundation
import GemmaEncoder
import GemmaTokenizer
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Logging
import ModelFormats
import NIOCore
import RetrieverTraining
import Synchronization
import TaskHeads

/// Runs inputs through one target. Thrown errors are the loaders' answers to bad input and are dropped;
/// `FuzzFinding` (an answer no input may get) is thrown on, and the fuzzer entry point traps on it.
public final class FuzzRunner: Sendable {
    public let target: FuzzTarget
    public let workspace: FuzzWorkspace

    public init(target: FuzzTarget, workspace: FuzzWorkspace) {
        self.target = target
        self.workspace = workspace
    }

    /// Texts every loaded tokenizer or model is run on: plain words, an empty string, spaces, a prompt-like
    /// prefix, special-token text, bytes outside the vocabulary.
    static let texts = ["the cat sat", "", "  two  spaces ", "task: search result | query: a dog", "<bos><eos><pad>", "é 漢字 🙂 \u{0}"]

    /// `strict`: a loader's error is a finding too (for seeds, which are valid inputs: proves the target
    /// reaches the use after the loader instead of stopping at its first check).
    public func run(_ data: Data, strict: Bool = false) throws(FuzzFinding) {
        do {
            switch target {
            case .safetensors: try safetensors(data)
            case .gguf: try gguf(data)
            case .tokenizer: try tokenizer(data)
            case .config: try config(data)
            case .stConfig: try sentenceTransformers(data)
            case .jsonl: try jsonLines(data)
            case .http: try http(data, strict: strict)
            case .manifest: try manifest(data)
            case .head: try head(data)
            }
        } catch let finding as FuzzFinding {
            throw finding
        } catch {
            // The loader refused the input with an error: what bad input should get.
            if strict { throw FuzzFinding(description: "\(target.rawValue): a valid input was refused: \(error)") }
        }
    }

    private func safetensors(_ data: Data) throws {
        let url = try workspace.file("input.safetensors", data)
        let file = try SafetensorsFile(url: url)
        for name in file.tensors.keys.sorted() { _ = file.tensors[name]!.floats().array.reduce(0, +) }
    }

    private func gguf(_ data: Data) throws {
        let url = try workspace.file("input.gguf", data)
        let file = try GGUFFile(url: url)
        for key in file.metadataKeys {
            guard let array = file.metadata[key]?.arrayValue else { continue }
            _ = try? array.values()
        }
        _ = try? GemmaTokenizer.load(gguf: file)
        let encoder = try TextEncoder(source: try ModelSource(at: url))
        _ = try encoder.embed(Self.texts)
    }

    private func tokenizer(_ data: Data) throws {
        let url = try workspace.file("tokenizer.json", data)
        let tokenizer = try GemmaTokenizer.load(tokenizerJSON: url)
        for text in Self.texts {
            let ids = tokenizer.encode(text)
            _ = tokenizer.decode(ids, skipSpecialTokens: true)
            _ = tokenizer.encode(text, addSpecialTokens: false, maxLength: 3)
        }
    }

    private func config(_ data: Data) throws {
        let model = try workspace.copy(workspace.model, as: "model")
        try data.write(to: model.appendingPathComponent("config.json"))
        let encoder = try TextEncoder(source: try ModelSource(at: model))
        _ = try encoder.embed(Self.texts)
    }

    private func sentenceTransformers(_ data: Data) throws {
        guard let selector = data.first else { return }
        let files = FuzzWorkspace.sentenceTransformersFiles
        let model = try workspace.copy(workspace.sentenceTransformers, as: "st")
        try data.dropFirst().write(to: model.appendingPathComponent(files[Int(selector) % files.count]))
        let encoder = try TextEncoder(source: try ModelSource(at: model))
        _ = try encoder.embed(Self.texts)
        for name in ["query", "document"] { _ = try encoder.embed(["a dog"], options: EmbeddingOptions(prompt: try encoder.prompt(named: name))) }
    }

    /// The readers of JSON Lines files, in first-byte order.
    static let lineReaders: [@Sendable (String) throws -> Void] = [
        { _ = try JSONLines.read(path: $0) },
        { _ = try LabeledData(path: $0, task: .classification) },
        { _ = try LabeledData(path: $0, task: .regression) },
        { _ = try Corpus.load(path: $0) },
        { _ = try RerankExample.read(path: $0) },
        { _ = try ContrastiveData.read(path: $0) },
        { _ = try RetrievalQuery.read(path: $0) },
    ]

    private func jsonLines(_ data: Data) throws {
        guard let selector = data.first else { return }
        let url = try workspace.file("input.jsonl", data.dropFirst())
        try Self.lineReaders[Int(selector) % Self.lineReaders.count](url.path)
    }

    /// The POST routes, in first-byte order.
    public static let routes = ["/v1/embeddings", "/embed", "/rerank", "/predict", "/search", "/tokenize"]

    /// The body goes through the application `serve` runs (router, middleware, limits, error mapping) in
    /// HummingbirdTesting's router mode: no socket, the same code.
    private func http(_ data: Data, strict: Bool) throws {
        guard let selector = data.first else { return }
        let route = Self.routes[Int(selector) % Self.routes.count]
        let body = ByteBuffer(bytes: data.dropFirst())
        let service = workspace.service
        let answer = Mutex<Result<(Int, String), any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                var logger = Logger(label: "fuzz")
                logger.logLevel = .critical
                let app = try HTTPFront.application(service, host: "127.0.0.1", port: 0, logger: logger)
                try await app.test(.router) { client in
                    let response = try await client.execute(uri: route, method: .post,
                                                            headers: [.contentType: "application/json"], body: body)
                    answer.withLock { $0 = .success((response.status.code, String(buffer: response.body))) }
                }
            } catch {
                answer.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        done.wait()
        switch answer.withLock({ $0 }) {
        case .success(let (status, text)):
            if status >= 500 || (strict && status != 200) { throw FuzzFinding(description: "\(route) answered \(status): \(text)") }
            if status != 200, !text.contains("\"error\"") {
                throw FuzzFinding(description: "\(route) answered \(status) without a JSON error body: \(text)")
            }
        case .failure(let error): throw FuzzFinding(description: "\(route): the router failed: \(error)")
        case nil: throw FuzzFinding(description: "\(route): no answer")
        }
    }

    private func manifest(_ data: Data) throws {
        let index = try workspace.copy(workspace.index, as: "index")
        try data.write(to: index.appendingPathComponent("manifest.json"))
        let opened = try SearchIndex(directory: index, encoder: workspace.fixture.tiny)
        for mode in [SearchMode.vector, .keyword, .hybrid] { _ = try opened.search("cat sat", k: 5, mode: mode) }
    }

    private func head(_ data: Data) throws {
        guard let selector = data.first else { return }
        let reranker = selector & 2 != 0
        let directory = try workspace.copy(reranker ? workspace.rerankerHead : workspace.classifierHead, as: "head")
        try data.dropFirst().write(to: directory.appendingPathComponent(selector & 1 == 0 ? "head.json" : "head.safetensors"))
        let head = try HeadDirectory.read(directory)
        let encoder = workspace.fixture.tiny
        if reranker {
            _ = try Reranker(head: head, encoder: encoder).rank(query: "a cat", documents: Self.texts)
        } else {
            _ = try HeadPredictor(head: head, encoder: encoder).predict(Self.texts)
        }
    }
}
