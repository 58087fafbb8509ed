import XCTest
import TensorCore

final class BatchNormTests: XCTestCase {
    /// Train mode by the definition, in Double: per channel mean and biased variance over (B, *spatial).
    func testTrainingForwardAndRunningStats() {
        let (B, C, S) = (3, 2, 4)
        let x = randomTensor([B, C, 2, 2], seed: 1, scale: 3) + 5   // offset: the variance must not cancel
        let w = Tensor(shape: [C], data: [1.5, -0.5]), b = Tensor(shape: [C], data: [0.25, 2])
        let rm = Tensor(shape: [C], data: [0.1, -0.2]), rv = Tensor(shape: [C], data: [1, 2])
        let y = batchNorm(x, weight: w, bias: b, runningMean: rm, runningVar: rv, training: true, momentum: 0.2, eps: 1e-5)
        XCTAssertEqual(y.shape, x.shape)
        var expected = [Float](repeating: 0, count: x.count)
        for c in 0..<C {
            var values: [Double] = []
            for bi in 0..<B { for s in 0..<S { values.append(Double(x.pointer[(bi * C + c) * S + s])) } }
            let mean = values.reduce(0, +) / Double(values.count)
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
            for bi in 0..<B { for s in 0..<S {
                let i = (bi * C + c) * S + s
                expected[i] = Float((Double(x.pointer[i]) - mean) / (variance + 1e-5).squareRoot() * Double(w[c]) + Double(b[c]))
            } }
            let oldMean: Float = c == 0 ? 0.1 : -0.2, oldVar: Float = c == 0 ? 1 : 2
            XCTAssertEqual(rm[c], 0.8 * oldMean + 0.2 * Float(mean), accuracy: 1e-5, "running mean")
            XCTAssertEqual(rv[c], 0.8 * oldVar + 0.2 * Float(variance * Double(values.count) / Double(values.count - 1)),
                           accuracy: 1e-4, "running var is updated with the unbiased variance")
        }
        assertClose(y.scalars, expected, rtol: 1e-5, atol: 1e-5, "y")
    }

    func testEvalUsesRunningStatsAndLeavesThemAlone() {
        let x = randomTensor([4, 3], seed: 2)
        let rm = Tensor(shape: [3], data: [0.5, -1, 2]), rv = Tensor(shape: [3], data: [4, 0.25, 1])
        let w = Tensor(shape: [3], data: [2, 1, -1]), b = Tensor(shape: [3], data: [0, 1, 0.5])
        let y = batchNorm(x, weight: w, bias: b, runningMean: rm, runningVar: rv, training: false)
        for n in 0..<4 { for c in 0..<3 {
            XCTAssertEqual(y[n, c], (x[n, c] - rm[c]) / (rv[c] + 1e-5).squareRoot() * w[c] + b[c], accuracy: 1e-5)
        } }
        XCTAssertEqual(rm.scalars, [0.5, -1, 2])
        XCTAssertEqual(rv.scalars, [4, 0.25, 1])
    }

    func testTrainingGradients() {
        // (B, C)
        assertGradientsMatch([randomTensor([5, 3], seed: 3), randomTensor([3], seed: 4), randomTensor([3], seed: 5)], eps: 1e-3) {
            batchNorm($0[0], weight: $0[1], bias: $0[2], runningMean: nil, runningVar: nil, training: true)
        }
        // (B, C, H, W), with running stats being updated on the side (they must not affect the gradients)
        let rm = Tensor.zeros([2]), rv = Tensor.ones([2])
        assertGradientsMatch([randomTensor([3, 2, 3, 2], seed: 6, scale: 2), randomTensor([2], seed: 7), randomTensor([2], seed: 8)], eps: 1e-3) {
            batchNorm($0[0], weight: $0[1], bias: $0[2], runningMean: rm, runningVar: rv, training: true)
        }
        // no affine parameters, (B, C, L)
        assertGradientsMatch([randomTensor([2, 3, 4], seed: 9)], eps: 1e-3) {
            batchNorm($0[0], weight: nil, bias: nil, runningMean: nil, runningVar: nil, training: true)
        }
    }

    func testEvalGradients() {
        let rm = Tensor(shape: [2], data: [0.3, -0.4]), rv = Tensor(shape: [2], data: [0.5, 2])
        assertGradientsMatch([randomTensor([3, 2, 2, 2], seed: 10), randomTensor([2], seed: 11), randomTensor([2], seed: 12)], eps: 1e-3) {
            batchNorm($0[0], weight: $0[1], bias: $0[2], runningMean: rm, runningVar: rv, training: false)
        }
    }

    /// batchNormWithSampleAffine (conditional BatchNorm's fused op): gradients of x, scale and shift by
    /// central differences, with batch statistics and with running ones.
    func testSampleAffineGradients() {
        let rm = Tensor.zeros([2]), rv = Tensor.ones([2])
        assertGradientsMatch([randomTensor([3, 2, 3, 2], seed: 31, scale: 2), randomTensor([3, 2], seed: 32) + 1,
                              randomTensor([3, 2], seed: 33)], eps: 1e-3) {
            batchNormWithSampleAffine($0[0], scale: $0[1], shift: $0[2], runningMean: rm, runningVar: rv, training: true)
        }
        assertGradientsMatch([randomTensor([4, 3], seed: 34), randomTensor([4, 3], seed: 35), randomTensor([4, 3], seed: 36)], eps: 1e-3) {
            batchNormWithSampleAffine($0[0], scale: $0[1], shift: $0[2], runningMean: nil, runningVar: nil, training: true)
        }
        let erm = Tensor(shape: [2], data: [0.3, -0.4]), erv = Tensor(shape: [2], data: [0.5, 2])
        assertGradientsMatch([randomTensor([3, 2, 2, 2], seed: 37), randomTensor([3, 2], seed: 38), randomTensor([3, 2], seed: 39)], eps: 1e-3) {
            batchNormWithSampleAffine($0[0], scale: $0[1], shift: $0[2], runningMean: erm, runningVar: erv, training: false)
        }
    }

    /// The fused op gives the values, gradients and running statistics of the composed ops it replaces:
    /// batchNorm without affine, then × scale and + shift broadcast over the pixels.
    func testSampleAffineMatchesComposedOps() {
        for training in [true, false] {
            let x = randomTensor([4, 3, 5, 5], seed: 41, scale: 2), scale = randomTensor([4, 3], seed: 42) + 1
            let shift = randomTensor([4, 3], seed: 43), dy = randomTensor([4, 3, 5, 5], seed: 44)
            var results: [[[Float]]] = []
            for fused in [true, false] {
                let xi = x.detachedCopy(), si = scale.detachedCopy(), ti = shift.detachedCopy()
                for t in [xi, si, ti] { t.requiresGrad = true }
                let rm = Tensor(shape: [3], data: [0.1, -0.2, 0.3]), rv = Tensor(shape: [3], data: [1.5, 0.5, 2])
                let y = fused
                    ? batchNormWithSampleAffine(xi, scale: si, shift: ti, runningMean: rm, runningVar: rv, training: training)
                    : batchNorm(xi, weight: nil, bias: nil, runningMean: rm, runningVar: rv, training: training)
                        * si.reshaped([4, 3, 1, 1]) + ti.reshaped([4, 3, 1, 1])
                y.backward(dy)
                results.append([y.scalars, xi.grad!.scalars, si.grad!.scalars, ti.grad!.scalars, rm.scalars, rv.scalars])
            }
            for (k, name) in ["y", "dx", "dscale", "dshift", "running mean", "running var"].enumerated() {
                assertClose(results[0][k], results[1][k], rtol: 1e-4, atol: 1e-5, "\(name), training \(training)")
            }
        }
    }

    func testMatchesPyTorch() throws {
        let f = try ConvFixture("batch_norm")
        let (x, w, b) = (f["x"], f["weight"], f["bias"])
        let rm = f["running_mean"], rv = f["running_var"]
        for t in [x, w, b] { t.requiresGrad = true }
        let y = batchNorm(x, weight: w, bias: b, runningMean: rm, runningVar: rv, training: true,
                          momentum: Float(f.params["momentum"] as! Double), eps: Float(f.params["eps"] as! Double))
        assertClose(y.scalars, f["y"].scalars, rtol: 1e-4, atol: 1e-5, "y")
        assertClose(rm.scalars, f["running_mean_after"].scalars, rtol: 1e-4, atol: 1e-6, "running mean")
        assertClose(rv.scalars, f["running_var_after"].scalars, rtol: 1e-4, atol: 1e-6, "running var")
        y.backward(f["r"])
        assertClose(x.grad!.scalars, f["dx"].scalars, rtol: 1e-4, atol: 1e-5, "dx")
        assertClose(w.grad!.scalars, f["dweight"].scalars, rtol: 1e-4, atol: 1e-5, "dweight")
        assertClose(b.grad!.scalars, f["dbias"].scalars, rtol: 1e-4, atol: 1e-5, "dbias")
    }

    /// Same inputs, one thread or several: bit-identical outputs, running stats and gradients.
    func testDeterministicAcrossThreadCounts() {
        let saved = Threads.count
        defer { Threads.count = saved }
        func run() -> [[Float]] {
            let x = randomTensor([16, 32, 16, 16], seed: 13), w = randomTensor([32], seed: 14), b = randomTensor([32], seed: 15)
            for t in [x, w, b] { t.requiresGrad = true }
            let rm = Tensor.zeros([32]), rv = Tensor.ones([32])
            let y = batchNorm(x, weight: w, bias: b, runningMean: rm, runningVar: rv, training: true)
            y.backward(randomTensor(y.shape, seed: 16))
            return [y.scalars, rm.scalars, rv.scalars, x.grad!.scalars, w.grad!.scalars, b.grad!.scalars]
        }
        Threads.count = 1
        let single = run()
        Threads.count = 4
        let multi = run()
        for (a, b) in zip(single, multi) { XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern)) }
    }

    func testBadShapesTrapWithMessage() throws {
        if isTrapChild { return }
        try assertEachTraps([
            ("TensorCoreTests.BatchNormTests/testTrapWeightShape", "batchNorm: weight [4] does not match input [2, 3, 4, 4] (needs [3])"),
            ("TensorCoreTests.BatchNormTests/testTrapRank", "batchNorm: input must be (B, C) or (B, C, *spatial), got [5]"),
            ("TensorCoreTests.BatchNormTests/testTrapSingleValue", "batchNorm: batch statistics need more than 1 value per channel, input [1, 3]"),
        ])
    }
    func testTrapWeightShape() {
        guard isTrapChild else { return }
        _ = batchNorm(Tensor.zeros([2, 3, 4, 4]), weight: Tensor.ones([4]), bias: nil, runningMean: nil, runningVar: nil, training: true)
    }
    func testTrapRank() {
        guard isTrapChild else { return }
        _ = batchNorm(Tensor.zeros([5]), weight: nil, bias: nil, runningMean: nil, runningVar: nil, training: true)
    }
    func testTrapSingleValue() {
        guard isTrapChild else { return }
        _ = batchNorm(Tensor.zeros([1, 3]), weight: nil, bias: nil, runningMean: nil, runningVar: nil, training: true)
    }
}
