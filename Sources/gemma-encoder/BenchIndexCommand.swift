import ArgumentParser
import EncoderKernels
import Foundation
import VectorSearch

struct BenchIndexCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench-index",
        abstract: "Measure vector search (queries/s, latency, recall@k) per FAISS index kind on synthetic vectors.",
        discussion: """
        Each kind is searched through VectorIndex (what `search` and the server use) and by FAISS alone, timed \
        inside the C++ shim with nothing of ours in the loop, alternating three times and keeping the best of each: \
        the difference is this wrapper's overhead. Recall is against exact (Flat) search. \
        Example: gemma-encoder bench-index --count 1000000 --queries 200
        """)

    @Option(help: "Vectors in the index.")
    var count = 100_000

    @Option(help: "Vector dimension.")
    var dimension = 768

    @Option(help: "Queries, searched one per call and then as one batch.")
    var queries = 1000

    @Option(name: .short, help: "Neighbours per query.")
    var k = 10

    @Option(name: .customLong("factory"), help: "A FAISS factory string; repeat for several. Default: Flat, HNSW32, IVF{4√N},Flat, IVF{4√N},PQ{d/8}, SQ8.")
    var factories: [String] = []

    @Option(help: "IVF lists visited per query.")
    var nprobe = 32

    @Option(name: .customLong("ef-search"), help: "HNSW candidate list size at query time.")
    var efSearch = 64

    @Option(name: .customLong("train-sample"), help: "Vectors used to train IVF, PQ and SQ quantizers.")
    var trainSample = 100_000

    @Option(name: .customLong("omp-threads"), help: "OpenMP threads for FAISS (1, as every command runs it).")
    var ompThreads = 1

    @Flag(help: "Print one JSON object per index kind instead of the table.")
    var json = false

    func validate() throws {
        guard count > 0, dimension > 0, queries > 0, k > 0, nprobe > 0, efSearch > 0, trainSample > 0 else {
            throw ValidationError("--count, --dimension, --queries, -k, --nprobe, --ef-search and --train-sample must be positive")
        }
    }

    func run() throws {
        do { try bench() } catch { fail(error) }
    }

    private func bench() throws {
        try VectorIndex.setBLASThreshold(1)
        try VectorIndex.setOpenMPThreads(ompThreads)
        let nlist = 1 << Int(log2(4 * Double(count).squareRoot()).rounded())
        let kinds = factories.isEmpty
            ? ["Flat", "HNSW32", "IVF\(nlist),Flat", "IVF\(nlist),PQ\(dimension / 8)", "SQ8"] : factories
        let base = Self.clusteredVectors(count: count, dimension: dimension, seed: 1)
        let queryVectors = Self.clusteredVectors(count: queries, dimension: dimension, seed: 2)
        let ids = (0..<Int64(count)).map { $0 }

        // Ground truth: exact inner-product neighbours from a Flat index.
        let exact = try VectorIndex(dimension: dimension, factory: "Flat")
        try exact.add(base, ids: ids)
        let truth = try exact.search(queryVectors, k: k).map { Set($0.map(\.id)) }

        if !json {
            print("\(count) vectors × \(dimension), \(queries) queries, k = \(k), nprobe \(nprobe), efSearch \(efSearch)")
            print("index".padding(toLength: 22, withPad: " ", startingAt: 0)
                  + "   build s   ours q/s  FAISS q/s  overhead   p50 ms   p99 ms   batch ours/FAISS q/s   recall@\(k)")
        }
        for factory in kinds {
            let (index, seconds) = try factory == "Flat" ? (exact, 0) : build(factory, base: base, ids: ids)
            if factory.contains("IVF") { try index.setNProbe(nprobe) }
            if factory.contains("HNSW") { try index.setEfSearch(efSearch) }
            var row = try measure(index, queries: queryVectors, truth: truth)
            row.buildSeconds = seconds
            report(factory, row)
        }
    }

    struct Row {
        var buildSeconds = 0.0
        var ours = 0.0, faiss = 0.0, oursBatch = 0.0, faissBatch = 0.0
        var p50 = 0.0, p99 = 0.0, recall = 0.0
    }

    /// The index with every vector added, and the seconds that took (training included).
    private func build(_ factory: String, base: [Float], ids: [Int64]) throws -> (VectorIndex, Double) {
        let start = Date()
        let index = try VectorIndex(dimension: dimension, factory: factory)
        if !index.isTrained {
            try index.train(Array(base.prefix(min(count, trainSample) * dimension)))
        }
        let progress = Progress(total: count, label: "adding to \(factory)")
        let chunk = 50_000
        for first in stride(from: 0, to: count, by: chunk) {
            let last = min(first + chunk, count)
            try index.add(Array(base[(first * dimension)..<(last * dimension)]), ids: Array(ids[first..<last]))
            progress.update(last)
        }
        progress.finish()
        return (index, Date().timeIntervalSince(start))
    }

    private func measure(_ index: VectorIndex, queries queryVectors: [Float], truth: [Set<Int64>]) throws -> Row {
        var row = Row()
        let single = (0..<queries).map { Array(queryVectors[($0 * dimension)..<(($0 + 1) * dimension)]) }
        _ = try index.search(Array(single.prefix(10)).flatMap { $0 }, k: k)  // warm-up
        var best = (ours: Double.infinity, faiss: Double.infinity, oursBatch: Double.infinity, faissBatch: Double.infinity)
        var latencies: [Double] = []
        var found: [[SearchHit]] = []
        for _ in 0..<3 {
            var times: [Double] = []
            found = []
            let start = DispatchTime.now().uptimeNanoseconds
            for q in single {
                let t0 = DispatchTime.now().uptimeNanoseconds
                found.append(try index.search(q, k: k)[0])
                times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
            }
            let ours = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if ours < best.ours { best.ours = ours; latencies = times.sorted() }
            best.faiss = min(best.faiss, try index.timeDirectSearches(queryVectors, k: k, onePerCall: true))
            let b0 = DispatchTime.now().uptimeNanoseconds
            _ = try index.search(queryVectors, k: k)
            best.oursBatch = min(best.oursBatch, Double(DispatchTime.now().uptimeNanoseconds - b0) / 1e9)
            best.faissBatch = min(best.faissBatch, try index.timeDirectSearches(queryVectors, k: k, onePerCall: false))
        }
        let n = Double(queries)
        row.ours = n / best.ours
        row.faiss = n / best.faiss
        row.oursBatch = n / best.oursBatch
        row.faissBatch = n / best.faissBatch
        row.p50 = latencies[latencies.count / 2]
        row.p99 = latencies[min(latencies.count - 1, Int(Double(latencies.count) * 0.99))]
        row.recall = zip(found, truth).reduce(0.0) { sum, pair in
            sum + Double(pair.0.filter { pair.1.contains($0.id) }.count) / Double(max(pair.1.count, 1))
        } / n
        return row
    }

    private func report(_ factory: String, _ row: Row) {
        let build = row.buildSeconds
        let overhead = (row.faiss / row.ours - 1) * 100
        if json {
            print(String(format: "{\"index\": \"%@\", \"build_s\": %.2f, \"qps\": %.1f, \"faiss_qps\": %.1f, \"overhead_pct\": %.2f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"batch_qps\": %.1f, \"faiss_batch_qps\": %.1f, \"recall\": %.4f}",
                         factory, build, row.ours, row.faiss, overhead, row.p50, row.p99, row.oursBatch, row.faissBatch, row.recall))
        } else {
            print(factory.padding(toLength: 22, withPad: " ", startingAt: 0)
                  + String(format: " %9.1f %10.1f %10.1f %8.1f%% %8.3f %8.3f %11.0f / %-9.0f %9.4f", build, row.ours,
                           row.faiss, overhead, row.p50, row.p99, row.oursBatch, row.faissBatch, row.recall))
        }
    }

    /// `count` unit vectors with the low intrinsic dimension real embeddings have (uniformly random vectors
    /// are the worst case for every approximate index): random points of a 32-dimensional space, mapped
    /// into `dimension` by a fixed random projection, plus 10% noise, normalized. Fixed by the seed; the
    /// projection is the same for every seed, so queries and documents share the space.
    static func clusteredVectors(count: Int, dimension: Int, seed: UInt64) -> [Float] {
        let latent = 32
        var projectionRNG = SeededGenerator(seed: 0xC0FFEE)
        let projection = (0..<(latent * dimension)).map { _ in 2 * projectionRNG.unit() - 1 }
        var rng = SeededGenerator(seed: seed)
        var out = [Float](repeating: 0, count: count * dimension)
        var z = [Float](repeating: 0, count: latent)
        for r in 0..<count {
            for i in 0..<latent { z[i] = 2 * rng.unit() - 1 }
            let row = r * dimension
            for c in 0..<dimension { out[row + c] = 0.1 * (2 * rng.unit() - 1) }
            for i in 0..<latent {
                for c in 0..<dimension { out[row + c] += z[i] * projection[i * dimension + c] }
            }
            var norm: Float = 0
            for c in 0..<dimension { norm += out[row + c] * out[row + c] }
            let inv = 1 / norm.squareRoot()
            for c in 0..<dimension { out[row + c] *= inv }
        }
        return out
    }
}
