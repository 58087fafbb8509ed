import XCTest
import Metrics

/// Improved precision/recall (Kynkäänniemi et al. 2019) and the pairwise spread on hand-made point
/// sets whose answers are known.
final class PrecisionRecallTests: XCTestCase {
    /// A 10 × 10 grid of 2-d points at spacing 1 (optionally shifted).
    private func grid(offset: Double = 0) -> [[Double]] {
        (0..<100).map { [Double($0 % 10) + offset, Double($0 / 10) + offset] }
    }

    func testKNearestRadiiOnAGrid() {
        // Interior grid points have 4 neighbours at 1, so the 3rd nearest is at 1; a corner has two at
        // distance 1 and then the diagonal at √2.
        let radii = kNearestNeighbourRadii(FeaturePoints(rows: grid()), k: 3)
        XCTAssertEqual(radii[55], 1, accuracy: 1e-12)
        XCTAssertEqual(radii[0], 2.0.squareRoot(), accuracy: 1e-12)
        // Points on a line at 0, 1, 3, 6, 10: the 2nd nearest neighbour of 0 is 3, of 6 is 4 (3 and 10).
        let line = kNearestNeighbourRadii(FeaturePoints(rows: [[0], [1], [3], [6], [10]]), k: 2)
        XCTAssertEqual(line, [3, 2, 3, 4, 7])
    }

    func testIdenticalSetsHavePrecisionAndRecallOne() {
        let points = FeaturePoints(rows: grid())
        let pr = PrecisionRecall(real: points, generated: points, k: 3)
        XCTAssertEqual(pr.precision, 1)
        XCTAssertEqual(pr.recall, 1)
    }

    func testDisjointFarSetsHavePrecisionAndRecallZero() {
        let pr = PrecisionRecall(real: FeaturePoints(rows: grid()), generated: FeaturePoints(rows: grid(offset: 1000)), k: 3)
        XCTAssertEqual(pr.precision, 0)
        XCTAssertEqual(pr.recall, 0)
    }

    func testACollapsedSetHasPrecisionOneAndRecallSmall() {
        // Every generated point is a copy of one real point: all are realistic (inside that point's
        // ball), but their balls have radius 0 and cover only that one real point.
        let real = grid()
        let collapsed = FeaturePoints(rows: Array(repeating: real[55], count: 100))
        let pr = PrecisionRecall(real: FeaturePoints(rows: real), generated: collapsed, k: 3)
        XCTAssertEqual(pr.precision, 1)
        XCTAssertEqual(pr.recall, 0.01, accuracy: 1e-12)
    }

    func testHalfTheRealSupportGivesRecallOneHalf() {
        // Generated = the left half of the grid (columns 0–4), densely: precision 1; the balls of the
        // generated points reach at most 1 column beyond (k-th neighbour within the half), so real
        // columns 0–5 are covered: recall 0.6.
        let real = grid()
        let half = real.filter { $0[0] <= 4 }
        let pr = PrecisionRecall(real: FeaturePoints(rows: real), generated: FeaturePoints(rows: half), k: 3)
        XCTAssertEqual(pr.precision, 1)
        XCTAssertEqual(pr.recall, 0.6, accuracy: 1e-12)
    }

    func testMeanPairwiseDistance() {
        // An equilateral triangle of side 2: every pair at 2.
        let triangle = FeaturePoints(rows: [[0, 0], [2, 0], [1, 3.0.squareRoot()]])
        XCTAssertEqual(meanPairwiseDistance(triangle), 2, accuracy: 1e-12)
        // Points 0, 1, 3 on a line: pairs 1, 3, 2 → mean 2; one point or copies: 0.
        XCTAssertEqual(meanPairwiseDistance(FeaturePoints(rows: [[0], [1], [3]])), 2, accuracy: 1e-12)
        XCTAssertEqual(meanPairwiseDistance(FeaturePoints(rows: [[5, 5], [5, 5]])), 0)
        XCTAssertEqual(meanPairwiseDistance(FeaturePoints(rows: [[5, 5]])), 0)
    }
}
