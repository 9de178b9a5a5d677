import Foundation
import VectorSearch
import XCTest

/// Per-search parameters (`SearchTuning`): they apply to that search only, and the index keeps its own.
final class SearchTuningTests: XCTestCase {
    private let d = 32

    /// IVF: nprobe = nlist is exhaustive (Flat's exact answer) where the stored nprobe of 1 is not; a plain
    /// search afterwards answers as before (the stored value is back).
    func testNProbePerSearch() throws {
        let n = 4000, k = 10
        let base = TestVectors.unit(n, dimension: d, seed: 11), ids = (0..<n).map { Int64($0) * 3 + 7 }
        let queries = TestVectors.unit(50, dimension: d, seed: 12)
        let flat = try VectorIndex(dimension: d, factory: "Flat")
        try flat.add(base, ids: ids)
        let ivf = try VectorIndex(dimension: d, factory: "IVF32,Flat")
        try ivf.train(base)
        try ivf.add(base, ids: ids)
        try ivf.setNProbe(1)
        let truth = try flat.search(queries, k: k)
        let stored = try ivf.search(queries, k: k)
        let exhaustive = try ivf.search(queries, k: k, tuning: SearchTuning(nprobe: 32))
        XCTAssertEqual(exhaustive.map { $0.map(\.id) }, truth.map { $0.map(\.id) })
        let storedRecall = TestVectors.recall(stored, truth)
        XCTAssertLessThan(storedRecall, 0.8, "nprobe 1 of 32 lists on unclustered data misses neighbours")
        XCTAssertEqual(try ivf.search(queries, k: k), stored, "the stored nprobe is back after a tuned search")
        XCTAssertGreaterThan(TestVectors.recall(try ivf.search(queries, k: k, tuning: SearchTuning(nprobe: 8)), truth), storedRecall + 0.1)
    }

    /// HNSW (through the IDMap wrapper the shim adds): a larger ef_search raises recall for that search only.
    func testEfSearchPerSearch() throws {
        let n = 5000, k = 10
        let base = TestVectors.unit(n, dimension: d, seed: 13), ids = (0..<n).map(Int64.init)
        let queries = TestVectors.unit(100, dimension: d, seed: 14)
        let flat = try VectorIndex(dimension: d, factory: "Flat")
        try flat.add(base, ids: ids)
        let hnsw = try VectorIndex(dimension: d, factory: "HNSW8")
        try hnsw.add(base, ids: ids)
        try hnsw.setEfSearch(10)
        let truth = try flat.search(queries, k: k)
        let stored = try hnsw.search(queries, k: k)
        let wide = try hnsw.search(queries, k: k, tuning: SearchTuning(efSearch: 256))
        let (low, high) = (TestVectors.recall(stored, truth), TestVectors.recall(wide, truth))
        print("HNSW8 recall@10: stored efSearch 10 \(low), ef_search 256 per search \(high)")
        XCTAssertGreaterThan(high, low + 0.05)
        XCTAssertGreaterThanOrEqual(high, 0.95)
        XCTAssertEqual(try hnsw.search(queries, k: k), stored, "the stored efSearch is back after a tuned search")
    }

    /// A parameter the index does not have is an error naming it, not ignored.
    func testParametersTheIndexLacksAreErrors() throws {
        let flat = try VectorIndex(dimension: d, factory: "Flat")
        try flat.add(TestVectors.unit(10, dimension: d, seed: 1), ids: (0..<10).map(Int64.init))
        let query = TestVectors.unit(1, dimension: d, seed: 2)
        XCTAssertThrowsError(try flat.search(query, k: 3, tuning: SearchTuning(nprobe: 4))) { error in
            XCTAssertTrue("\(error)".contains("nprobe applies to IVF indexes only"), "\(error)")
        }
        XCTAssertThrowsError(try flat.search(query, k: 3, tuning: SearchTuning(efSearch: 64))) { error in
            XCTAssertTrue("\(error)".contains("ef_search applies to HNSW"), "\(error)")
        }
        XCTAssertThrowsError(try flat.search(query, k: 3, tuning: SearchTuning(nprobe: 0)))
    }
}
