import DocumentIndex
import EncoderService
import Foundation
import GemmaEncoder
import TaskHeads
import TestSupport
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Everything a served test needs, built once on the tiny random Gemma models (outputs mean nothing; the
/// service's plumbing is what is tested): two models, a classification head, a reranker and an index.
final class ServerFixture: @unchecked Sendable {
    static let shared: ServerFixture = try! ServerFixture()

    let directory: URL
    let tiny: TextEncoder
    let second: TextEncoder
    let head: HeadPredictor
    let reranker: Reranker
    let index: SearchIndex
    let documents: [CorpusDocument]

    private init() throws {
        directory = try temporaryDirectory("service")
        let tinyDirectory = try tinyEncoderDirectory(in: directory)
        tiny = try TextEncoder(directory: tinyDirectory)
        // A second model: the tiny Gemma 2 checkpoint with the same tokenizer.
        let secondDirectory = directory.appendingPathComponent("tiny-gemma2")
        try FileManager.default.createDirectory(at: secondDirectory, withIntermediateDirectories: true)
        for name in ["config.json", "model.safetensors"] {
            try FileManager.default.copyItem(at: fixturesDirectory.appendingPathComponent("tiny/gemma2/\(name)"),
                                             to: secondDirectory.appendingPathComponent(name))
        }
        try FileManager.default.copyItem(at: tinyDirectory.appendingPathComponent("tokenizer.json"),
                                         to: secondDirectory.appendingPathComponent("tokenizer.json"))
        second = try TextEncoder(directory: secondDirectory)

        let root = directory
        func file(_ name: String, _ lines: [String]) throws -> String {
            let url = root.appendingPathComponent(name)
            try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
            return url.path
        }
        let words = ["the cat sat", "a dog ran", "hello there", "tiny model text", "more words here"]
        let rows = (0..<30).map { #"{"text": "\#(words[$0 % 5]) \#($0)", "label": "\#(["alpha", "beta", "gamma"][$0 % 3])"}"# }
        var plan = HeadTrainingPlan(task: .classification, pooling: .mean)
        plan.hiddenSize = 8
        plan.options.epochs = 2
        let trained = try HeadBuilder.train(encoder: tiny, modelName: "tiny", train: try LabeledData(path: file("train.jsonl", rows), task: .classification),
                                            valid: nil, plan: plan, cache: nil)
        head = try HeadPredictor(head: trained, encoder: tiny)

        let pairs = (0..<12).map { i in
            #"{"query": "the cat \#(i)", "positive": "a cat sat \#(i)", "negatives": ["a dog ran", "hello there", "tiny words \#(i)"]}"#
        }
        var rerankPlan = RerankerTrainingPlan()
        rerankPlan.negatives = 2
        rerankPlan.options.epochs = 2
        rerankPlan.hiddenSize = 8
        rerankPlan.maxLength = 120
        rerankPlan.fuseSimilarity = true  // the service's fused path: pairs and embeddings through the scheduler
        let rerankHead = try RerankerBuilder.train(encoder: tiny, modelName: "tiny", examples: try RerankExample.read(path: file("pairs.jsonl", pairs)),
                                                   valid: nil, plan: rerankPlan, cache: nil)
        reranker = try Reranker(head: rerankHead, encoder: tiny)

        documents = (0..<40).map { i in
            CorpusDocument(id: "doc\(i)", text: "\(words[i % 5]) number \(i) \(words[(i * 3) % 5])", metadataJSON: #"{"n": \#(i)}"#)
        }
        index = try SearchIndex.create(directory: directory.appendingPathComponent("index"), encoder: tiny, modelName: "tiny",
                                       factory: "Flat", expectedCount: documents.count)
        try index.add(documents, batch: 16, resume: false)
    }

    func service(limits: ServiceLimits = ServiceLimits()) -> EncoderService {
        EncoderService(models: [(name: "tiny", encoder: tiny), (name: "second", encoder: second)],
                       heads: ["sections": head], reranker: reranker, rerankerName: "tiny-reranker",
                       indexes: ["docs": index], limits: limits)
    }
}

/// A minimal HTTP client for the tests: URLSession against the loopback server.
struct Client: @unchecked Sendable {
    let base: URL
    let session: URLSession

    init(port: Int) {
        base = URL(string: "http://127.0.0.1:\(port)")!
        let configuration = URLSessionConfiguration.ephemeral
        configuration.httpMaximumConnectionsPerHost = 64
        configuration.timeoutIntervalForRequest = 60
        session = URLSession(configuration: configuration)
    }

    struct Reply {
        var status: Int
        var headers: [String: String]
        var body: Data
        var json: Any? { try? JSONSerialization.jsonObject(with: body, options: [.fragmentsAllowed]) }
        var object: [String: Any] { json as? [String: Any] ?? [:] }
    }

    func send(_ method: String, _ path: String, body: Data? = nil) async throws -> Reply {
        var request = URLRequest(url: base.appendingPathComponent(path))
        request.httpMethod = method
        request.httpBody = body
        if body != nil { request.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        let (data, response) = try await session.data(for: request)
        let http = response as! HTTPURLResponse
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields { headers[String(describing: key).lowercased()] = String(describing: value) }
        return Reply(status: http.statusCode, headers: headers, body: data)
    }

    func post(_ path: String, _ object: Any) async throws -> Reply {
        try await send("POST", path, body: try JSONSerialization.data(withJSONObject: object, options: [.fragmentsAllowed]))
    }
}

func floats(_ any: Any?) -> [Float] { (any as? [Any] ?? []).map { Float(($0 as? NSNumber)?.doubleValue ?? .nan) } }
