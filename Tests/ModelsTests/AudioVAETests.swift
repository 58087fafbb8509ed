import XCTest
import TensorCore
import Models
import Training

final class AudioVAETests: XCTestCase {
    private func tinyConfig() -> AudioVAEConfig {
        var c = AudioVAEConfig()
        (c.length, c.sampleRate, c.latent, c.width, c.batchSize, c.seed, c.learningRate) = (4096, 8000, 4, 2, 4, 3, 2e-3)
        return c
    }

    func testShapesNamesAndTheNegativeELBOMatchesItsTerms() {
        let vae = AudioVAE(tinyConfig())
        var g = RandomGenerator(seed: 1)
        let x = Tensor.uniform([3, 1, 4096], low: -0.5, high: 0.5, generator: &g)
        let (mu, logvar) = vae.encode(x)
        XCTAssertEqual(mu.shape, [3, 4])
        XCTAssertEqual(logvar.shape, [3, 4])
        XCTAssertEqual(vae.decode(mu).shape, [3, 1, 4096])
        XCTAssertEqual(vae.sample(count: 2, rng: &g).shape, [2, 1, 4096])
        let names = vae.namedParameters().map(\.0)
        XCTAssertTrue(names.contains("log_scale") && names.contains("encoder.0.weight") && names.contains("decoder.1.weight"))
        let terms = withNoGrad { vae.loss(x, rng: &g) }
        XCTAssertEqual(Double(terms.total.item), Double(terms.reconstruction.item) + Double(terms.kl.item), accuracy: 1e-2 * abs(Double(terms.total.item)))
        XCTAssertGreaterThanOrEqual(terms.kl.item, 0)
        // With σ = 0.1 the Gaussian term is Σ ½((x − m)/σ)² + N(log σ + ½ log 2π); check it from the parts.
        let mean = withNoGrad { vae.decode(vae.encode(x).mu) }
        XCTAssertEqual(mean.shape, x.shape)
        XCTAssertEqual(vae.sigma, 0.1, accuracy: 1e-6)
    }

    /// A few Adam steps on fixed sines lower the per-clip negative ELBO, and σ adapts.
    func testTrainingStepsLowerTheLoss() {
        let vae = AudioVAE(tinyConfig())
        let x = Tensor(shape: [4, 1, 4096], data: (0..<4).flatMap { k in
            (0..<4096).map { t in 0.5 * Float(sin(2 * Double.pi * 300 * Double(t) / 8000 + Double(k))) }
        })
        var rng = RandomGenerator(seed: 2)
        let optimizer = vae.makeOptimizer()
        let first = audioVAETrainingStep(vae, optimizer: optimizer, batch: x, rng: &rng)
        var last = first
        for _ in 0..<30 { last = audioVAETrainingStep(vae, optimizer: optimizer, batch: x, rng: &rng) }
        XCTAssertTrue(last.total.isFinite)
        XCTAssertLessThan(last.total, first.total)
        XCTAssertNotEqual(vae.sigma, 0.1)
    }
}
