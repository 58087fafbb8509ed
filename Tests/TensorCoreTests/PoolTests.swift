import XCTest
import TensorCore

/// Distinct values (a shuffled ramp with gaps of 0.1) so no max-pool window has a near-tie that a
/// finite-difference step of 1e-2 could flip.
func distinctTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    let n = shape.reduce(1, *)
    var rng = RandomGenerator(seed: seed)
    let keys = Tensor.uniform([n], generator: &rng).scalars
    let order = (0..<n).sorted { keys[$0] < keys[$1] }
    var values = [Float](repeating: 0, count: n)
    for (rank, i) in order.enumerated() { values[i] = Float(rank) * 0.1 - Float(n) * 0.05 }
    return Tensor(shape: shape, data: values)
}

/// Pooling by the definition: for each window, max (padding = −∞) or sum / (KH·KW) (padding = 0).
func naivePool(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), max: Bool) -> [Float] {
    let (B, C, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let OH = (H + 2 * padding.0 - kernel.0) / stride.0 + 1, OW = (W + 2 * padding.1 - kernel.1) / stride.1 + 1
    var out: [Float] = []
    for b in 0..<B { for c in 0..<C { for oh in 0..<OH { for ow in 0..<OW {
        var best = -Float.infinity, sum = 0.0
        for kh in 0..<kernel.0 { for kw in 0..<kernel.1 {
            let h = oh * stride.0 - padding.0 + kh, w = ow * stride.1 - padding.1 + kw
            guard h >= 0 && h < H && w >= 0 && w < W else { continue }
            best = Swift.max(best, x[b, c, h, w]); sum += Double(x[b, c, h, w])
        } }
        out.append(max ? best : Float(sum / Double(kernel.0 * kernel.1)))
    } } } }
    return out
}

final class PoolTests: XCTestCase {
    func testForwardMatchesDefinition() {
        let x = randomTensor([2, 3, 9, 8], seed: 1)
        for (k, s, p) in [((2, 2), (2, 2), (0, 0)), ((3, 3), (2, 2), (1, 1)), ((3, 2), (1, 2), (1, 0))] {
            let ym = maxPool2d(x, kernel: k, stride: s, padding: p)
            XCTAssertEqual(ym.shape, [2, 3, (9 + 2 * p.0 - k.0) / s.0 + 1, (8 + 2 * p.1 - k.1) / s.1 + 1])
            XCTAssertEqual(ym.scalars, naivePool(x, kernel: k, stride: s, padding: p, max: true), "max \(k) \(s) \(p)")
            let ya = avgPool2d(x, kernel: k, stride: s, padding: p)
            assertClose(ya.scalars, naivePool(x, kernel: k, stride: s, padding: p, max: false), rtol: 1e-5, atol: 1e-6, "avg \(k) \(s) \(p)")
        }
        // stride defaults to the kernel
        XCTAssertEqual(maxPool2d(x, kernel: 2).shape, [2, 3, 4, 4])
        XCTAssertEqual(avgPool2d(x, kernel: 3).shape, [2, 3, 3, 2])
    }

    func testMaxPoolAllNegativeWindowIgnoresPadding() {
        // padding is −∞ for max pooling, never 0
        let x = Tensor(shape: [1, 1, 2, 2], data: [-4, -3, -2, -1])
        XCTAssertEqual(maxPool2d(x, kernel: 2, stride: 1, padding: 1).scalars, [-4, -3, -3, -2, -1, -1, -2, -1, -1])
    }

    func testMaxPoolPropagatesNaN() {
        let x = Tensor(shape: [1, 1, 2, 2], data: [1, .nan, 3, 2])
        XCTAssertTrue(maxPool2d(x, kernel: 2).item.isNaN)
    }

    func testGradients() {
        assertGradientsMatch([distinctTensor([2, 2, 6, 5], seed: 3)]) { maxPool2d($0[0], kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }
        assertGradientsMatch([distinctTensor([2, 2, 4, 4], seed: 4)]) { maxPool2d($0[0], kernel: 2) }
        // overlapping windows: one input pixel is the max of several windows and collects all their gradients
        assertGradientsMatch([distinctTensor([1, 2, 5, 5], seed: 5)]) { maxPool2d($0[0], kernel: (3, 2), stride: (1, 1)) }
        assertGradientsMatch([randomTensor([2, 2, 6, 5], seed: 6)]) { avgPool2d($0[0], kernel: (3, 3), stride: (2, 2), padding: (1, 1)) }
        assertGradientsMatch([randomTensor([1, 3, 5, 4], seed: 7)]) { avgPool2d($0[0], kernel: (2, 3), stride: (1, 1), padding: (1, 0)) }
    }

    func testMatchesPyTorch() throws {
        for (name, pool) in [("max_pool2d", maxPool2d(_:kernel:stride:padding:) as (Tensor, (Int, Int), (Int, Int)?, (Int, Int)) -> Tensor),
                             ("avg_pool2d", avgPool2d(_:kernel:stride:padding:) as (Tensor, (Int, Int), (Int, Int)?, (Int, Int)) -> Tensor)] {
            let f = try ConvFixture(name)
            let x = f["x"]
            x.requiresGrad = true
            let y = pool(x, f.pair("kernel"), f.pair("stride"), f.pair("padding"))
            XCTAssertEqual(y.shape, f["y"].shape, name)
            assertClose(y.scalars, f["y"].scalars, rtol: 1e-4, atol: 1e-6, "\(name) y")
            y.backward(f["r"])
            assertClose(x.grad!.scalars, f["dx"].scalars, rtol: 1e-4, atol: 1e-6, "\(name) dx")
        }
    }

    func testBadShapesTrapWithMessage() throws {
        if isTrapChild { return }
        try assertEachTraps([
            ("TensorCoreTests.PoolTests/testTrapMaxPoolRank", "maxPool2d: input must be (B, C, H, W), got [4, 4]"),
            ("TensorCoreTests.PoolTests/testTrapAvgPoolPadding", "avgPool2d: padding (2, 2) must be in 0 ... kernel/2 for kernel (3, 3) (input [1, 1, 6, 6])"),
        ])
    }
    func testTrapMaxPoolRank() {
        guard isTrapChild else { return }
        _ = maxPool2d(Tensor.zeros([4, 4]), kernel: 2)
    }
    func testTrapAvgPoolPadding() {
        guard isTrapChild else { return }
        _ = avgPool2d(Tensor.zeros([1, 1, 6, 6]), kernel: 3, stride: 1, padding: 2)
    }
}
