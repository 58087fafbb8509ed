import XCTest
import TensorCore
import Models
import Training

/// Central-difference check of every input's gradient for L = Σ f(x)ᵢ·rᵢ with fixed random r.
private func assertGradients(_ inputs: [Tensor], eps: Float = 1e-2, rtol: Double = 2e-2,
                             file: StaticString = #filePath, line: UInt = #line, _ f: ([Tensor]) -> Tensor) {
    for x in inputs { x.requiresGrad = true; x.grad = nil }
    let out = f(inputs)
    var rng = RandomGenerator(seed: 7)
    let r = Tensor.randn(out.shape, generator: &rng)
    out.backward(r)
    func loss() -> Double {
        withNoGrad {
            let y = f(inputs)
            return (0..<y.count).reduce(0.0) { $0 + Double(y.pointer[$1]) * Double(r.pointer[$1]) }
        }
    }
    for (k, x) in inputs.enumerated() {
        guard let g = x.grad else { XCTFail("input \(k) got no gradient", file: file, line: line); continue }
        var numeric = [Double](repeating: 0, count: x.count)
        for i in 0..<x.count {
            let old = x.mutablePointer[i]
            x.mutablePointer[i] = old + eps; let lp = loss()
            x.mutablePointer[i] = old - eps; let lm = loss()
            x.mutablePointer[i] = old
            numeric[i] = (lp - lm) / (2 * Double(eps))
        }
        let scale = max(numeric.map { abs($0) }.max() ?? 0, 1e-3)
        for i in 0..<x.count {
            let err = abs(Double(g.pointer[i]) - numeric[i]) / max(abs(numeric[i]), 0.1 * scale)
            if err > rtol {
                XCTFail("input \(k) element \(i): analytic \(g.pointer[i]) vs numeric \(numeric[i])", file: file, line: line)
                break
            }
        }
    }
}

final class WaveGANTests: XCTestCase {
    private func tinyConfig(length: Int = 4096) -> WaveGANConfig {
        var c = WaveGANConfig()
        (c.length, c.sampleRate, c.nz, c.ngf, c.ndf, c.batchSize, c.seed) = (length, 8000, 8, 2, 2, 4, 3)
        return c
    }

    /// WaveGAN's geometry: kernel 25, stride 4, padding 11 (+ output padding 1) is exactly ÷4 / ×4,
    /// and both 1-D ops pass a gradient check in that geometry (input, weight, bias).
    func testStride4Kernel25ConvolutionsAreExactlyFourfoldAndHaveCorrectGradients() {
        var g = RandomGenerator(seed: 1)
        let x = Tensor.randn([2, 3, 16], generator: &g)
        let w = Tensor.randn([2, 3, 25], std: 0.2, generator: &g), b = Tensor.randn([2], generator: &g)
        XCTAssertEqual(conv1d(x, weight: w, bias: b, stride: 4, padding: 11).shape, [2, 2, 4])
        let wt = Tensor.randn([3, 2, 25], std: 0.2, generator: &g)
        XCTAssertEqual(convTranspose1d(x, weight: wt, bias: b, stride: 4, padding: 11, outputPadding: 1).shape, [2, 2, 64])
        assertGradients([x, w, b]) { conv1d($0[0], weight: $0[1], bias: $0[2], stride: 4, padding: 11) }
        assertGradients([x, wt, b]) { convTranspose1d($0[0], weight: $0[1], bias: $0[2], stride: 4, padding: 11, outputPadding: 1) }
    }

    /// Each example is its input shifted by one k ∈ [−n, n] with reflection at both edges, the
    /// shifts vary across examples, and the gradient (a scatter) matches finite differences.
    func testPhaseShuffleShiftsEachExampleWithReflectionAndHasCorrectGradient() {
        let (b, c, l, n) = (16, 2, 9, 2)
        let x = Tensor(shape: [b, c, l], data: (0..<(b * c * l)).map { Float($0) })
        var g = RandomGenerator(seed: 5)
        let y = phaseShuffle(x, radius: n, generator: &g)
        XCTAssertEqual(y.shape, x.shape)
        var shifts = Set<Int>()
        for i in 0..<b {
            let found = (-n...n).first { k in
                (0..<c).allSatisfy { ch in
                    (0..<l).allSatisfy { t in
                        var s = t - k
                        if s < 0 { s = -s }
                        if s >= l { s = 2 * (l - 1) - s }
                        return y.scalars[(i * c + ch) * l + t] == x.scalars[(i * c + ch) * l + s]
                    }
                }
            }
            XCTAssertNotNil(found, "example \(i) is not a reflected shift of its input")
            if let found { shifts.insert(found) }
        }
        XCTAssertGreaterThan(shifts.count, 2, "16 examples should draw several different shifts")
        var r = RandomGenerator(seed: 1)
        let small = Tensor.randn([3, 2, 6], generator: &r)
        assertGradients([small]) { var g = RandomGenerator(seed: 9); return phaseShuffle($0[0], radius: 2, generator: &g) }
    }

    /// Data parallel: rows 5..<11 of a batch of 16, shuffled as a shard, are those rows of the whole
    /// batch shuffled, and the generator ends where the whole batch's draw leaves it.
    func testPhaseShuffleOfAShardIsThoseRowsOfTheWholeBatch() {
        let (b, c, l) = (16, 3, 12)
        let x = Tensor(shape: [b, c, l], data: (0..<(b * c * l)).map { Float($0) })
        var whole = RandomGenerator(seed: 8), part = RandomGenerator(seed: 8)
        let all = phaseShuffle(x, radius: 3, generator: &whole)
        let rows = 5..<11
        let shard = phaseShuffle(x.slice(axis: 0, rows).detachedCopy(), radius: 3, generator: &part, shard: BatchShard(rows: rows, batch: b))
        XCTAssertEqual(shard.scalars, all.slice(axis: 0, rows).detachedCopy().scalars)
        XCTAssertNotEqual(shard.scalars, x.slice(axis: 0, rows).detachedCopy().scalars, "some row is shifted")
        XCTAssertEqual(part.next(), whole.next())
    }

    func testShapesRangeAndParameterNames() {
        for length in WaveGANConfig.lengths {
            let gan = WaveGAN(tinyConfig(length: length))
            var g = RandomGenerator(seed: 2)
            let waves = gan.generate(gan.noise(3, generator: &g))
            XCTAssertEqual(waves.shape, [3, 1, length])
            XCTAssertTrue(waves.scalars.allSatisfy { $0 >= -1 && $0 <= 1 })
            var shuffle: RandomGenerator? = RandomGenerator(seed: 4)
            XCTAssertEqual(gan.discriminator.forward(waves, shuffling: &shuffle).shape, [3])
        }
        let gan = WaveGAN(tinyConfig())
        let gNames = gan.generator.namedParameters().map(\.0)
        XCTAssertEqual(gNames.first, "dense.weight")
        XCTAssertTrue(gNames.contains("main.2.weight"))  // the first transposed conv after BN, ReLU
        XCTAssertEqual(gan.generator.namedParameters().first { $0.0 == "main.2.weight" }?.1.shape, [32, 16, 25])
        let dNames = gan.discriminator.namedParameters().map(\.0)
        XCTAssertEqual(dNames.first, "block0.0.weight")
        XCTAssertEqual(dNames.last, "output.bias")
        XCTAssertEqual(gan.discriminator.namedParameters().first { $0.0 == "output.weight" }?.1.shape, [1, 32 * 4])
    }

    func testInvalidConfigurationsAreDescribed() {
        var c = tinyConfig(); c.length = 5000
        XCTAssertNotNil(c.problem)
        c = tinyConfig(); c.kernelSize = 24
        XCTAssertNotNil(c.problem)
        c = tinyConfig(); c.batchSize = 1
        XCTAssertNotNil(c.problem)
        XCTAssertNil(tinyConfig().problem)
    }

    /// A tiny WaveGAN trains a few steps on 200 Hz sines: finite scalars in range, both networks'
    /// weights move, and D learns to tell the real sines from G's early output (averaged over the
    /// last steps: single GAN steps oscillate).
    func testTinyAudioGANTrainsAFewSteps() {
        var c = tinyConfig()
        c.ndf = 4
        c.learningRate = 1e-3
        let gan = WaveGAN(c)
        let optimizers = GANOptimizers(for: gan)
        let real = Tensor(shape: [4, 1, 4096], data: (0..<4).flatMap { k in
            (0..<4096).map { t in 0.8 * Float(sin(2 * Double.pi * 200 * Double(t) / 8000 + Double(k))) }
        })
        let g0 = gan.generator.parameters.map(\.scalars), d0 = gan.discriminator.parameters.map(\.scalars)
        var rng = RandomGenerator(seed: 1)
        var results: [GANStepResult] = []
        for _ in 0..<20 { results.append(waveGANTrainingStep(gan, optimizers: optimizers, real: real, rng: &rng)) }
        for r in results {
            XCTAssertTrue(r.lossD.isFinite && r.lossG.isFinite)
            XCTAssertTrue((0...1).contains(r.dX) && (0...1).contains(r.dGZ1) && (0...1).contains(r.dGZ2))
        }
        XCTAssertNotEqual(gan.generator.parameters.map(\.scalars), g0)
        XCTAssertNotEqual(gan.discriminator.parameters.map(\.scalars), d0)
        let last = results.suffix(5)
        let margin = last.reduce(0.0) { $0 + $1.dX - $1.dGZ1 } / Double(last.count)
        XCTAssertGreaterThan(margin, 0.05, "D should score real sines above fakes")
    }
}
