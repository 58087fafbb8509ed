import Foundation

// Improved precision and recall of a generative model (Kynkäänniemi, Karras, Laine, Lehtinen & Aila
// 2019, "Improved Precision and Recall Metric for Assessing Generative Models"). Each feature set
// approximates its distribution's support by the union of balls around its points, each ball's
// radius the distance to that point's k-th nearest neighbour inside its own set:
//   precision = share of generated points inside some real ball   (are the samples realistic?)
//   recall    = share of real points inside some generated ball   (is the real variety covered?)
// A collapsed generator (every sample near one real image) keeps precision high but its balls are
// tiny and few, so recall falls: per-class recall is the collapse number.
// Distances are Euclidean, in Double, by brute force (|a|² + |b|² − 2a·b, row by row, so memory
// stays O(n·d)); fine for the ~10,000 × 128-d sets the evaluation uses.

/// Points (`count` rows of `dimension` Doubles) stored row-major in one array.
public struct FeaturePoints: Sendable {
    /// The coordinates, row-major: point `i` is `values[i * dimension ..< (i + 1) * dimension]`.
    public let values: [Double]
    /// The number of points (rows).
    public let count: Int
    /// The feature width of every point.
    public let dimension: Int

    /// Rows of equal length (at least one).
    public init(rows: [[Double]]) {
        precondition(!rows.isEmpty, "FeaturePoints: no rows")
        let d = rows[0].count
        precondition(rows.allSatisfy { $0.count == d }, "FeaturePoints: rows of different lengths")
        values = rows.flatMap { $0 }
        count = rows.count
        dimension = d
    }

    /// Squared norms of the rows.
    var squaredNorms: [Double] {
        (0..<count).map { i in
            var s = 0.0
            for j in 0..<dimension { let v = values[i * dimension + j]; s += v * v }
            return s
        }
    }

    /// Squared distances from row `i` of `self` to every row of `other` (clamped at 0 against round-off).
    func squaredDistances(fromRow i: Int, selfNorm: Double, to other: FeaturePoints, otherNorms: [Double], into out: inout [Double]) {
        let d = dimension
        values.withUnsafeBufferPointer { a in
            other.values.withUnsafeBufferPointer { b in
                let row = a.baseAddress! + i * d
                for r in 0..<other.count {
                    let col = b.baseAddress! + r * d
                    var dot = 0.0
                    for j in 0..<d { dot += row[j] * col[j] }
                    out[r] = Swift.max(0, selfNorm + otherNorms[r] - 2 * dot)
                }
            }
        }
    }
}

/// The distance from each point to its k-th nearest neighbour in the same set (the point itself
/// excluded; duplicates count as neighbours at distance 0). Needs more than k points.
public func kNearestNeighbourRadii(_ points: FeaturePoints, k: Int) -> [Double] {
    precondition(k >= 1 && points.count > k, "kNearestNeighbourRadii: need more than k = \(k) points, got \(points.count)")
    let norms = points.squaredNorms
    var row = [Double](repeating: 0, count: points.count)
    var radii = [Double](repeating: 0, count: points.count)
    for i in 0..<points.count {
        points.squaredDistances(fromRow: i, selfNorm: norms[i], to: points, otherNorms: norms, into: &row)
        // The k smallest distances to other points, kept sorted (k is tiny).
        var smallest = [Double](repeating: .infinity, count: k)
        for r in 0..<points.count where r != i {
            let v = row[r]
            if v < smallest[k - 1] {
                var p = k - 1
                while p > 0 && smallest[p - 1] > v { smallest[p] = smallest[p - 1]; p -= 1 }
                smallest[p] = v
            }
        }
        radii[i] = smallest[k - 1].squareRoot()
    }
    return radii
}

/// Share of `queries` that fall inside at least one ball (centre `centres[r]`, radius `radii[r]`).
public func shareInsideBalls(_ queries: FeaturePoints, centres: FeaturePoints, radii: [Double]) -> Double {
    precondition(queries.dimension == centres.dimension, "shareInsideBalls: dimensions \(queries.dimension) and \(centres.dimension) differ")
    precondition(radii.count == centres.count, "shareInsideBalls: \(radii.count) radii for \(centres.count) centres")
    let qNorms = queries.squaredNorms, cNorms = centres.squaredNorms
    let squaredRadii = radii.map { $0 * $0 }
    var row = [Double](repeating: 0, count: centres.count)
    var inside = 0
    for i in 0..<queries.count {
        queries.squaredDistances(fromRow: i, selfNorm: qNorms[i], to: centres, otherNorms: cNorms, into: &row)
        // A relative tolerance so that a point equal to a centre counts as inside a radius-0 ball
        // despite the round-off of |a|² + |b|² − 2a·b.
        let tolerance = 1e-9 * (qNorms[i] + 1)
        for r in 0..<centres.count where row[r] <= squaredRadii[r] + tolerance { inside += 1; break }
    }
    return Double(inside) / Double(queries.count)
}

/// Improved precision and recall with k-NN balls.
public struct PrecisionRecall: Sendable, Equatable {
    /// Share of generated points inside the real set's balls.
    public let precision: Double
    /// Share of real points inside the generated set's balls.
    public let recall: Double
    /// The neighbour rank that sets each ball's radius.
    public let k: Int

    /// Wraps already measured figures (precision and recall in [0, 1]) and the `k` they were measured with.
    public init(precision: Double, recall: Double, k: Int) {
        (self.precision, self.recall, self.k) = (precision, recall, k)
    }

    /// Measures `generated` against `real` (each needs more than k points; the paper uses k = 3
    /// and sets of equal size).
    public init(real: FeaturePoints, generated: FeaturePoints, k: Int = 3) {
        precondition(real.dimension == generated.dimension, "PrecisionRecall: dimensions \(real.dimension) and \(generated.dimension) differ")
        let realRadii = kNearestNeighbourRadii(real, k: k)
        let generatedRadii = kNearestNeighbourRadii(generated, k: k)
        self.init(precision: shareInsideBalls(generated, centres: real, radii: realRadii),
                  recall: shareInsideBalls(real, centres: generated, radii: generatedRadii), k: k)
    }
}

/// The mean Euclidean distance over all pairs of distinct points (0 for fewer than 2): a set's spread.
public func meanPairwiseDistance(_ points: FeaturePoints) -> Double {
    guard points.count >= 2 else { return 0 }
    let norms = points.squaredNorms
    var row = [Double](repeating: 0, count: points.count)
    var sum = 0.0
    for i in 0..<points.count {
        points.squaredDistances(fromRow: i, selfNorm: norms[i], to: points, otherNorms: norms, into: &row)
        for r in (i + 1)..<max(i + 1, points.count) { sum += row[r].squareRoot() }
    }
    let pairs = Double(points.count) * Double(points.count - 1) / 2
    return sum / pairs
}
