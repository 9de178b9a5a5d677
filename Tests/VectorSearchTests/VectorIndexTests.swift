import AtomicFiles
import Foundation
import XCTest
import VectorSearch

final class VectorIndexTests: XCTestCase {
    private let d = 64

    // MARK: Exactness and recall

    func testFlatSearchMatchesBruteForce() throws {
        let n = 3000, dim = 32, k = 10
        let base = TestVectors.unit(n, dimension: dim, seed: 1)
        let ids = (0..<n).map { Int64($0) * 7 + 1_000_000_000_000 } // large, sparse ids
        let queries = TestVectors.unit(25, dimension: dim, seed: 2)
        let index = try VectorIndex(dimension: dim, factory: "Flat", metric: .innerProduct)
        try index.add(base, ids: ids)
        XCTAssertEqual(index.count, n)

        let results = try index.search(queries, k: k)
        XCTAssertEqual(results.count, 25)
        for q in 0..<25 {
            let expected = TestVectors.bruteForce(base, ids: ids, query: TestVectors.row(queries, q, dimension: dim), dimension: dim, k: k)
            XCTAssertEqual(results[q].map(\.id), expected.map(\.id), "query \(q)")
            for (hit, truth) in zip(results[q], expected) {
                XCTAssertEqual(Double(hit.score), truth.score, accuracy: 1e-5)
            }
        }
    }

    func testHNSWRecallAgainstFlat() throws {
        let n = 20_000, queriesCount = 200, k = 10
        let base = TestVectors.unit(n, dimension: d, seed: 3)
        let ids = (0..<n).map(Int64.init)
        let queries = TestVectors.unit(queriesCount, dimension: d, seed: 4)

        let flat = try VectorIndex(dimension: d, factory: "Flat")
        try flat.add(base, ids: ids)
        let hnsw = try VectorIndex(dimension: d, factory: "HNSW32")
        try hnsw.add(base, ids: ids)
        try hnsw.setEfSearch(128) // default 16 is too low for random 64-d data

        let recall = TestVectors.recall(try hnsw.search(queries, k: k), try flat.search(queries, k: k))
        print("HNSW32 efSearch=128 recall@10 = \(recall)")
        XCTAssertGreaterThanOrEqual(recall, 0.95)
    }

    func testQuantizedFactoriesTrainAddSearch() throws {
        let n = 10_000, k = 10
        let base = TestVectors.unit(n, dimension: d, seed: 5)
        let ids = (0..<n).map { Int64($0) + 500 }
        let queries = TestVectors.unit(100, dimension: d, seed: 6)
        let flat = try VectorIndex(dimension: d, factory: "Flat")
        try flat.add(base, ids: ids)
        let truth = try flat.search(queries, k: k)

        // (factory, nprobe, minimum recall@10). Uniform random vectors have no
        // cluster structure, the worst case for IVF, hence nprobe = nlist / 2;
        // PQ16 (16 bytes per 64-d vector) is lossy by design.
        let cases: [(String, Int?, Double)] = [("IVF64,Flat", 32, 0.8), ("IVF64,PQ16", 32, 0.35), ("SQ8", nil, 0.9)]
        for (factory, nprobe, minimum) in cases {
            let index = try VectorIndex(dimension: d, factory: factory)
            XCTAssertFalse(index.isTrained, factory)
            try index.train(base)
            XCTAssertTrue(index.isTrained, factory)
            try index.add(base, ids: ids)
            if let nprobe { try index.setNProbe(nprobe) }
            let results = try index.search(queries, k: k)
            XCTAssertTrue(results.allSatisfy { $0.count == k }, factory)
            XCTAssertTrue(results.joined().allSatisfy { $0.id >= 500 && $0.id < 500 + Int64(n) }, factory)
            let recall = TestVectors.recall(results, truth)
            print("\(factory) recall@10 = \(recall)")
            XCTAssertGreaterThanOrEqual(recall, minimum, factory)
        }
    }

    // MARK: Persistence

    func testIDsSurviveWriteAndRead() throws {
        let dir = try TestVectors.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let n = 2000
        let base = TestVectors.unit(n, dimension: d, seed: 7)
        let ids = (0..<n).map { Int64($0) * 1_000_003 + 42 }
        let queries = TestVectors.unit(10, dimension: d, seed: 8)

        for factory in ["Flat", "IVF16,Flat", "HNSW16"] {
            let index = try VectorIndex(dimension: d, factory: factory)
            if !index.isTrained { try index.train(base) }
            try index.add(base, ids: ids)
            if factory.hasPrefix("IVF") { try index.setNProbe(16) }
            let url = dir.appendingPathComponent("index-\(factory).faiss")
            try index.write(to: url)
            try index.write(to: url) // overwrite goes through the same temp + rename path

            let loaded = try VectorIndex.read(from: url)
            XCTAssertEqual(loaded.count, n, factory)
            XCTAssertEqual(loaded.dimension, d, factory)
            XCTAssertEqual(loaded.metric, .innerProduct, factory)
            XCTAssertEqual(try loaded.search(queries, k: 5), try index.search(queries, k: 5), factory)
            XCTAssertEqual(try loaded.reconstruct(id: ids[17]), try index.reconstruct(id: ids[17]), factory)
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".tmp") }
        XCTAssertEqual(leftovers, [])
    }

    // MARK: Removal and reconstruction

    func testRemovedIDsNeverReturned() throws {
        let n = 4000
        let base = TestVectors.unit(n, dimension: d, seed: 9)
        let ids = (0..<n).map { Int64($0) * 3 + 10 }
        let removed = Array(ids.enumerated().filter { $0.offset % 3 == 0 }.map(\.element))
        let removedSet = Set(removed)

        for factory in ["Flat", "IVF32,Flat"] {
            let index = try VectorIndex(dimension: d, factory: factory)
            if !index.isTrained { try index.train(base) }
            try index.add(base, ids: ids)
            XCTAssertEqual(try index.remove(ids: removed + [999_999_999]), removed.count, factory)
            XCTAssertEqual(index.count, n - removed.count, factory)
            if factory.hasPrefix("IVF") { try index.setNProbe(32) }

            // Query with the removed vectors themselves: the worst case for leaks.
            let queries = removed.prefix(50).map { id -> [Float] in
                let row = Int((id - 10) / 3)
                return TestVectors.row(base, row, dimension: d)
            }.flatMap { $0 }
            let results = try index.search(queries, k: 20)
            XCTAssertTrue(results.joined().allSatisfy { !removedSet.contains($0.id) }, factory)
            // Survivors keep their id -> vector mapping after compaction.
            let survivor = ids[1]
            XCTAssertEqual(try index.reconstruct(id: survivor), TestVectors.row(base, 1, dimension: d), factory)
            XCTAssertEqual(try index.search(TestVectors.row(base, 1, dimension: d), k: 1)[0].first?.id, survivor, factory)
            XCTAssertThrowsError(try index.reconstruct(id: removed[0]), factory)
        }
    }

    func testReconstructReturnsAddedVector() throws {
        let base = TestVectors.unit(100, dimension: d, seed: 10)
        let ids = (0..<100).map { Int64($0) + 77 }
        let index = try VectorIndex(dimension: d, factory: "Flat")
        try index.add(base, ids: ids)
        for i in [0, 42, 99] {
            XCTAssertEqual(try index.reconstruct(id: ids[i]), TestVectors.row(base, i, dimension: d))
        }
    }

    // MARK: Range search

    func testRangeSearchReturnsExactlyVectorsAboveRadius() throws {
        let n = 3000, dim = 16
        let base = TestVectors.unit(n, dimension: dim, seed: 11)
        let ids = (0..<n).map { Int64($0) + 1 }
        let index = try VectorIndex(dimension: dim, factory: "Flat")
        try index.add(base, ids: ids)
        let query = TestVectors.row(TestVectors.unit(1, dimension: dim, seed: 12), 0, dimension: dim)
        let radius: Float = 0.5

        let hits = try index.rangeSearch(query, radius: radius)
        let all = TestVectors.bruteForce(base, ids: ids, query: query, dimension: dim, k: n)
        // Ignore vectors within float rounding of the boundary.
        let certain = all.filter { abs($0.score - Double(radius)) > 1e-5 }
        let expected = Set(certain.filter { $0.score >= Double(radius) }.map(\.id))
        let excluded = Set(certain.filter { $0.score < Double(radius) }.map(\.id))
        let found = Set(hits.map(\.id))
        XCTAssertFalse(expected.isEmpty)
        XCTAssertTrue(expected.isSubset(of: found))
        XCTAssertTrue(found.isDisjoint(with: excluded))
        XCTAssertTrue(hits.allSatisfy { $0.score >= radius })
        XCTAssertEqual(hits.map(\.score), hits.map(\.score).sorted(by: >))
    }

    // MARK: Errors

    func testInvalidUsageThrowsInsteadOfCrashing() throws {
        func assertThrows(_ kind: VectorSearchError.Kind?, _ label: String, _ body: () throws -> Void) {
            XCTAssertThrowsError(try body(), label) { error in
                guard let error = error as? VectorSearchError else { return XCTFail("\(label): \(error)") }
                XCTAssertFalse(error.message.isEmpty, label)
                if let kind { XCTAssertEqual(error.kind, kind, "\(label): \(error)") }
            }
        }
        assertThrows(.faiss, "bad factory") { _ = try VectorIndex(dimension: d, factory: "NotAnIndex,Flat") }
        assertThrows(.faiss, "PQ not dividing d") { _ = try VectorIndex(dimension: 10, factory: "PQ3") }
        assertThrows(.invalidArgument, "zero dimension") { _ = try VectorIndex(dimension: 0) }
        assertThrows(.invalidArgument, "negative dimension") { _ = try VectorIndex(dimension: -5) }

        let flat = try VectorIndex(dimension: d)
        assertThrows(.invalidArgument, "wrong dimension add") { try flat.add([Float](repeating: 0, count: d + 1), ids: [1]) }
        assertThrows(.invalidArgument, "id count mismatch") { try flat.add([Float](repeating: 0, count: 2 * d), ids: [1]) }
        assertThrows(.invalidArgument, "negative id") { try flat.add([Float](repeating: 0, count: d), ids: [-1]) }
        assertThrows(.invalidArgument, "duplicate in batch") { try flat.add([Float](repeating: 0, count: 2 * d), ids: [3, 3]) }
        try flat.add([Float](repeating: 0.1, count: d), ids: [5])
        assertThrows(.invalidArgument, "duplicate with index") { try flat.add([Float](repeating: 0, count: d), ids: [5]) }
        assertThrows(.invalidArgument, "wrong dimension query") { _ = try flat.search([1, 2, 3], k: 1) }
        assertThrows(.invalidArgument, "k = 0") { _ = try flat.search([Float](repeating: 0, count: d), k: 0) }
        assertThrows(.invalidArgument, "range query dimension") { _ = try flat.rangeSearch([1], radius: 0) }
        assertThrows(nil, "missing id") { _ = try flat.reconstruct(id: 12345) }
        assertThrows(.faiss, "nprobe on Flat") { try flat.setNProbe(4) }
        assertThrows(.faiss, "efSearch on Flat") { try flat.setEfSearch(64) }
        XCTAssertEqual(flat.count, 1)

        let ivf = try VectorIndex(dimension: d, factory: "IVF16,Flat")
        assertThrows(.invalidArgument, "add to untrained IVF") { try ivf.add([Float](repeating: 0, count: d), ids: [1]) }
        XCTAssertEqual(try ivf.search([Float](repeating: 0, count: d), k: 1), [[]]) // empty, not an error
        assertThrows(.faiss, "train with too few points") { try ivf.train([Float](repeating: 0, count: d * 4)) }

        // FAISS's IDMap over IVF returns wrong ids after a removal; refused up front.
        let idmapIVF = try VectorIndex(dimension: d, factory: "IDMap,IVF4,Flat")
        try idmapIVF.train(TestVectors.unit(200, dimension: d, seed: 18))
        try idmapIVF.add(TestVectors.unit(10, dimension: d, seed: 19), ids: Array(0..<10))
        assertThrows(.invalidArgument, "remove through IDMap over IVF") { _ = try idmapIVF.remove(ids: [1]) }
        XCTAssertEqual(idmapIVF.count, 10)

        let hnsw = try VectorIndex(dimension: d, factory: "HNSW8")
        try hnsw.add(TestVectors.unit(10, dimension: d, seed: 13), ids: Array(0..<10))
        assertThrows(.invalidArgument, "remove from HNSW") { _ = try hnsw.remove(ids: [1]) }
        assertThrows(.faiss, "nprobe on HNSW") { try hnsw.setNProbe(4) }
        XCTAssertEqual(try hnsw.search(TestVectors.unit(1, dimension: d, seed: 14), k: 3)[0].count, 3)

        let dir = try TestVectors.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let garbage = dir.appendingPathComponent("garbage.faiss")
        try Data("this is not a FAISS index, just some text\n".utf8).write(to: garbage)
        assertThrows(.faiss, "garbage file") { _ = try VectorIndex.read(from: garbage) }
        let truncated = dir.appendingPathComponent("truncated.faiss")
        try flat.write(to: truncated)
        let bytes = try Data(contentsOf: truncated)
        try bytes.prefix(bytes.count / 2).write(to: truncated)
        assertThrows(.faiss, "truncated file") { _ = try VectorIndex.read(from: truncated) }
        assertThrows(.faiss, "missing file") { _ = try VectorIndex.read(from: dir.appendingPathComponent("nope.faiss")) }
        // The temporary file beside the destination is created before FAISS runs: the file system's error.
        let unreachable = dir.appendingPathComponent("no/such/dir.faiss")
        XCTAssertThrowsError(try flat.write(to: unreachable), "write into missing directory") { error in
            XCTAssertEqual((error as? AtomicWriteError)?.path, unreachable.path, "\(error)")
            XCTAssertEqual((error as? AtomicWriteError)?.code, ENOENT, "\(error)")
        }
    }

    // MARK: Misc

    func testSmallIndexAndEmptyInputs() throws {
        let index = try VectorIndex(dimension: 4)
        XCTAssertEqual(try index.search([1, 0, 0, 0], k: 5), [[]])
        XCTAssertEqual(try index.search([], k: 5), [])
        try index.add([1, 0, 0, 0, 0, 1, 0, 0], ids: [10, 20])
        let hits = try index.search([1, 0, 0, 0], k: 100) // k > count: no -1 padding
        XCTAssertEqual(hits[0].map(\.id), [10, 20])
        XCTAssertEqual(try index.remove(ids: []), 0)
    }

    func testL2Metric() throws {
        let index = try VectorIndex(dimension: 2, factory: "Flat", metric: .l2)
        try index.add([0, 0, 3, 4, 1, 0], ids: [1, 2, 3])
        let hits = try index.search([0, 0], k: 3)[0]
        XCTAssertEqual(hits.map(\.id), [1, 3, 2])
        XCTAssertEqual(hits.map(\.score), [0, 1, 25]) // squared L2
        XCTAssertEqual(Set(try index.rangeSearch([0, 0], radius: 1).map(\.id)), [1, 3]) // inclusive bound
    }

    func testConcurrentSearchesWithWrites() throws {
        let base = TestVectors.unit(2000, dimension: d, seed: 15)
        let index = try VectorIndex(dimension: d)
        try index.add(base, ids: (0..<2000).map(Int64.init))
        let queries = TestVectors.unit(8, dimension: d, seed: 16)
        let extra = TestVectors.unit(100, dimension: d, seed: 17)
        DispatchQueue.concurrentPerform(iterations: 16) { i in
            if i == 3 { try? index.add(extra, ids: (10_000..<10_100).map(Int64.init)) }
            let results = try? index.search(queries, k: 5)
            XCTAssertEqual(results?.count, 8)
            XCTAssertNotNil(results)
        }
        XCTAssertEqual(index.count, 2100)
    }

    func testDefaultFactory() {
        XCTAssertEqual(VectorIndex.defaultFactory(count: 0), "Flat")
        XCTAssertEqual(VectorIndex.defaultFactory(count: 49_999), "Flat")
        XCTAssertEqual(VectorIndex.defaultFactory(count: 100_000), "IVF1024,Flat")   // 4·√N ≈ 1265
        XCTAssertEqual(VectorIndex.defaultFactory(count: 1_000_000), "IVF4096,Flat") // 4·√N = 4000
    }
}

final class BLASThresholdTests: XCTestCase {
    func testSingleQueryResultsUnchangedWithBLASThresholdOne() throws {
        let d = 32
        let base = TestVectors.unit(1000, dimension: d, seed: 20)
        let queries = TestVectors.unit(5, dimension: d, seed: 21)
        let index = try VectorIndex(dimension: d)
        try index.add(base, ids: (0..<1000).map(Int64.init))
        let before = try (0..<5).map { try index.search(TestVectors.row(queries, $0, dimension: d), k: 10)[0] }
        try VectorIndex.setBLASThreshold(1)
        defer { try? VectorIndex.setBLASThreshold(20) } // FAISS default
        let after = try (0..<5).map { try index.search(TestVectors.row(queries, $0, dimension: d), k: 10)[0] }
        XCTAssertEqual(after.map { $0.map(\.id) }, before.map { $0.map(\.id) })
        for (a, b) in zip(after.joined(), before.joined()) { XCTAssertEqual(a.score, b.score, accuracy: 1e-5) }
        XCTAssertThrowsError(try VectorIndex.setBLASThreshold(0))
    }
}

final class ThreadingAndTimingTests: XCTestCase {
    func testOpenMPThreadsApplyToSearchesFromAnyThread() throws {
        let before = VectorIndex.openMPThreads
        defer { try? VectorIndex.setOpenMPThreads(max(before, 1)) }
        try VectorIndex.setOpenMPThreads(1)
        XCTAssertEqual(VectorIndex.openMPThreads, 1)
        XCTAssertThrowsError(try VectorIndex.setOpenMPThreads(0))
        // Results do not depend on the thread count, whichever thread searches.
        let d = 16
        let index = try VectorIndex(dimension: d, factory: "IVF8,Flat")
        let base = TestVectors.unit(2000, dimension: d, seed: 30)
        try index.train(base)
        try index.add(base, ids: (0..<2000).map(Int64.init))
        try index.setNProbe(8)
        let queries = TestVectors.unit(50, dimension: d, seed: 31)
        let single = try index.search(queries, k: 5)
        try VectorIndex.setOpenMPThreads(2)
        let results = try DispatchQueue.global().sync { try index.search(queries, k: 5) }
        XCTAssertEqual(results, single)
    }

    func testDirectTimingRunsFAISSAndValidates() throws {
        let d = 16
        let index = try VectorIndex(dimension: d)
        try index.add(TestVectors.unit(500, dimension: d, seed: 32), ids: (0..<500).map(Int64.init))
        let queries = TestVectors.unit(20, dimension: d, seed: 33)
        XCTAssertGreaterThan(try index.timeDirectSearches(queries, k: 10, onePerCall: true), 0)
        XCTAssertGreaterThan(try index.timeDirectSearches(queries, k: 10, onePerCall: false), 0)
        XCTAssertThrowsError(try index.timeDirectSearches(queries, k: 0, onePerCall: true))
        XCTAssertThrowsError(try index.timeDirectSearches([1, 2, 3], k: 1, onePerCall: true))
    }
}

