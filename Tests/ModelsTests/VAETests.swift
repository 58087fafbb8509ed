import XCTest
import Foundation
import TensorCore
import DataIO
import Models
import Training

/// A tiny MLP VAE (16 pixels → 6 → 3) for tests.
private func tinyConfig(likelihood: VAELikelihood = .bernoulli, latent: Int = 3, classes: Int = 0) -> VAEConfig {
    var c = VAEConfig()
    (c.imageSize, c.channels, c.hidden, c.latent, c.likelihood, c.classCount, c.seed) = (4, 1, 6, latent, likelihood, classes, 7)
    return c
}

/// Pixels in [0, 1] of shape (n, 1, side, side), not just 0/1, from a seed.
private func randomImages(_ n: Int, side: Int = 4, channels: Int = 1, seed: UInt64 = 3) -> Tensor {
    var g = RandomGenerator(seed: seed)
    return Tensor.uniform([n, channels, side, side], generator: &g)
}

final class VAETests: XCTestCase {
    // MARK: loss terms by hand

    func testReconstructionAndKLTermsByHand() {
        // Bernoulli on logits: −[t log σ(l) + (1 − t) log(1 − σ(l))] = softplus(l) − t·l.
        let vae = VAE(tinyConfig())
        let logits = Tensor(shape: [1, 1, 2, 2], data: [0, 2, -3, 1])
        let x = Tensor(shape: [1, 1, 2, 2], data: [1, 0, 0.25, 0.5])
        let bce = log(2.0) + (2 + log(1 + exp(-2.0))) + (0.75 + log(1 + exp(-3.0))) + (log(1 + exp(1.0)) - 0.5)
        XCTAssertEqual(Double(vae.reconstructionNLL(logits, x).item), bce, accuracy: 1e-5)
        XCTAssertEqual(Double(vae.reconstructionNLL(logits, x, perImage: true).scalars[0]), bce, accuracy: 1e-5)

        // Gaussian, σ = 0.1: ½((x − μ)/σ)² + log σ + ½ log 2π per pixel.
        var gc = tinyConfig(likelihood: .gaussian)
        gc.gaussianStd = 0.1
        let gauss = VAE(gc)
        let mean = Tensor(shape: [1, 1, 2, 2], data: [0.9, 0.1, 0.25, 0.7])
        let sq = 0.01 + 0.01 + 0 + 0.04
        let gaussNLL = 0.5 * sq / 0.01 + 4 * (log(0.1) + 0.5 * log(2 * Double.pi))
        XCTAssertEqual(Double(gauss.reconstructionNLL(mean, x).item), gaussNLL, accuracy: 1e-4)
        XCTAssertEqual(Double(gauss.reconstructionNLL(mean, x, perImage: true).scalars[0]), gaussNLL, accuracy: 1e-4)

        // Learned σ starts at log σ = 0 (σ = 1).
        let learned = VAE(tinyConfig(likelihood: .gaussianLearned))
        XCTAssertEqual(learned.logScale?.scalars, [0])
        XCTAssertEqual(Double(learned.reconstructionNLL(mean, x).item), 0.5 * sq + 4 * 0.5 * log(2 * Double.pi), accuracy: 1e-5)

        // KL(N(μ, σ²) ‖ N(0, 1)) = −½ Σ (1 + log σ² − μ² − σ²): μ = 1, log σ² = 0 → ½; μ = 0, σ² = 2 → ½(1 − log 2).
        let mu = Tensor(shape: [1, 2], data: [1, 0]), lv = Tensor(shape: [1, 2], data: [0, Float(log(2.0))])
        XCTAssertEqual(Double(gaussianKL(mu: mu, logvar: lv).item), 0.5 + 0.5 * (1 - log(2.0)), accuracy: 1e-6)
    }

    /// The whole loss of the MLP VAE against a Double-precision forward written out by hand from the
    /// model's weights and the same ε.
    func testLossMatchesHandWrittenForward() throws {
        let vae = VAE(tinyConfig())
        let x = randomImages(5)
        var rng = RandomGenerator(seed: 11)
        var epsRNG = rng
        let terms = vae.loss(x, rng: &rng)
        let eps = Tensor.randn([5, 3], generator: &epsRNG).scalars.map(Double.init)

        let params = Dictionary(uniqueKeysWithValues: vae.namedParameters().map { ($0.0, $0.1.scalars.map(Double.init)) })
        XCTAssertEqual(Set(params.keys), ["fc1.weight", "fc1.bias", "fc21.weight", "fc21.bias", "fc22.weight", "fc22.bias",
                                          "fc3.weight", "fc3.bias", "fc4.weight", "fc4.bias"])
        func linear(_ name: String, _ v: [Double], out: Int) -> [Double] {
            let w = params[name + ".weight"]!, b = params[name + ".bias"]!
            var y = [Double](repeating: 0, count: out)
            for o in 0..<out {
                var acc: Double = b[o]
                for i in 0..<v.count { acc += w[o * v.count + i] * v[i] }
                y[o] = acc
            }
            return y
        }
        var bce = 0.0, kl = 0.0
        let xs = x.scalars.map(Double.init)
        for i in 0..<5 {
            let xi = Array(xs[(i * 16)..<((i + 1) * 16)])
            let h1 = linear("fc1", xi, out: 6).map { max($0, 0) }
            let mu = linear("fc21", h1, out: 3), lv = linear("fc22", h1, out: 3)
            let z = (0..<3).map { mu[$0] + eps[i * 3 + $0] * exp(0.5 * lv[$0]) }
            let logits = linear("fc4", linear("fc3", z, out: 6).map { max($0, 0) }, out: 16)
            for p in 0..<16 {
                let s = 1 / (1 + exp(-logits[p]))
                bce -= xi[p] * log(s) + (1 - xi[p]) * log(1 - s)
            }
            for j in 0..<3 { kl += -0.5 * (1 + lv[j] - mu[j] * mu[j] - exp(lv[j])) }
        }
        XCTAssertEqual(Double(terms.reconstruction.item), bce, accuracy: 1e-4 * bce)
        XCTAssertEqual(Double(terms.kl.item), kl, accuracy: 1e-4 * max(kl, 1))
        XCTAssertEqual(Double(terms.total.item), bce + kl, accuracy: 1e-4 * (bce + kl))
    }

    // MARK: gradients

    /// Central differences of the reparameterised loss (ε fixed by re-seeding) against backward, for
    /// entries of every parameter: gradients flow through z = μ + ε·σ into both encoder heads.
    private func gradientCheck(_ vae: VAE, labels: [Int]? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let x = randomImages(3)
        func lossValue() -> Double {
            var r = RandomGenerator(seed: 5)
            return withNoGrad { Double(vae.loss(x, labels: labels, rng: &r).total.item) }
        }
        vae.zeroGrad()
        var r = RandomGenerator(seed: 5)
        vae.loss(x, labels: labels, rng: &r).total.backward()
        var checked = 0
        for (name, p) in vae.namedParameters() {
            let grad = p.grad!.scalars
            for idx in Set([0, p.count / 2, p.count - 1]) {
                let saved = p.mutablePointer[idx]
                let h: Float = 1e-2
                p.mutablePointer[idx] = saved + h
                let plus = lossValue()
                p.mutablePointer[idx] = saved - h
                let minus = lossValue()
                p.mutablePointer[idx] = saved
                let numeric = (plus - minus) / Double(2 * h)
                let analytic = Double(grad[idx])
                XCTAssertEqual(analytic, numeric, accuracy: 2e-2 * max(1, abs(numeric)), "\(name)[\(idx)]", file: file, line: line)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 10, file: file, line: line)
    }

    func testGradientOfReparameterisedLossBernoulli() { gradientCheck(VAE(tinyConfig())) }

    func testGradientOfReparameterisedLossLearnedGaussianConditional() {
        // Includes log_scale and the label columns of fc1/fc3.
        gradientCheck(VAE(tinyConfig(likelihood: .gaussianLearned, classes: 2)), labels: [0, 1, 1])
    }

    func testGradientOfReparameterisedLossConv() {
        var c = tinyConfig()
        (c.arch, c.imageSize, c.hidden) = (.conv, 8, 2)
        let vae = VAE(c)
        let x = randomImages(2, side: 8)
        // Shapes first: 8 → 4 (one stage, side 4 is ≤ 7), decoder back to (2, 1, 8, 8).
        XCTAssertEqual(c.convStages, 1)
        var r = RandomGenerator(seed: 1)
        let (mu, _) = vae.encode(x)
        XCTAssertEqual(mu.shape, [2, 3])
        XCTAssertEqual(vae.decode(Tensor.randn([2, 3], generator: &r)).shape, [2, 1, 8, 8])
        let names = vae.namedParameters().map(\.0)
        XCTAssertEqual(names, ["encoder.0.weight", "encoder.0.bias", "fc21.weight", "fc21.bias", "fc22.weight", "fc22.bias",
                               "fc3.weight", "fc3.bias", "decoder.2.weight", "decoder.2.bias"])
        // gradient check on the 8×8 images
        func lossValue() -> Double { var g = RandomGenerator(seed: 5); return withNoGrad { Double(vae.loss(x, rng: &g).total.item) } }
        vae.zeroGrad()
        var g = RandomGenerator(seed: 5)
        vae.loss(x, rng: &g).total.backward()
        for (name, p) in vae.namedParameters() {
            let idx = p.count / 3
            let analytic = Double(p.grad!.scalars[idx])
            let saved = p.mutablePointer[idx]
            p.mutablePointer[idx] = saved + 1e-2; let plus = lossValue()
            p.mutablePointer[idx] = saved - 1e-2; let minus = lossValue()
            p.mutablePointer[idx] = saved
            XCTAssertEqual(analytic, (plus - minus) / 2e-2, accuracy: 2e-2 * max(1, abs(analytic)), name)
        }
    }

    func testConvStagesForCommonSizes() {
        var c = VAEConfig()
        c.arch = .conv
        for (side, stages) in [(28, 2), (32, 3), (64, 4)] { c.imageSize = side; XCTAssertEqual(c.convStages, stages) }
        c.imageSize = 7
        XCTAssertNotNil(c.problem)
    }

    // MARK: training

    /// A tiny VAE on a generated dataset (horizontal or vertical bars): the epoch loss falls well below
    /// its start and far below the 16·log 2 nats of a model that knows nothing.
    func testTinyVAELossFalls() {
        var c = tinyConfig()
        (c.hidden, c.latent, c.learningRate, c.batchSize) = (32, 2, 1e-2, 32)
        let vae = VAE(c)
        var g = RandomGenerator(seed: 9)
        let n = 256
        let data = Tensor(shape: [n, 1, 4, 4]) { out in
            out.initialize(repeating: 0)
            for i in 0..<n {
                let k = g.nextInt(below: 4), vertical = g.nextInt(below: 2) == 1
                for j in 0..<4 { out[i * 16 + (vertical ? j * 4 + k : k * 4 + j)] = 1 }
            }
        }
        var rng = RandomGenerator(seed: 1)
        let optimizer = vae.makeOptimizer()
        func epochLoss(train: Bool) -> Double {
            var total = 0.0
            for b in stride(from: 0, to: n, by: 32) {
                let batch = data.slice(axis: 0, b..<(b + 32)).detachedCopy()
                total += train ? vaeTrainingStep(vae, optimizer: optimizer, batch: batch, rng: &rng).total : vae.evaluate(batch, rng: &rng).total
            }
            return total / Double(n)
        }
        let before = epochLoss(train: false)
        for _ in 0..<40 { _ = epochLoss(train: true) }
        let after = epochLoss(train: false)
        XCTAssertGreaterThan(before, 8)
        XCTAssertLessThan(after, 0.5 * before, "loss \(before) → \(after)")
        XCTAssertLessThan(after, 16 * log(2.0) / 2)
        // Reconstructions of bars look like bars: the bright pixels are the bar's.
        let recon = vae.reconstruct(data.slice(axis: 0, 0..<8).detachedCopy())
        let agreement = zip(recon.scalars, data.slice(axis: 0, 0..<8).scalars).filter { ($0 > 0.5) == ($1 > 0.5) }.count
        XCTAssertGreaterThan(agreement, 8 * 16 * 9 / 10)
    }

    // MARK: IWAE

    /// With a one-dimensional latent, log p(x) = log ∫ p(x|z) N(z; 0, 1) dz can be integrated on a grid.
    /// The IWAE bound (in −log form) must lie between that and the negative ELBO, and approach it.
    func testIWAEBoundAgainstNumericalIntegral() {
        let vae = VAE(tinyConfig(latent: 1))
        let x = randomImages(3).detachedCopy()
        // A few training steps so q(z|x) is not the prior.
        var rng = RandomGenerator(seed: 4)
        let optimizer = vae.makeOptimizer()
        for _ in 0..<20 { vaeTrainingStep(vae, optimizer: optimizer, batch: x, rng: &rng) }

        // −log p(x) by the trapezoid rule on z ∈ [−10, 10].
        let points = 4001
        let zs = (0..<points).map { -10 + 20 * Double($0) / Double(points - 1) }
        let dz = 20 / Double(points - 1)
        var exact: [Double] = []
        for i in 0..<3 {
            let xi = x.slice(axis: 0, i..<(i + 1))
            let targets = Tensor.concat(Array(repeating: xi, count: points), axis: 0)
            let z = Tensor(shape: [points, 1], data: zs.map(Float.init))
            let nll = withNoGrad { vae.reconstructionNLL(vae.decode(z), targets, perImage: true) }.scalars
            let logTerms = zip(nll, zs).map { -Double($0) - 0.5 * $1 * $1 - 0.5 * log(2 * Double.pi) + log(dz) }
            let top = logTerms.max()!
            exact.append(-(top + log(logTerms.reduce(0) { $0 + exp($1 - top) })))
        }
        var r2 = RandomGenerator(seed: 2)
        let many = vae.elboAndIWAE(x, samples: 2000, rng: &r2, chunk: 512)
        for i in 0..<3 {
            // A bound in expectation: one k = 2000 estimate may dip below by its (tiny) Monte Carlo noise.
            XCTAssertGreaterThanOrEqual(many.iwae[i], exact[i] - 5e-3, "image \(i)")
            XCTAssertEqual(many.iwae[i], exact[i], accuracy: 0.02, "image \(i)")
        }
        // k = 1 is a one-sample estimate of the ELBO: averaged over many draws it matches the
        // analytic-KL negative ELBO (itself averaged), and lies above −log p(x).
        let reps = 2000
        let tiled = Tensor.concat(Array(repeating: x, count: reps), axis: 0)   // image i at rows i, i+3, …
        var r3 = RandomGenerator(seed: 3)
        let single = vae.elboAndIWAE(tiled, samples: 1, rng: &r3)
        for i in 0..<3 {
            let rows = stride(from: i, to: 3 * reps, by: 3)
            let meanIWAE1 = rows.reduce(0.0) { $0 + single.iwae[$1] } / Double(reps)
            let meanELBO = rows.reduce(0.0) { $0 + single.negativeELBO[$1] } / Double(reps)
            XCTAssertEqual(meanIWAE1, meanELBO, accuracy: 0.02 * meanELBO, "image \(i)")
            XCTAssertGreaterThan(meanELBO, exact[i], "image \(i)")
            XCTAssertLessThan(many.iwae[i], meanELBO + 1e-6, "image \(i)")
        }
    }

    // MARK: state

    func testStateRoundTripThroughSafeTensors() throws {
        var c = tinyConfig(likelihood: .gaussianLearned, classes: 3)
        c.seed = 1
        let a = VAE(c)
        var rng = RandomGenerator(seed: 2)
        vaeTrainingStep(a, optimizer: a.makeOptimizer(), batch: randomImages(4), labels: [0, 1, 2, 0], rng: &rng)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("vae-state-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent("vae.safetensors")
        try SafeTensors.write(a.stateTensors().map { (name: $0.0, tensor: $0.1) }, to: url)
        c.seed = 99   // different initial weights
        let b = VAE(c)
        try b.loadState(SafeTensors.read(url).tensors)
        XCTAssertEqual(b.logScale!.scalars, a.logScale!.scalars)
        var ga = RandomGenerator(seed: 3), gb = RandomGenerator(seed: 3)
        XCTAssertEqual(a.sample(count: 6, labels: [0, 1, 2, 0, 1, 2], rng: &ga).scalars,
                       b.sample(count: 6, labels: [0, 1, 2, 0, 1, 2], rng: &gb).scalars)
    }
}
