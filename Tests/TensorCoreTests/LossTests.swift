import XCTest
import Foundation
import TensorCore

final class LossTests: XCTestCase {
    // MARK: hand-computed values

    func testBinaryCrossEntropyWithLogitsByHand() {
        // x = 0, t = 1: log 2.  x = 2, t = 0: 2 + log(1 + e^-2).  x = -3, t = 0.25: 0.75 + log(1 + e^-3).
        let x = Tensor(shape: [3], data: [0, 2, -3]), t = Tensor(shape: [3], data: [1, 0, 0.25])
        let expected: [Double] = [log(2), 2 + log(1 + exp(-2)), 0.75 + log(1 + exp(-3))]
        assertClose(binaryCrossEntropyWithLogits(x, targets: t, reduction: .none).scalars, expected.map(Float.init), rtol: 1e-6, atol: 1e-7)
        XCTAssertEqual(Double(binaryCrossEntropyWithLogits(x, targets: t, reduction: .sum).item), expected.reduce(0, +), accuracy: 1e-6)
        XCTAssertEqual(Double(binaryCrossEntropyWithLogits(x, targets: t).item), expected.reduce(0, +) / 3, accuracy: 1e-6)
        // Huge logits stay finite: the loss of a confident right answer is ~0, of a wrong one ~|x|.
        let big = Tensor(shape: [4], data: [500, -500, 500, -500]), bt = Tensor(shape: [4], data: [1, 0, 0, 1])
        XCTAssertEqual(binaryCrossEntropyWithLogits(big, targets: bt, reduction: .none).scalars, [0, 0, 500, 500])
    }

    func testBinaryCrossEntropyByHandAndClamp() {
        let p = Tensor(shape: [4], data: [0.5, 0.9, 0, 1]), t = Tensor(shape: [4], data: [1, 0, 1, 1])
        let l = binaryCrossEntropy(p, targets: t, reduction: .none).scalars
        assertClose(l, [Float(log(2.0)), Float(-log(0.1)), 100, 0], rtol: 1e-5, atol: 1e-6)
    }

    func testMSEAndKLByHand() {
        let a = Tensor(shape: [2, 2], data: [1, 2, 3, 4]), b = Tensor(shape: [2, 2], data: [3, 5, 3, 2])
        XCTAssertEqual(mseLoss(a, b).item, (4 + 9 + 0 + 4) / 4)
        XCTAssertEqual(mseLoss(a, b, reduction: .sum).item, 17)
        XCTAssertEqual(mseLoss(a, b, reduction: .batchMean).item, 17 / 2)
        XCTAssertEqual(mseLoss(a, b, reduction: .none).scalars, [4, 9, 0, 4])
        // mu = 1, logvar = 0: ½;  mu = 0, logvar = log 2: -½(1 + log 2 - 2) = ½(1 - log 2).
        let mu = Tensor(shape: [2, 2], data: [1, 0, 0, 0]), lv = Tensor(shape: [2, 2], data: [0, Float(log(2.0)), 0, 0])
        let perElement: [Double] = [0.5, 0.5 * (1 - log(2)), 0, 0]
        assertClose(gaussianKL(mu: mu, logvar: lv, reduction: .none).scalars, perElement.map(Float.init), rtol: 1e-6, atol: 1e-7)
        XCTAssertEqual(Double(gaussianKL(mu: mu, logvar: lv).item), perElement.reduce(0, +), accuracy: 1e-6)
        XCTAssertEqual(Double(gaussianKL(mu: mu, logvar: lv, reduction: .batchMean).item), perElement.reduce(0, +) / 2, accuracy: 1e-6)
    }

    // MARK: PyTorch fixtures (Fixtures/make_optim_fixtures.py)

    func testBinaryCrossEntropyWithLogitsMatchesPyTorch() throws {
        let f = try OptimFixture.load()
        for (name, reduction) in [("mean", Reduction.mean), ("sum", .sum), ("none", .none)] {
            let x = f.tensor("bce_logits.x"), t = f.tensor("bce_logits.t")
            x.requiresGrad = true
            t.requiresGrad = true
            let loss = binaryCrossEntropyWithLogits(x, targets: t, reduction: reduction)
            assertClose(loss.scalars, f.tensor("bce_logits.\(name).value").scalars, rtol: 1e-5, atol: 1e-6, "\(name) value")
            if reduction == .none {
                let n = loss.count
                loss.backward(Tensor(shape: loss.shape) { b in for i in 0..<n { b[i] = -1 + 2 * Float(i) / Float(n - 1) } })
            } else {
                loss.backward()
            }
            assertClose(x.grad!.scalars, f.tensor("bce_logits.\(name).dx").scalars, rtol: 1e-5, atol: 1e-6, "\(name) dx")
            assertClose(t.grad!.scalars, f.tensor("bce_logits.\(name).dt").scalars, rtol: 1e-5, atol: 1e-6, "\(name) dt")
        }
    }

    func testBinaryCrossEntropyMatchesPyTorchIncludingClampedEnds() throws {
        let f = try OptimFixture.load()
        for (name, reduction) in [("mean", Reduction.mean), ("sum", .sum)] {
            let p = f.tensor("bce.p"), t = f.tensor("bce.t")
            p.requiresGrad = true
            t.requiresGrad = true
            let loss = binaryCrossEntropy(p, targets: t, reduction: reduction)
            assertClose(loss.scalars, f.tensor("bce.\(name).value").scalars, rtol: 1e-5, atol: 1e-6, "\(name) value")
            loss.backward()
            // Element 0 (p = 0, t = 1) has PyTorch's −1/1e-12-scale gradient; relative tolerance covers it.
            assertClose(p.grad!.scalars, f.tensor("bce.\(name).dp").scalars, rtol: 1e-5, atol: 1e-6, "\(name) dp")
            assertClose(t.grad!.scalars, f.tensor("bce.\(name).dt").scalars, rtol: 1e-5, atol: 1e-6, "\(name) dt")
        }
    }

    func testMSEAndKLMatchPyTorch() throws {
        let f = try OptimFixture.load()
        let a = f.tensor("mse.a"), b = f.tensor("mse.b")
        a.requiresGrad = true
        b.requiresGrad = true
        let mse = mseLoss(a, b)
        assertClose(mse.scalars, f.tensor("mse.mean.value").scalars, rtol: 1e-6, atol: 0, "mse")
        mse.backward()
        assertClose(a.grad!.scalars, f.tensor("mse.mean.da").scalars, rtol: 1e-5, atol: 1e-7, "mse da")
        assertClose(b.grad!.scalars, f.tensor("mse.mean.db").scalars, rtol: 1e-5, atol: 1e-7, "mse db")

        let mu = f.tensor("kl.mu"), lv = f.tensor("kl.logvar")
        mu.requiresGrad = true
        lv.requiresGrad = true
        let kl = gaussianKL(mu: mu, logvar: lv, reduction: .sum)
        assertClose(kl.scalars, f.tensor("kl.sum.value").scalars, rtol: 1e-5, atol: 0, "kl")
        kl.backward()
        assertClose(mu.grad!.scalars, f.tensor("kl.sum.dmu").scalars, rtol: 1e-5, atol: 1e-7, "kl dmu")
        assertClose(lv.grad!.scalars, f.tensor("kl.sum.dlogvar").scalars, rtol: 1e-5, atol: 1e-7, "kl dlogvar")
    }

    // MARK: finite-difference gradient checks, every differentiable argument, every reduction

    func testBinaryCrossEntropyWithLogitsGradients() {
        for reduction in [Reduction.mean, .sum, .none, .batchMean] {
            let x = randomTensor([3, 4], seed: 21, scale: 2)
            let t = Tensor.uniform([3, 4], generator: &rngForTargets)
            assertGradientsMatch([x, t], eps: 1e-2) { binaryCrossEntropyWithLogits($0[0], targets: $0[1], reduction: reduction) }
        }
    }

    func testBinaryCrossEntropyGradients() {
        for reduction in [Reduction.mean, .sum, .none] {
            // probabilities kept away from 0 and 1 so ±eps stays inside the domain
            let p = Tensor.uniform([3, 4], low: 0.1, high: 0.9, generator: &rngForTargets)
            let t = Tensor.uniform([3, 4], generator: &rngForTargets)
            assertGradientsMatch([p, t], eps: 1e-3) { binaryCrossEntropy($0[0], targets: $0[1], reduction: reduction) }
        }
    }

    func testMSEGradients() {
        for reduction in [Reduction.mean, .sum, .none] {
            assertGradientsMatch([randomTensor([2, 5], seed: 31), randomTensor([2, 5], seed: 32)]) {
                mseLoss($0[0], $0[1], reduction: reduction)
            }
        }
    }

    func testGaussianKLGradients() {
        for reduction in [Reduction.sum, .batchMean, .mean, .none] {
            assertGradientsMatch([randomTensor([4, 3], seed: 41), randomTensor([4, 3], seed: 42, scale: 0.5)]) {
                gaussianKL(mu: $0[0], logvar: $0[1], reduction: reduction)
            }
        }
    }

    /// Gradients flow through the fused ops into earlier ops (a loss in the middle of a graph).
    func testLossComposesWithUpstreamOps() {
        assertGradientsMatch([randomTensor([3, 4], seed: 51), randomTensor([4, 2], seed: 52)]) {
            binaryCrossEntropyWithLogits($0[0].matmul($0[1]), targets: Tensor.full([3, 2], 0.3))
        }
    }

    /// Large inputs take the multi-chunk paths; the result must equal a Double sum of the same formula.
    func testLargeInputReductionMatchesDoubleReference() {
        let n = 200_000
        let x = randomTensor([n], seed: 61, scale: 4)
        var r = RandomGenerator(seed: 62)
        let t = Tensor.uniform([n], generator: &r)
        var reference = 0.0
        for i in 0..<n {
            let xi = Double(x.pointer[i]), ti = Double(t.pointer[i])
            reference += max(xi, 0) - xi * ti + log1p(exp(-abs(xi)))
        }
        XCTAssertEqual(Double(binaryCrossEntropyWithLogits(x, targets: t, reduction: .sum).item), reference, accuracy: 1e-5 * reference)
        x.requiresGrad = true
        binaryCrossEntropyWithLogits(x, targets: t).backward()
        let g = x.grad!
        for i in stride(from: 0, to: n, by: 9973) {
            let s = 1 / (1 + exp(-Double(x.pointer[i])))
            XCTAssertEqual(Double(g.pointer[i]), (s - Double(t.pointer[i])) / Double(n), accuracy: 1e-6 / Double(n))
        }
    }

    private var rngForTargets = RandomGenerator(seed: 99)
}

/// The named backward passes on their own, against formulas evaluated in Double.
final class NamedBackwardTests: XCTestCase {
    func testCrossEntropyBackwardIsSoftmaxMinusOneHotOverValidRows() {
        var g = RandomGenerator(seed: 4)
        let logits = Tensor.randn([5, 7], generator: &g)
        let targets: [Int32] = [3, -100, 0, 6, 2]
        let probs = logits.softmax(axis: 1)
        let expected = probs.scalars.enumerated().map { i, p -> Double in
            let (r, c) = (i / 7, i % 7)
            if targets[r] == -100 { return 0 }
            return (Double(p) - (Int32(c) == targets[r] ? 1 : 0)) * 2.0 / 4   // dLoss 2, 4 valid rows
        }
        let dx = crossEntropyBackward(probs: probs.detachedCopy(), targets: targets, ignoreIndex: -100, validRows: 4, dLoss: 2)
        for (a, b) in zip(dx.scalars, expected) { XCTAssertEqual(Double(a), b, accuracy: 1e-6) }
    }

    /// dx = rstd·(ĝ − mean(ĝ) − x̂·mean(ĝ·x̂)) with ĝ = w·dy, dweight = Σ dy·x̂, dbias = Σ dy.
    func testLayerNormBackwardMatchesTheClosedForm() {
        var g = RandomGenerator(seed: 5)
        let (R, C) = (6, 9)
        let x = Tensor.randn([R, C], generator: &g), w = Tensor.randn([C], generator: &g), dy = Tensor.randn([R, C], generator: &g)
        let xs = x.scalars.map(Double.init), ws = w.scalars.map(Double.init), gs = dy.scalars.map(Double.init)
        var mean = [Float](), rstd = [Float]()
        var dxExpected = [Double](), dwExpected = [Double](repeating: 0, count: C), dbExpected = [Double](repeating: 0, count: C)
        for r in 0..<R {
            let row = Array(xs[(r * C)..<((r + 1) * C)]), gr = Array(gs[(r * C)..<((r + 1) * C)])
            let mu = row.reduce(0, +) / Double(C)
            let variance = row.map { ($0 - mu) * ($0 - mu) }.reduce(0, +) / Double(C)
            let rs = 1 / (variance + 1e-5).squareRoot()
            mean.append(Float(mu)); rstd.append(Float(rs))
            let xhat = row.map { ($0 - mu) * rs }
            let ghat = (0..<C).map { gr[$0] * ws[$0] }
            let m1 = ghat.reduce(0, +) / Double(C)
            let m2 = (0..<C).map { ghat[$0] * xhat[$0] }.reduce(0, +) / Double(C)
            dxExpected += (0..<C).map { rs * (ghat[$0] - m1 - xhat[$0] * m2) }
            for c in 0..<C { dwExpected[c] += gr[c] * xhat[c]; dbExpected[c] += gr[c] }
        }
        let (dx, dw, db) = layerNormBackward(x, weight: w, hasBias: true, mean: Tensor(shape: [R], data: mean),
                                             rstd: Tensor(shape: [R], data: rstd), dy: dy)
        for (a, b) in zip(dx.scalars, dxExpected) { XCTAssertEqual(Double(a), b, accuracy: 1e-4) }
        for (a, b) in zip(dw!.scalars, dwExpected) { XCTAssertEqual(Double(a), b, accuracy: 1e-4) }
        for (a, b) in zip(db!.scalars, dbExpected) { XCTAssertEqual(Double(a), b, accuracy: 1e-4) }
    }
}
