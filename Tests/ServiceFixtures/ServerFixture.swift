import DocumentIndex
import EncoderService
import Foundation
import GemmaEncoder
import TaskHeads
import TestSupport

/// Everything a served test (and the HTTP fuzz target) needs, built once per process on the tiny random Gemma models (outputs mean
/// nothing; the service's plumbing is what is tested): two models, a classification head, a reranker and an
/// index.
public final class ServerFixture: Sendable {
    private static let built = LoadOnce<ServerFixture>()

    /// Building the fixture failed; the reason is the underlying error.
    public struct BuildFailed: Error, CustomStringConvertible {
        public let reason: String
        public var description: String { "the server fixture (tiny models, head, reranker, index) could not be built: \(reason)" }
    }

    /// The fixture, built on first use. A failure to build it is thrown, so the asking test's setUp fails
    /// with the reason; it never takes the whole test bundle down.
    public static func shared() throws(BuildFailed) -> ServerFixture {
        do {
            return try built.value("server") { try ServerFixture() }
        } catch {
            throw BuildFailed(reason: "\(error)")
        }
    }

    public let directory: URL
    public let tiny: TextEncoder
    public let second: TextEncoder
    public let head: HeadPredictor
    public let reranker: Reranker
    public let index: SearchIndex
    public let documents: [CorpusDocument]

    public static let words = ["the cat sat", "a dog ran", "hello there", "tiny model text", "more words here"]

    private init() throws {
        directory = try temporaryDirectory("service")
        tiny = try TestModels.tiny()
        second = try TestModels.tinyGemma2()
        head = try Self.trainHead(tiny, in: directory)
        reranker = try Self.trainReranker(tiny, in: directory)
        documents = (0..<40).map { i in
            CorpusDocument(id: "doc\(i)", text: "\(Self.words[i % 5]) number \(i) \(Self.words[(i * 3) % 5])",
                           metadataJSON: #"{"n": \#(i)}"#)
        }
        index = try SearchIndex.create(directory: directory.appendingPathComponent("index"), encoder: tiny, modelName: "tiny",
                                       factory: "Flat", expectedCount: documents.count)
        try index.add(documents, batch: 16, resume: false)
    }

    public func service(limits: ServiceLimits = ServiceLimits()) -> EncoderService {
        EncoderService(models: [(name: "tiny", encoder: tiny), (name: "second", encoder: second)],
                       heads: ["sections": head], reranker: .head(reranker), rerankerName: "tiny-reranker",
                       indexes: ["docs": index], limits: limits)
    }

    private static func write(_ lines: [String], to url: URL) throws -> String {
        try lines.joined(separator: "\n").write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    /// A classification head over three labels, two epochs: enough to have scores to serve.
    private static func trainHead(_ encoder: TextEncoder, in directory: URL) throws -> HeadPredictor {
        let rows = (0..<30).map { #"{"text": "\#(words[$0 % 5]) \#($0)", "label": "\#(["alpha", "beta", "gamma"][$0 % 3])"}"# }
        var plan = HeadTrainingPlan(task: .classification, pooling: .mean)
        plan.hiddenSize = 8
        plan.options.epochs = 2
        let train = try LabeledData(path: write(rows, to: directory.appendingPathComponent("train.jsonl")), task: .classification)
        let trained = try HeadBuilder.train(encoder: encoder, modelName: "tiny", train: train, valid: nil, plan: plan, cache: nil)
        return try HeadPredictor(head: trained, encoder: encoder)
    }

    /// A reranker with the fused path (pairs and embeddings both go through the scheduler).
    private static func trainReranker(_ encoder: TextEncoder, in directory: URL) throws -> Reranker {
        let pairs = (0..<12).map { i in
            #"{"query": "the cat \#(i)", "positive": "a cat sat \#(i)", "negatives": ["a dog ran", "hello there", "tiny words \#(i)"]}"#
        }
        var plan = RerankerTrainingPlan()
        plan.negatives = 2
        plan.options.epochs = 2
        plan.hiddenSize = 8
        plan.maxLength = 120
        plan.fuseSimilarity = true
        let examples = try RerankExample.read(path: write(pairs, to: directory.appendingPathComponent("pairs.jsonl")))
        let head = try RerankerBuilder.train(encoder: encoder, modelName: "tiny", examples: examples, valid: nil, plan: plan, cache: nil)
        return try Reranker(head: head, encoder: encoder)
    }
}
