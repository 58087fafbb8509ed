import XCTest
import Foundation
import TensorCore
import Models
import Training

/// The VAE's sound case (`conv1d`): the same `VAE`, loss and training step as for images.
final class VAESoundTests: XCTestCase {
    private func tinyConfig() -> VAEConfig {
        var c = VAEConfig.audio()
        (c.length, c.sampleRate, c.latent, c.hidden, c.batchSize, c.seed, c.learningRate) = (4096, 8000, 4, 2, 4, 3, 2e-3)
        return c
    }

    func testShapesNamesAndTheNegativeELBOMatchesItsTerms() {
        let vae = VAE(tinyConfig())
        var g = RandomGenerator(seed: 1)
        let x = Tensor.uniform([3, 1, 4096], low: -0.5, high: 0.5, generator: &g)
        let (mu, logvar) = vae.encode(x)
        XCTAssertEqual(mu.shape, [3, 4])
        XCTAssertEqual(logvar.shape, [3, 4])
        XCTAssertEqual(vae.decode(mu).shape, [3, 1, 4096])
        XCTAssertEqual(vae.sample(count: 2, rng: &g).shape, [2, 1, 4096])
        XCTAssertEqual(vae.logScale?.shape, [1], "one σ for a mono clip")
        let names = vae.namedParameters().map(\.0)
        XCTAssertTrue(names.contains("log_scale") && names.contains("encoder.0.weight") && names.contains("decoder.1.weight"))
        let terms = withNoGrad { vae.loss(x, rng: &g) }
        XCTAssertEqual(Double(terms.total.item), Double(terms.reconstruction.item) + Double(terms.kl.item), accuracy: 1e-2 * abs(Double(terms.total.item)))
        XCTAssertGreaterThanOrEqual(terms.kl.item, 0)
        // With σ = 0.1 the Gaussian term is Σ ½((x − m)/σ)² + N(log σ + ½ log 2π); check it from the parts.
        let mean = withNoGrad { vae.decode(vae.encode(x).mu) }
        XCTAssertEqual(mean.shape, x.shape)
        XCTAssertEqual(vae.sigma!, 0.1, accuracy: 1e-6)
        // The learned-σ Gaussian: Σ ½((x − m)/σ)² + N(log σ + ½ log 2π) with σ = 0.1, from the parts in Double.
        let xs = x.scalars, ms = mean.scalars
        var sq = 0.0
        for i in 0..<xs.count { let d = Double(xs[i]) - Double(ms[i]); sq += d * d }
        let expected = sq / (2 * 0.01) + Double(xs.count) * (Foundation.log(0.1) + 0.5 * Foundation.log(2 * Double.pi))
        let nll = withNoGrad { vae.reconstructionNLL(mean, x) }
        XCTAssertEqual(Double(nll.item), expected, accuracy: 1e-4 * abs(expected))
    }

    /// A few Adam steps on fixed sines lower the per-clip negative ELBO, and σ adapts.
    func testTrainingStepsLowerTheLoss() {
        let vae = VAE(tinyConfig())
        let x = Tensor(shape: [4, 1, 4096], data: (0..<4).flatMap { k in
            (0..<4096).map { t in 0.5 * Float(sin(2 * Double.pi * 300 * Double(t) / 8000 + Double(k))) }
        })
        var rng = RandomGenerator(seed: 2)
        let optimizer = vae.makeOptimizer()
        let first = vaeTrainingStep(vae, optimizer: optimizer, batch: x, rng: &rng)
        var last = first
        for _ in 0..<30 { last = vaeTrainingStep(vae, optimizer: optimizer, batch: x, rng: &rng) }
        XCTAssertTrue(last.total.isFinite)
        XCTAssertLessThan(last.total, first.total)
        XCTAssertNotEqual(vae.sigma!, 0.1)
    }

    /// A configuration of the audio VAE from before it became the VAE's 1-D case loads as that case,
    /// and a sound configuration round-trips through JSON.
    func testLegacyAudioConfigurationDecodesAsConv1d() throws {
        let old = #"{"length":8192,"sampleRate":8000,"latent":4,"width":2,"kernelSize":25,"learningRate":0.001,"batchSize":4,"seed":1}"#
        let c = try JSONDecoder().decode(VAEConfig.self, from: Data(old.utf8))
        XCTAssertEqual(c.arch, .conv1d)
        XCTAssertEqual([c.length, c.sampleRate, c.latent, c.hidden, c.batchSize, c.channels], [8192, 8000, 4, 2, 4, 1])
        XCTAssertEqual(c.likelihood, .gaussianLearned)
        XCTAssertNil(c.problem)
        let again = try JSONDecoder().decode(VAEConfig.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(again, c)
        // an image configuration without the sound keys stays an image one
        let image = try JSONDecoder().decode(VAEConfig.self, from: Data(#"{"arch":"mlp","imageSize":28,"latent":2}"#.utf8))
        XCTAssertEqual(image.arch, .mlp)
        XCTAssertEqual(image.latent, 2)
        XCTAssertEqual(image.hidden, 400)
    }
}
