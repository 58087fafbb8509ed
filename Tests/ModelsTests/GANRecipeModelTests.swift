import XCTest
import TensorCore
import Models
import Training

/// The recipe switches of DCGANConfig (issue 15): the conditional-BatchNorm generator and the
/// spectrally normalised discriminator.
final class GANRecipeModelTests: XCTestCase {
    override class func setUp() { BLAS.configure(allowReexec: false) }

    private func config(_ recipe: GANRecipe, classes: Int = 3) -> DCGANConfig {
        var c = DCGANConfig()
        (c.imageSize, c.channels, c.nz, c.ngf, c.ndf, c.classCount, c.batchSize) = (32, 1, 8, 4, 4, classes, 4)
        c.apply(recipe)
        return c
    }

    func testConditionalBatchNormGeneratorTakesZAloneAndTheClassThroughItsNorms() {
        let gan = DCGAN(config(.dcganConditionalBatchNorm))
        let g = gan.generator
        XCTAssertNil(g.labelEmbedding)
        XCTAssertEqual(g.conditionalNorms.count, 3)   // after each transposed conv but the last (32×32: 3 stages)
        XCTAssertEqual(g.main.layers[0].localParameters[0].1.shape, [8, 16, 4, 4], "the first layer sees z alone")
        XCTAssertFalse(g.main.layers.contains { $0 is BatchNorm2d })
        let names = g.namedParameters().map(\.0)
        XCTAssertTrue(names.contains("conditional_norms.0.weight") && names.contains("conditional_norms.2.bias"), "\(names)")
        XCTAssertEqual(g.conditionalNorms[0].weight.shape, [3, 16])
        // the same z with another class gives another image; the class tables start at γ = 1, β = 0, so move one
        for i in 0..<g.conditionalNorms[0].bias.count where i >= 16 { g.conditionalNorms[0].bias.mutablePointer[i] = 0.5 }
        var rng = RandomGenerator(seed: 3)
        let z = gan.noise(1, generator: &rng)
        let z4 = Tensor.concat([z, z, z, z], axis: 0)
        g.train()
        let warm = withNoGrad { g.forward(Tensor.randn([16, 8], generator: &rng), labels: (0..<16).map { $0 % 3 }) }  // running stats
        XCTAssertEqual(warm.shape, [16, 1, 32, 32])
        let images = gan.generate(z4, labels: [0, 0, 1, 2])
        let a = images.slice(axis: 0, 0..<1).scalars, b = images.slice(axis: 0, 1..<2).scalars, c = images.slice(axis: 0, 2..<3).scalars
        XCTAssertEqual(a, b, "eval mode: an image depends on its own z and class only")
        XCTAssertNotEqual(a, c)
    }

    func testUnconditionalConfigIgnoresTheConditioningSwitch() {
        let gan = DCGAN(config(.dcganConditionalBatchNorm, classes: 0))
        XCTAssertTrue(gan.generator.conditionalNorms.isEmpty)
        XCTAssertTrue(gan.generator.main.layers.contains { $0 is BatchNorm2d })
    }

    func testSpectralNormDiscriminatorHasNoBatchNormAndBiasedSNConvs() {
        let gan = DCGAN(config(.stable))
        let d = gan.discriminator
        XCTAssertFalse(d.main.layers.contains { $0 is BatchNorm2d })
        let convs = d.main.layers.compactMap { $0 as? SpectralNormConv2d }
        XCTAssertEqual(convs.count, 4)
        XCTAssertTrue(convs.allSatisfy { $0.bias != nil })
        XCTAssertNil(d.projection)
        XCTAssertEqual(d.spectralProjection?.weight.shape, [3, 16])
        let logits = d.forward(Tensor.randn([4, 1, 32, 32]), labels: [0, 1, 2, 0])
        XCTAssertEqual(logits.shape, [4])
        XCTAssertTrue(logits.scalars.allSatisfy(\.isFinite))
        XCTAssertEqual(GANOptimizers(for: gan).discriminator.learningRate, 4e-4)
        XCTAssertEqual(GANOptimizers(for: gan).generator.learningRate, 1e-4)
    }
}
