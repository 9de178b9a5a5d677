import DocumentIndex
import Foundation
import ModelFormats
import GemmaEncoder
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// `serve --shard URL…`: a stateless router over shard servers (each `serve --index NAME=SHARD`), the way
/// Elasticsearch, Milvus and Vespa serve shards. It embeds the query once, with the model and query settings
/// the shards report in /info, sends the vector (and the text, for keyword search) to every shard, and merges
/// their answers as `IndexShards` merges local shards: vector results by score, keyword results by reciprocal
/// rank fusion, hybrid as the fusion of those two. A shard that fails or does not answer within the timeout is
/// reported in the answer, which is then partial, instead of failing the request.
public final class ShardRouter: Sendable {
    public let shards: [URL]
    /// The index's name on the shard servers.
    public let index: String
    /// How the shards embed queries (their query prompt, attention and pooling).
    public let options: EmbeddingOptions
    public let dimension: Int
    /// The shards' FAISS factory (the first shard's), for refusing nprobe / ef_search it does not have.
    public let factory: String
    /// The metadata field of the shards' document titles, for the results' headlines.
    public let titleField: String?
    /// The fitted fusion every shard reports (nil when one has none or they differ): hybrid answers are fused by
    /// it, else by the standard one, and it decides the default mode, as for `IndexShards`.
    public let fittedFusion: HybridFusion?
    public var fusion: HybridFusion { fittedFusion ?? .standard }
    /// The mode a request without one runs: hybrid when the shared fit beat vector search, else vector.
    public var bestSearchMode: SearchMode { fittedFusion?.bestMode ?? .vector }
    public let timeout: TimeInterval

    public struct Failure: Sendable, Equatable {
        public var shard: String
        public var error: String
    }

    public enum ConnectError: Error, CustomStringConvertible {
        case unreachable(String)
        case mismatch(String)
        public var description: String {
            switch self {
            case let .unreachable(m), let .mismatch(m): return m
            }
        }
    }

    init(shards: [URL], index: String, options: EmbeddingOptions, dimension: Int, factory: String, titleField: String?,
         fittedFusion: HybridFusion?, timeout: TimeInterval) {
        self.shards = shards
        self.index = index
        self.options = options
        self.dimension = dimension
        self.factory = factory
        self.titleField = titleField
        self.fittedFusion = fittedFusion
        self.timeout = timeout
    }

    /// Reads every shard's /info: the index (`index`, or the only one the first shard serves) must exist on each,
    /// embedded by `encoder`'s model (same digest), with the same dimension, query settings and title field
    /// everywhere.
    public static func connect(shards: [URL], index: String?, encoder: TextEncoder, timeout: TimeInterval) async throws -> ShardRouter {
        guard !shards.isEmpty else { throw ConnectError.mismatch("no shards given") }
        let digest = try ModelFingerprint.digest(of: encoder.source)
        var chosen: (name: String, info: ServiceInfo.SearchIndexInfo)?
        var fusions: [HybridFusion?] = []
        for shard in shards {
            let info: ServiceInfo
            do {
                var request = URLRequest(url: shard.appendingPathComponent("info"))
                request.timeoutInterval = timeout
                let (data, response) = try await URLSession.shared.data(for: request)
                guard (response as? HTTPURLResponse)?.statusCode == 200 else { throw ConnectError.unreachable("status \((response as? HTTPURLResponse)?.statusCode ?? 0)") }
                info = try JSONDecoder().decode(ServiceInfo.self, from: data)
            } catch {
                throw ConnectError.unreachable("shard \(shard.absoluteString): no /info (\(error))")
            }
            let served = info.search_indexes ?? [:]
            let name = index ?? chosen?.name ?? (served.count == 1 ? served.keys.first! : "")
            guard let summary = served[name] else {
                throw ConnectError.mismatch("shard \(shard.absoluteString) serves no index '\(name)' (it serves: \(served.keys.sorted().joined(separator: ", "))); name one with --shard-index")
            }
            guard summary.model_digest == digest else {
                throw ConnectError.mismatch("shard \(shard.absoluteString): index '\(name)' was built with model '\(summary.model)' (digest \(summary.model_digest.prefix(12))…), not the router's --model (digest \(digest.prefix(12))…)")
            }
            if let (_, first) = chosen, first.dimension != summary.dimension || first.query_prompt != summary.query_prompt
                || first.attention != summary.attention || first.pooling != summary.pooling {
                throw ConnectError.mismatch("shard \(shard.absoluteString): index '\(name)' embeds queries differently from the first shard's")
            }
            if let (_, first) = chosen, first.title_field != summary.title_field {
                let field = { (f: String?) in f ?? "none (or none reported)" }
                throw ConnectError.mismatch("shard \(shard.absoluteString): index '\(name)' embeds documents with title field \(field(summary.title_field)), the first shard's with \(field(first.title_field))")
            }
            chosen = chosen ?? (name, summary)
            fusions.append(summary.fusion)
        }
        let (name, info) = chosen!
        let options = EmbeddingOptions(prompt: info.query_prompt, attention: AttentionMode(rawValue: info.attention) ?? .bidirectional,
                                       pooling: info.pooling.flatMap(Pooling.init(rawValue:)))
        return ShardRouter(shards: shards, index: name, options: options, dimension: info.dimension, factory: info.factory,
                           titleField: info.title_field, fittedFusion: HybridFusion.shared(fusions), timeout: timeout)
    }

    private struct ShardAnswer: Decodable {
        struct Hit: Decodable {
            var id: String
            var score: Double
            var text: String
            var metadata: JSONValue?
        }
        var results: [Hit]
    }

    private struct ShardQuery: Encodable {
        var index: String
        var query: String
        var k: Int
        var mode: String
        var nprobe: Int?
        var ef_search: Int?
        var vector: [Float]?
    }

    /// The k best results over all shards, and the shards that did not answer. `vector` is the query's
    /// embedding (nil for keyword search).
    public func search(query: String, vector: [Float]?, k: Int, mode: SearchMode, tuning: SearchTuning) async -> (results: [SearchResult], failed: [Failure]) {
        let depth = HybridFusion.depth(k: k, mode: mode)
        let modes: [SearchMode] = mode == .hybrid ? [.vector, .keyword] : [mode]
        // Every (shard, mode) request at once; a shard failed when any of its requests did.
        let answers = await withTaskGroup(of: (Int, SearchMode, Result<[SearchResult], Error>).self) { group in
            for (s, shard) in shards.enumerated() {
                for m in modes {
                    let body = ShardQuery(index: index, query: query, k: depth, mode: m.rawValue,
                                          nprobe: m == .keyword ? nil : tuning.nprobe, ef_search: m == .keyword ? nil : tuning.efSearch,
                                          vector: m == .keyword ? nil : vector)
                    group.addTask { (s, m, await Result(catching: { try await self.ask(shard, body) })) }
                }
            }
            var all: [(Int, SearchMode, Result<[SearchResult], Error>)] = []
            for await answer in group { all.append(answer) }
            return all
        }
        var failed: [Int: String] = [:]
        var lists: [SearchMode: [[SearchResult]]] = [:]
        for m in modes { lists[m] = Array(repeating: [], count: shards.count) }
        for (s, m, result) in answers {
            switch result {
            case let .success(results): lists[m]![s] = results
            case let .failure(error): failed[s] = failed[s] ?? "\(error)"
            }
        }
        // A failed shard's other list (hybrid) is left out too: its answer would be half of one.
        for s in failed.keys { for m in modes { lists[m]![s] = [] } }
        let failures = failed.keys.sorted().map { Failure(shard: shards[$0].absoluteString, error: failed[$0]!) }
        return (IndexShards.combine(vector: lists[.vector], keyword: lists[.keyword], k: k, mode: mode, fusion: fusion), failures)
    }

    private func ask(_ shard: URL, _ body: ShardQuery) async throws -> [SearchResult] {
        var request = URLRequest(url: shard.appendingPathComponent("search"))
        request.httpMethod = "POST"
        request.timeoutInterval = timeout
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = try JSONEncoder().encode(body)
        let (data, response) = try await URLSession.shared.data(for: request)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else {
            throw ConnectError.unreachable("status \(status): \(String(decoding: data.prefix(500), as: UTF8.self))")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return try JSONDecoder().decode(ShardAnswer.self, from: data).results.map { hit in
            let metadata = hit.metadata.flatMap { try? encoder.encode($0) }.map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return SearchResult(id: hit.id, score: hit.score, text: hit.text, metadataJSON: metadata)
        }
    }
}

extension Result where Failure == Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
