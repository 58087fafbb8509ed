import Foundation
import XCTest
import TensorCore

/// Spectral normalisation and conditional BatchNorm (issue 15): against PyTorch fixtures made by
/// Fixtures/make_gan_recipe_fixtures.py, against an independent Double computation of the largest
/// singular value, and by finite differences.
final class GANLayerTests: XCTestCase {
    override class func setUp() { BLAS.configure(allowReexec: false) }

    private func fixtures() throws -> [String: Any] {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let data = try Data(contentsOf: root.appendingPathComponent("gan_recipe_fixtures.json"))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    private func floats(_ d: [String: Any], _ key: String) -> [Float] {
        ((d[key] as? [Any]) ?? []).map { Float(($0 as? NSNumber)?.doubleValue ?? .nan) }
    }

    private func ints(_ d: [String: Any], _ key: String) -> [Int] { ((d[key] as? [Any]) ?? []).map { ($0 as? NSNumber)?.intValue ?? -1 } }

    /// The largest singular value of a (rows, cols) matrix: power iteration on WᵀW in Double, run
    /// until the estimate stops changing (an independent reference for SpectralNormState).
    private func largestSingularValue(_ w: [Float], rows: Int, cols: Int) -> Double {
        var v = (0..<cols).map { Double($0 % 7) - 3 + 0.1 }
        var last = 0.0
        for _ in 0..<20_000 {
            var wv = [Double](repeating: 0, count: rows)
            for r in 0..<rows { for c in 0..<cols { wv[r] += Double(w[r * cols + c]) * v[c] } }
            var nv = [Double](repeating: 0, count: cols)
            for r in 0..<rows { for c in 0..<cols { nv[c] += Double(w[r * cols + c]) * wv[r] } }
            let n = nv.reduce(0) { $0 + $1 * $1 }.squareRoot()
            v = nv.map { $0 / n }
            if abs(n - last) < 1e-13 * n { break }
            last = n
        }
        return last.squareRoot()
    }

    func testSpectralNormSigmaMatchesALargestSingularValueComputedInDouble() {
        for (k, shape) in [[6, 4], [4, 9], [8, 3, 3, 3], [1, 16, 4, 4]].enumerated() {
            let w = randomTensor(shape, seed: UInt64(40 + k), scale: 0.3)
            var g = RandomGenerator(seed: UInt64(k))
            let state = SpectralNormState(weight: w, generator: &g)
            for _ in 0..<500 { state.powerIteration(w) }
            let rows = shape[0], cols = w.count / rows
            let reference = largestSingularValue(w.scalars, rows: rows, cols: cols)
            XCTAssertEqual(Double(state.sigma(w)), reference, accuracy: 1e-4 * reference, "shape \(shape)")
            // and the normalised weight has spectral norm 1
            let normalized = withNoGrad { state.normalized(w, training: false) }
            XCTAssertEqual(largestSingularValue(normalized.scalars, rows: rows, cols: cols), 1, accuracy: 1e-4, "shape \(shape)")
        }
    }

    func testOnePowerIterationPerTrainingStepTracksSigmaAsTheWeightDrifts() {
        // As during training: the weight moves a little between steps and one iteration per step keeps up.
        let w = randomTensor([12, 20], seed: 3)
        var g = RandomGenerator(seed: 9)
        let state = SpectralNormState(weight: w, generator: &g)
        var drift = RandomGenerator(seed: 4)
        for _ in 0..<200 {
            let step = Tensor.randn(w.shape, std: 1e-3, generator: &drift)
            for i in 0..<w.count { w.mutablePointer[i] += step.pointer[i] }
            _ = withNoGrad { state.normalized(w, training: true) }
        }
        let reference = largestSingularValue(w.scalars, rows: 12, cols: 20)
        XCTAssertEqual(Double(state.sigma(w)), reference, accuracy: 2e-3 * reference)
    }

    func testSpectralNormOfAConvMatchesPyTorch() throws {
        let sn = try XCTUnwrap(try fixtures()["spectral_norm"] as? [String: Any])
        let shape = ints(sn, "weight_shape")
        let w = Tensor(shape: shape, data: floats(sn, "weight"), requiresGrad: true)
        var g = RandomGenerator(seed: 0)
        let state = SpectralNormState(weight: w, generator: &g)
        state.u.mutablePointer.update(from: floats(sn, "u0"), count: state.u.count)
        state.v.mutablePointer.update(from: floats(sn, "v0"), count: state.v.count)
        let normalized = state.normalized(w, training: true)
        assertClose(state.u.scalars, floats(sn, "u1"), "u after one iteration")
        assertClose(state.v.scalars, floats(sn, "v1"), "v after one iteration")
        XCTAssertEqual(state.sigma(w), Float((sn["sigma"] as? NSNumber)?.doubleValue ?? .nan), accuracy: 1e-5)
        assertClose(normalized.scalars, floats(sn, "normalized"), "W / sigma")
        normalized.backward(Tensor(shape: shape, data: floats(sn, "r")))
        assertClose(try XCTUnwrap(w.grad).scalars, floats(sn, "grad_weight"), rtol: 1e-3, atol: 1e-5, "dL/dW through sigma")
    }

    func testSpectralNormGradientFlowsThroughSigma() {
        // Evaluation mode keeps u, v fixed, so the function differentiated is W / (uᵀ W v).
        let w = randomTensor([5, 3, 2, 2], seed: 11, scale: 0.5)
        var g = RandomGenerator(seed: 2)
        let state = SpectralNormState(weight: w, generator: &g)
        assertGradientsMatch([w], eps: 1e-3) { state.normalized($0[0], training: false) }
        // the gradient differs from the one that would treat σ as a constant: ⟨G, W⟩/σ² · u vᵀ is not 0
        let r = randomTensor(w.shape, seed: 7)
        w.grad = nil
        state.normalized(w, training: false).backward(r)
        let sigma = state.sigma(w)
        let constantSigma = r.scalars.map { $0 / sigma }
        let difference = zip(w.grad!.scalars, constantSigma).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(difference, 1e-3)
    }

    func testSpectralNormConvLayerIsAConvWithTheNormalisedWeightAndNamesLikeTorch() {
        var g = RandomGenerator(seed: 5)
        let layer = SpectralNormConv2d(weight: randomTensor([4, 2, 3, 3], seed: 8), bias: nil, stride: (2, 2), padding: (1, 1), generator: &g)
        XCTAssertEqual(layer.namedParameters().map(\.0), ["parametrizations.weight.original"])
        XCTAssertEqual(layer.namedBuffers().map(\.0), ["parametrizations.weight.0._u", "parametrizations.weight.0._v"])
        let x = randomTensor([2, 2, 6, 6], seed: 9)
        layer.eval()
        let y = withNoGrad { layer(x) }
        let expected = withNoGrad { conv2d(x, weight: layer.state.normalized(layer.weight, training: false), stride: 2, padding: 1) }
        assertClose(y.scalars, expected.scalars)
        let uBefore = layer.state.u.scalars
        layer.train()
        _ = withNoGrad { layer(x) }
        XCTAssertNotEqual(layer.state.u.scalars, uBefore, "a training-mode forward runs a power iteration")
    }

    func testConditionalBatchNormMatchesPyTorch() throws {
        let f = try XCTUnwrap(try fixtures()["conditional_batch_norm"] as? [String: Any])
        let shape = ints(f, "x_shape"), labels = ints(f, "labels")
        let x = Tensor(shape: shape, data: floats(f, "x"), requiresGrad: true)
        let cbn = ConditionalBatchNorm2d(shape[1], classes: 3)
        cbn.weight.mutablePointer.update(from: floats(f, "weight"), count: cbn.weight.count)
        cbn.bias.mutablePointer.update(from: floats(f, "bias"), count: cbn.bias.count)
        XCTAssertEqual(cbn.stateTensors().map(\.0), ["weight", "bias", "bn.running_mean", "bn.running_var", "bn.num_batches_tracked"])
        let y = cbn.forward(x, labels: labels)
        assertClose(y.scalars, floats(f, "y"), "y")
        assertClose(cbn.bn.runningMean!.scalars, floats(f, "running_mean"), "running_mean")
        assertClose(cbn.bn.runningVar!.scalars, floats(f, "running_var"), "running_var")
        y.backward(Tensor(shape: shape, data: floats(f, "r")))
        assertClose(try XCTUnwrap(x.grad).scalars, floats(f, "grad_x"), rtol: 1e-3, atol: 1e-5, "dx")
        assertClose(try XCTUnwrap(cbn.weight.grad).scalars, floats(f, "grad_weight"), rtol: 1e-3, atol: 1e-5, "dγ")
        assertClose(try XCTUnwrap(cbn.bias.grad).scalars, floats(f, "grad_bias"), rtol: 1e-3, atol: 1e-5, "dβ")
    }

    func testConditionalBatchNormGradients() {
        let cbn = ConditionalBatchNorm2d(3, classes: 4)
        cbn.weight.mutablePointer.update(from: (randomTensor([4, 3], seed: 21, scale: 0.5) + 1).pointer, count: 12)
        cbn.bias.mutablePointer.update(from: randomTensor([4, 3], seed: 22, scale: 0.5).pointer, count: 12)
        let labels = [3, 0, 3, 1, 2]
        // x, γ and β by central differences, in training mode (through the batch statistics)
        assertGradientsMatch([randomTensor([5, 3, 2, 2], seed: 23), cbn.weight, cbn.bias], eps: 1e-2) {
            cbn.forward($0[0], labels: labels)
        }
        // a class with no image in the batch gets no gradient
        cbn.weight.grad = nil
        cbn.forward(randomTensor([3, 3, 2, 2], seed: 25), labels: [3, 0, 3]).sum().backward()
        let dWeight = cbn.weight.grad!.scalars
        XCTAssertEqual(Array(dWeight[3..<9]), [0, 0, 0, 0, 0, 0])
        XCTAssertTrue(dWeight[9..<12].contains { $0 != 0 })
    }

    /// A scalar input stops with ConditionalBatchNorm2d's own message, not Swift's index check on shape[0].
    func testConditionalBatchNormScalarTrapsWithMessage() throws {
        if isTrapChild { return }
        try assertEachTraps([("TensorCoreTests.GANLayerTests/testTrapConditionalBatchNormScalar",
                              "ConditionalBatchNorm2d(3): input [] does not have 3 channels")])
    }
    // Run only as a child of testConditionalBatchNormScalarTrapsWithMessage (it traps on purpose).
    func testTrapConditionalBatchNormScalar() {
        guard isTrapChild else { return }
        _ = ConditionalBatchNorm2d(3, classes: 2).forward(Tensor(shape: [], data: [1]), labels: [0])
    }
}
