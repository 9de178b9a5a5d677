import DocumentIndex
import Foundation
import GemmaEncoder
import TestSupport
import XCTest

/// Scores a document 1 when it is the one the test knows to be relevant to the query: a perfect reranker, so
/// the reranking plumbing's effect is exactly predictable.
struct KnownAnswerScorer: PairScorer {
    let answers: [String: String]   // query → relevant document text
    func rerankScores(query: String, documents: [String], similarity: [Float]?) throws -> RerankScores {
        RerankScores(final: documents.map { $0 == answers[query] ? 1 : 0 })
    }
}

/// Scores each document with the fused cosine the pipeline hands it, or -1 when it hands none.
struct CosineEcho: PairScorer {
    let fusedSimilarity: FusedSimilarity?
    func rerankScores(query: String, documents: [String], similarity: [Float]?) throws -> RerankScores {
        RerankScores(final: similarity ?? documents.map { _ in -1 })
    }
}

final class RetrievalTests: XCTestCase {
    var dir: URL!
    override func setUpWithError() throws { dir = try temporaryDirectory("retrieval") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    func testMetricsAgainstHandValues() {
        let m = RetrievalMetrics(ranking: ["a", "x", "b"], relevant: ["a", "b"])
        // DCG 1/log2(2) + 1/log2(4) = 1.5; ideal 1 + 1/log2(3).
        XCTAssertEqual(m.ndcg10, 1.5 / (1 + 1 / log2(3.0)), accuracy: 1e-12)
        XCTAssertEqual(m.mrr10, 1)
        XCTAssertEqual(m.recall100, 1)
        let late = RetrievalMetrics(ranking: (0..<10).map { "n\($0)" } + ["a"], relevant: ["a"])
        XCTAssertEqual(late.ndcg10, 0)
        XCTAssertEqual(late.mrr10, 0)
        XCTAssertEqual(late.recall100, 1)
        let third = RetrievalMetrics(ranking: ["x", "y", "a"], relevant: ["a", "zz"])
        XCTAssertEqual(third.mrr10, 1.0 / 3, accuracy: 1e-12)
        XCTAssertEqual(third.recall100, 0.5)
        XCTAssertEqual(RetrievalMetrics.mean([m, late]).mrr10, 0.5)
        // Recall@k and MAP: hits at ranks 1 and 3 of 2 relevant → AP (1/1 + 2/3) / 2; a miss counts 0.
        XCTAssertEqual(m.recall1, 0.5)
        XCTAssertEqual(m.recall5, 1)
        XCTAssertEqual(m.map100, (1 + 2.0 / 3) / 2, accuracy: 1e-12)
        XCTAssertEqual(third.map100, (1.0 / 3) / 2, accuracy: 1e-12)
        XCTAssertEqual(late.recall10, 0)
        XCTAssertEqual(late.recall20, 1)
        XCTAssertEqual(late.map100, 1.0 / 11, accuracy: 1e-12)
        XCTAssertEqual(RetrievalMetrics.mean([m, late]).map100, (m.map100 + late.map100) / 2, accuracy: 1e-12)
    }

    func testQueryRowsErrorsNameTheLine() throws {
        let url = dir.appendingPathComponent("q.jsonl")
        try #"{"id": "a", "text": "t", "relevant": ["x"]}"# .appending("\n{\"id\": \"b\", \"text\": \"t\"}").write(to: url, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try RetrievalQuery.read(path: url.path)) {
            XCTAssertTrue("\($0)".contains("q.jsonl:2: field \"relevant\" must be a non-empty array"), "\($0)")
        }
    }

    /// An index over 40 Debian documents with the tiny model (fast; its rankings are arbitrary), the documents'
    /// short descriptions as queries.
    func tinyIndex() throws -> (SearchIndex, [RetrievalQuery], [CorpusDocument]) {
        let encoder = try TestModels.tiny()
        let docs = try debianSample(40)
        let index = try SearchIndex.create(directory: dir.appendingPathComponent("index"), encoder: encoder,
                                           modelName: encoder.location.path, factory: "Flat", expectedCount: docs.count)
        try index.add(docs, batch: 16, resume: true)
        let queries = docs.prefix(20).map { doc -> RetrievalQuery in
            let title = (try? JSONSerialization.jsonObject(with: Data(doc.metadataJSON.utf8)) as? [String: Any])?["title"] as? String
            return RetrievalQuery(id: doc.id, text: title ?? doc.id, relevant: [doc.id])
        }
        return (index, queries, docs)
    }

    /// The fusions' arithmetic: the weight's ends rank as each search alone, RRF at 0.5 is plain reciprocal rank
    /// fusion, scores are min–max normalized per list.
    func testHybridFusionArithmetic() {
        let vector: [(id: String, score: Double)] = [("a", 0.9), ("b", 0.8), ("c", 0.5)]
        let keyword: [(id: String, score: Double)] = [("c", 12), ("d", 7), ("a", 2)]
        for method in HybridFusion.Method.allCases {
            XCTAssertEqual(HybridFusion(method: method, vectorWeight: 1).fuse(vector: vector, keyword: keyword).prefix(3).map(\.id), ["a", "b", "c"])
            XCTAssertEqual(HybridFusion(method: method, vectorWeight: 0).fuse(vector: vector, keyword: keyword).prefix(3).map(\.id), ["c", "d", "a"])
        }
        let plain = reciprocalRankFusion([vector.map(\.id), keyword.map(\.id)])
        let rrf = HybridFusion(method: .rrf, vectorWeight: 0.5).fuse(vector: vector, keyword: keyword)
        XCTAssertEqual(rrf.map(\.id), plain.map(\.id))
        for (a, b) in zip(rrf, plain) { XCTAssertEqual(a.score, b.score, accuracy: 1e-15) }
        // Normalized: a = 0.6 · 1 + 0.4 · 0, c = 0.6 · 0 + 0.4 · 1, b = 0.6 · 0.75, d = 0.4 · 0.5.
        let score = HybridFusion(method: .score, vectorWeight: 0.6).fuse(vector: vector, keyword: keyword)
        XCTAssertEqual(score.map(\.id), ["a", "b", "c", "d"])
        XCTAssertEqual(score[1].score, 0.45, accuracy: 1e-12)
        XCTAssertEqual(score[3].score, 0.2, accuracy: 1e-12)
        XCTAssertEqual(HybridFusion.standard, HybridFusion(method: .score, vectorWeight: 0.7))
    }

    /// `tuneFusion` on labelled queries: the best fusion is never below either search alone on them, measured as
    /// eval would measure it; stored in the manifest, it is what hybrid search runs and reopening keeps it.
    func testTunedFusionIsNoWorseThanEitherSearchAndIsStored() throws {
        let (index, queries, _) = try tinyIndex()
        let report = try index.tuneFusion(queries)
        XCTAssertEqual(report.candidates.count, 2 * SearchIndex.fusionWeights.count)
        let tuned = try XCTUnwrap(report.best.tuned)
        XCTAssertGreaterThanOrEqual(tuned.ndcg10, max(report.vectorNDCG10, report.keywordNDCG10))
        XCTAssertEqual(tuned.ndcg10, report.candidates.map(\.ndcg10).max())
        let before = try RetrievalEvaluation.evaluate(index, queries: queries)
        XCTAssertEqual(report.vectorNDCG10, before["vector"]!.ndcg10, accuracy: 1e-12, "the same rankings eval-retrieval measures")
        XCTAssertEqual(report.keywordNDCG10, before["keyword"]!.ndcg10, accuracy: 1e-12)
        try index.setFusion(report.best)
        let after = try RetrievalEvaluation.evaluate(index, queries: queries)
        XCTAssertEqual(after["hybrid"]!.ndcg10, tuned.ndcg10, accuracy: 1e-12)
        let reopened = try SearchIndex.open(directory: index.directory, model: index.model.location.path)
        XCTAssertEqual(reopened.manifest.fusion, report.best)
        XCTAssertEqual(reopened.manifest.bestSearchMode, tuned.ndcg10 > tuned.vectorNDCG10 ? .hybrid : .vector)
        try reopened.setFusion(nil)
        XCTAssertNil(try SearchIndex.manifest(in: index.directory).fusion)
        XCTAssertEqual(try SearchIndex.manifest(in: index.directory).bestSearchMode, .vector)
    }

    /// A document's title fills the model's document prompt ("title: none" → "title: TITLE"): the stored vector is
    /// the document embedded with that prompt, as sentence-transformers' encode(prompt=…) embeds it; without a title
    /// field (or with titles off) the prompt stays as the model gives it.
    func testTitlesFillTheDocumentPrompt() throws {
        let model = try tinyTitledEncoderDirectory(in: dir)
        let encoder = try TextEncoder(directory: model)
        let docs = [CorpusDocument(id: "a", text: "a tool to pack files", metadataJSON: #"{"title": "file archiver"}"#),
                    CorpusDocument(id: "b", text: "a game of cards", metadataJSON: #"{"section": "games"}"#)]
        func stored(titleField: String?, name: String) throws -> (SearchIndex, [Float]) {
            let index = try SearchIndex.create(directory: dir.appendingPathComponent(name), encoder: encoder, modelName: model.path,
                                               factory: "Flat", expectedCount: 2, titleField: titleField)
            try index.add(docs, batch: 8, resume: true)
            let titled = try encoder.embed([docs[0].text], options: EmbeddingOptions(prompt: "title: file archiver | text: "))[0]
            let results = try docs.map { SearchResult(id: $0.id, score: 0, text: $0.text, metadataJSON: $0.metadataJSON) }
            return (index, try XCTUnwrap(try index.storedCosines(query: titled, results: results)))
        }
        let (titledIndex, withTitles) = try stored(titleField: "title", name: "titled")
        XCTAssertEqual(titledIndex.manifest.titleField, "title")
        XCTAssertEqual(withTitles[0], 1, accuracy: 1e-5, "the titled document is embedded with its title in the prompt")
        let plain = try encoder.embed([docs[1].text], options: EmbeddingOptions(prompt: "title: none | text: "))[0]
        let results = docs.map { SearchResult(id: $0.id, score: 0, text: $0.text, metadataJSON: $0.metadataJSON) }
        XCTAssertEqual(try XCTUnwrap(try titledIndex.storedCosines(query: plain, results: results))[1], 1, accuracy: 1e-5,
                       "a document without a title keeps \"title: none\"")
        let (untitled, withoutTitles) = try stored(titleField: nil, name: "untitled")
        XCTAssertNil(untitled.manifest.titleField)
        XCTAssertLessThan(withoutTitles[0], 0.9999, "without titles the prompt says none")
    }

    /// A result as a person reads it: the title, else the first sentence that says something, and a snippet around
    /// the query's words with where they are.
    func testResultSummaryHeadlineAndSnippet() {
        let text = "This package contains two programs:\n - mscompress, a tool to compress files with LZ77;\n - msexpand, which\n"
            + "expands them. " + String(repeating: "Filler words that say nothing here. ", count: 8) + "Compression is fast."
        let untitled = ResultSummary(text: text, metadataJSON: "{}", query: "compress files on the command line", width: 80)
        XCTAssertEqual(untitled.headline, "- mscompress, a tool to compress files with LZ77; - msexpand, which expands them.")
        let marked = untitled.highlights.map { range in String(Array(untitled.snippet)[range]) }
        XCTAssertEqual(Array(marked.prefix(2)), ["compress", "files"], "word starts match; \"mscompress\" is another word")
        XCTAssertTrue(marked.allSatisfy { $0.lowercased().hasPrefix("compress") || $0.lowercased().hasPrefix("files") || $0.lowercased().hasPrefix("line") }, "\(marked)")
        XCTAssertLessThanOrEqual(untitled.snippet.count, 80 + 4)
        XCTAssertTrue(untitled.snippet.hasSuffix(" …"), untitled.snippet)
        // A word longer than the window before the match (a hash, unbroken text) neither traps nor hides the match.
        let long = ResultSummary(text: "a " + String(repeating: "x", count: 300) + " foo bar", metadataJSON: "{}", query: "foo")
        XCTAssertTrue(long.snippet.contains("foo"), long.snippet)
        XCTAssertEqual(long.highlights.map { String(Array(long.snippet)[$0]) }, ["foo"])
        let giant = ResultSummary(text: "foo" + String(repeating: "y", count: 400) + " tail", metadataJSON: "{}", query: "zzz")
        XCTAssertLessThanOrEqual(giant.snippet.count, 160 + 2)
        let titled = ResultSummary(text: text, metadataJSON: #"{"title": "Microsoft compress/expand tools"}"#, query: "compress")
        XCTAssertEqual(titled.headline, "Microsoft compress/expand tools")
        let other = ResultSummary(text: "Short text.", metadataJSON: #"{"name": "N", "title": "T"}"#, query: "x", titleField: "name")
        XCTAssertEqual(other.headline, "N")
        XCTAssertEqual(other.snippet, "Short text.")
        XCTAssertEqual(other.highlights, [])
    }

    func testEvaluationAndRerankingPlumbing() throws {
        let (index, queries, docs) = try tinyIndex()
        let text = Dictionary(uniqueKeysWithValues: docs.map { ($0.id, $0.text) })
        let scorer = KnownAnswerScorer(answers: Dictionary(uniqueKeysWithValues: try queries.map { ($0.text, try XCTUnwrap(text[$0.id])) }))
        let candidates = 10
        let metrics = try RetrievalEvaluation.evaluate(index, queries: queries, reranker: scorer, candidates: candidates)
        XCTAssertEqual(Set(metrics.keys), ["vector", "keyword", "hybrid", "reranked"])
        for m in metrics.values {
            for v in [m.ndcg10, m.mrr10, m.recall100] { XCTAssertTrue((0...1).contains(v)) }
        }
        // The perfect scorer puts the answer first whenever vector search found it in the candidates.
        let found = try index.search(queries.map(\.text), k: candidates, mode: .vector)
            .enumerated().filter { i, results in results.contains { $0.id == queries[i].id } }.count
        let rerankedMetrics = try XCTUnwrap(metrics["reranked"]), vector = try XCTUnwrap(metrics["vector"])
        XCTAssertEqual(rerankedMetrics.mrr10, Double(found) / Double(queries.count), accuracy: 1e-12)
        XCTAssertEqual(rerankedMetrics.recall100, vector.recall100, accuracy: 1e-12)
        XCTAssertGreaterThanOrEqual(rerankedMetrics.ndcg10, vector.ndcg10)

        let reranked = try SearchPipeline(index: index, mode: .vector, candidates: 40).search(queries[0].text, k: 3, reranker: scorer)
        XCTAssertEqual(reranked.first?.result.id, queries[0].id)
        XCTAssertEqual(reranked.first?.score, 1)
        XCTAssertEqual(reranked.count, 3)
    }

    /// A scorer fusing the cosine the index stores gets it from the stored vectors, in every mode; equal to the
    /// cosine of query and document embedded apart (what a fused reranker computes itself). A scorer fusing
    /// another embedding (here another document prompt) or none gets nothing and embeds for itself.
    func testAFusingScorerGetsTheStoredVectorsCosines() throws {
        let (index, queries, _) = try tinyIndex()
        let manifest = index.manifest
        let stored = FusedSimilarity(modelDigest: manifest.modelDigest, queryPrompt: manifest.queryPrompt,
                                     documentPrompt: manifest.documentPrompt, attention: .bidirectional)
        func embedded(_ text: String, prompt: String?) throws -> [Float] {
            try index.model.embed([text], options: EmbeddingOptions(prompt: prompt, normalize: true))[0]
        }
        for mode in SearchMode.allCases {
            let query = queries[3].text
            let hits = try SearchPipeline(index: index, mode: mode, candidates: 5).search(query, k: 8, reranker: CosineEcho(fusedSimilarity: stored))
            XCTAssertEqual(hits.count, 8, "\(mode)")
            XCTAssertTrue(hits.dropFirst(5).allSatisfy { $0.rerankScore == nil }, "below the candidates: first-stage order and score")
            let q = try embedded(query, prompt: manifest.queryPrompt)
            for hit in hits.prefix(5) {
                let d = try embedded(hit.result.text, prompt: manifest.documentPrompt)
                XCTAssertEqual(try XCTUnwrap(hit.rerankScore), zip(q, d).reduce(0) { $0 + $1.0 * $1.1 }, accuracy: 1e-5, "\(mode) \(hit.result.id)")
            }
            XCTAssertEqual(hits.prefix(5).map(\.score), hits.prefix(5).map(\.score).sorted(by: >))
        }
        var other = stored
        other.documentPrompt = "title: none | text: "
        for similarity in [other, nil] {
            let hits = try SearchPipeline(index: index, mode: .vector, candidates: 5).search(queries[3].text, k: 5, reranker: CosineEcho(fusedSimilarity: similarity))
            XCTAssertEqual(hits.map(\.rerankScore), [Float?](repeating: -1, count: 5))
        }
    }

    func testMinedNegativesExcludeTheRelevantDocument() throws {
        let (index, queries, docs) = try tinyIndex()
        let rows = try NegativeMining.mine(index, queries: queries, negatives: 4, mode: .hybrid)
        XCTAssertEqual(rows.count, queries.count)
        let text = Dictionary(uniqueKeysWithValues: docs.map { ($0.id, $0.text) })
        for (row, query) in zip(rows, queries) {
            XCTAssertEqual(row.positive, text[query.id])
            XCTAssertEqual(row.negatives.count, 4)
            XCTAssertFalse(row.negatives.contains(row.positive))
        }
        let missing = [RetrievalQuery(id: "q", text: "t", relevant: ["no-such-package"])]
        XCTAssertThrowsError(try NegativeMining.mine(index, queries: missing, negatives: 2, mode: .vector)) {
            XCTAssertTrue("\($0)".contains("relevant document no-such-package is not in the index"), "\($0)")
        }
    }

    /// sentence-transformers' miner controls: the rank window, margins below the positive's score, score
    /// bounds, random sampling, and a cross-encoder whose scores replace the cosines.
    func testMiningControls() throws {
        let (index, queries, _) = try tinyIndex()
        var wide = NegativeMining.Options()
        wide.negatives = 40
        let all = try NegativeMining.mine(index, queries: queries, options: wide)
        for row in all {
            XCTAssertEqual(row.negativeScores, row.negativeScores.sorted(by: >), "top sampling keeps rank order")
            XCTAssertEqual(row.negatives.count, 39, "every other document of the 40")
        }
        var skip = NegativeMining.Options()
        skip.negatives = 3
        skip.rangeMin = 2
        for (row, full) in zip(try NegativeMining.mine(index, queries: queries, options: skip), all) {
            XCTAssertEqual(row.negatives, Array(full.negatives[2..<5]))
        }
        var margin = NegativeMining.Options()
        margin.negatives = 40
        margin.absoluteMargin = 0.05
        margin.maxScore = 0.99
        var relative = margin
        relative.absoluteMargin = nil
        relative.relativeMargin = 0.1
        for (options, bound) in [(margin, { (p: Double) in p - 0.05 }), (relative, { (p: Double) in p * 0.9 })] {
            let rows = try NegativeMining.mine(index, queries: queries, options: options)
            var removed = 0
            for (row, full) in zip(rows, all) {
                XCTAssertTrue(row.negativeScores.allSatisfy { $0 <= bound(row.positiveScore) && $0 <= 0.99 })
                // Exactly the candidates above the bound are gone, the rest kept in order.
                let kept = zip(full.negatives, full.negativeScores).filter { $0.1 <= bound(full.positiveScore) && $0.1 <= 0.99 }.map(\.0)
                XCTAssertTrue(row.negatives == kept, "\(row.queryID): \(row.negatives.count) kept, \(kept.count) expected")
                removed += full.negatives.count - row.negatives.count
            }
            XCTAssertGreaterThan(removed, 0, "the margin removed candidates on this index")
        }
        var random = NegativeMining.Options()
        random.negatives = 4
        random.sampling = .random
        random.seed = 9
        let sampled = try NegativeMining.mine(index, queries: queries, options: random)
        XCTAssertEqual(sampled, try NegativeMining.mine(index, queries: queries, options: random), "seeded")
        XCTAssertNotEqual(sampled.map(\.negatives), all.map { Array($0.negatives.prefix(4)) })
        for (row, full) in zip(sampled, all) { XCTAssertTrue(Set(row.negatives).isSubset(of: full.negatives)) }

        // A cross-encoder that scores by text length: candidates re-ranked by it, the margin on its scores.
        struct Length: PairScorer {
            var fusedSimilarity: FusedSimilarity? { nil }
            func rerankScores(query: String, documents: [String], similarity: [Float]?) throws -> RerankScores {
                RerankScores(final: documents.map { Float($0.count) })
            }
        }
        var rescored = NegativeMining.Options()
        rescored.negatives = 5
        rescored.absoluteMargin = 1
        for row in try NegativeMining.mine(index, queries: queries, options: rescored, rescorer: Length()) {
            XCTAssertEqual(row.positiveScore, Double(row.positive.count))
            XCTAssertEqual(row.negativeScores, row.negatives.map { Double($0.count) })
            XCTAssertEqual(row.negativeScores, row.negativeScores.sorted(by: >))
            XCTAssertTrue(row.negatives.allSatisfy { $0.count < row.positive.count })
        }
        var bad = NegativeMining.Options()
        bad.relativeMargin = 1.5
        XCTAssertThrowsError(try NegativeMining.mine(index, queries: queries, options: bad)) {
            XCTAssertTrue("\($0)".contains("relative margin must be below 1"), "\($0)")
        }
    }
}
