/// Reciprocal rank fusion (Cormack et al. 2009): score(d) = Σ over rankings of 1 / (k + rank of d), ranks from 1.
/// It needs no score calibration between BM25 and cosine, which is why hybrid search uses it.
public func reciprocalRankFusion<ID: Hashable>(_ rankings: [[ID]], k: Double = 60) -> [(id: ID, score: Double)] {
    var scores: [ID: Double] = [:]
    var firstSeen: [ID: Int] = [:]
    var order = 0
    for ranking in rankings {
        for (rank, id) in ranking.enumerated() {
            scores[id, default: 0] += 1 / (k + Double(rank + 1))
            if firstSeen[id] == nil {
                firstSeen[id] = order
                order += 1
            }
        }
    }
    // Ties keep the order in which the rankings first listed the ids (vector results first).
    return scores.sorted { a, b in a.value != b.value ? a.value > b.value : firstSeen[a.key]! < firstSeen[b.key]! }
        .map { (id: $0.key, score: $0.value) }
}
