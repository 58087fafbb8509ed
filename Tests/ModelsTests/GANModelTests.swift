import Foundation
import XCTest
import TensorCore
import Models
import Training

final class GANModelTests: XCTestCase {
    private func config(size: Int, channels: Int = 3, classes: Int = 0) -> DCGANConfig {
        var c = DCGANConfig()
        (c.imageSize, c.channels, c.classCount) = (size, channels, classes)
        return c
    }

    /// The layer names, shapes and parameter counts of pytorch/examples dcgan (and bench/ref_dcgan.py).
    func testArchitectureMatchesTheReference() {
        for (size, gParams, dParams) in [(32, 1_068_928, 663_296),
                                         (64, 3_576_704, 2_765_568)] {
            let gan = DCGAN(config(size: size))
            // torch: sum(p.numel() for p in netG.parameters()) for bias-free convs + BN affine
            XCTAssertEqual(gan.generator.parameterCount, gParams, "G \(size)")
            XCTAssertEqual(gan.discriminator.parameterCount, dParams, "D \(size)")
        }
        let gan = DCGAN(config(size: 64))
        let g = gan.generator.stateTensors().map { "\($0.0) \($0.1.shape)" }
        XCTAssertEqual(Array(g.prefix(6)), ["main.0.weight [100, 512, 4, 4]", "main.1.weight [512]", "main.1.bias [512]",
                                            "main.1.running_mean [512]", "main.1.running_var [512]", "main.1.num_batches_tracked []"])
        XCTAssertEqual(g.last, "main.12.weight [64, 3, 4, 4]")
        let d = gan.discriminator.stateTensors().map { "\($0.0) \($0.1.shape)" }
        XCTAssertEqual(d.first, "main.0.weight [64, 3, 4, 4]")
        XCTAssertEqual(d[1], "main.2.weight [128, 64, 4, 4]")
        XCTAssertEqual(d.last, "main.11.weight [1, 512, 4, 4]")
    }

    func testShapesUnconditionalAndConditional() {
        for size in [32, 64] {
            for classes in [0, 10] {
                var c = config(size: size, channels: 1, classes: classes)
                (c.ngf, c.ndf, c.nz) = (8, 8, 16)
                let gan = DCGAN(c)
                var rng = RandomGenerator(seed: 1)
                let labels = (0..<4).map { $0 % max(1, classes) }
                let images = gan.generator.forward(gan.noise(4, generator: &rng), labels: labels)
                XCTAssertEqual(images.shape, [4, 1, size, size])
                XCTAssertTrue(images.scalars.allSatisfy { $0 >= -1 && $0 <= 1 }, "Tanh output")
                XCTAssertEqual(gan.discriminator.forward(images, labels: labels).shape, [4])
                XCTAssertEqual(gan.generator.labelEmbedding != nil, classes > 0)
                XCTAssertEqual(gan.discriminator.projection?.weight.shape, classes > 0 ? [10, 8 * (size == 64 ? 8 : 4)] : nil)
            }
        }
    }

    func testInitialisationIsDCGANs() {
        let gan = DCGAN(config(size: 64))
        func stats(_ t: Tensor) -> (Double, Double) {
            let v = t.scalars.map(Double.init)
            let mean = v.reduce(0, +) / Double(v.count)
            return (mean, (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(v.count)).squareRoot())
        }
        let (m, s) = stats(gan.generator.main.layers[3].localParameters[0].1)   // ConvTranspose 512→256
        XCTAssertEqual(m, 0, accuracy: 0.001)
        XCTAssertEqual(s, 0.02, accuracy: 0.0005)
        let (bm, bs) = stats(gan.discriminator.main.layers[3].localParameters[0].1)  // BatchNorm weight
        XCTAssertEqual(bm, 1, accuracy: 0.005)
        XCTAssertEqual(bs, 0.02, accuracy: 0.005)
        XCTAssertTrue(gan.discriminator.main.layers[3].localParameters[1].1.scalars.allSatisfy { $0 == 0 })
        // the same seed builds the same networks
        XCTAssertEqual(DCGAN(config(size: 64)).generator.main.layers[0].localParameters[0].1.scalars,
                       gan.generator.main.layers[0].localParameters[0].1.scalars)
    }

    /// The step's scalars agree with recomputing the losses from the logits, D improves on a fixed
    /// pair of batches, and G's step leaves D's weights alone.
    func testTrainStepUpdatesBothNetworksAndReportsConsistentScalars() {
        var c = config(size: 32, channels: 1, classes: 2)
        (c.ngf, c.ndf, c.nz, c.embedDim, c.batchSize) = (8, 8, 16, 4, 16)
        let gan = DCGAN(c)
        let optimizers = GANOptimizers(for: gan)
        var rng = RandomGenerator(seed: 3)
        let real = Tensor.uniform([16, 1, 32, 32], low: -1, high: 1, generator: &rng)
        let labels = (0..<16).map { $0 % 2 }
        let g0 = gan.generator.parameters.map(\.scalars), d0 = gan.discriminator.parameters.map(\.scalars)
        let r = dcganTrainingStep(gan, optimizers: optimizers, real: real, labels: labels, rng: &rng)
        XCTAssertTrue([r.lossD, r.lossG, r.dX, r.dGZ1, r.dGZ2].allSatisfy(\.isFinite))
        XCTAssertTrue((0...1).contains(r.dX) && (0...1).contains(r.dGZ1) && (0...1).contains(r.dGZ2))
        // the non-saturating loss is −mean log D(G(z)) ≥ −log mean D(G(z)) (Jensen)
        XCTAssertGreaterThanOrEqual(r.lossG, -Foundation.log(r.dGZ2) - 1e-6)
        XCTAssertTrue(zip(gan.generator.parameters.map(\.scalars), g0).contains { $0 != $1 }, "G moved")
        XCTAssertTrue(zip(gan.discriminator.parameters.map(\.scalars), d0).contains { $0 != $1 }, "D moved")
        XCTAssertTrue(gan.discriminator.parameters.allSatisfy(\.requiresGrad), "D's parameters train again after the G step")
        XCTAssertTrue(gan.discriminator.parameters.allSatisfy { $0.grad != nil })

        var dxs: [Double] = []
        for _ in 0..<15 { dxs.append(dcganTrainingStep(gan, optimizers: optimizers, real: real, labels: labels, rng: &rng).dX) }
        XCTAssertGreaterThan(dxs.last!, 0.5, "D learns to call the fixed real batch real: \(dxs)")
    }

    /// `trainingFLOPsPerImage` (what `make bench` turns into GFLOP/s) against a count taken from the
    /// layers themselves: each conv's weights times its output pixels (a transposed conv: times its
    /// input pixels), found by running one image through G and D layer by layer; pytorch/examples'
    /// 32×32 DCGAN is 388,923,392 FLOPs per image per step.
    func testTrainingFLOPsAreTheLayersMultiplyAddsCountedByRunningThem() {
        for (size, classes, sn) in [(32, 0, false), (64, 0, false), (32, 10, true)] {
            var c = config(size: size, classes: classes)
            c.spectralNorm = sn
            let gan = DCGAN(c)
            func convFLOPs(_ main: Sequential, _ input: Tensor) -> Double {
                var x = input, flops = 0.0
                for layer in main.layers {
                    let y = layer.forward(x)
                    let pixels: (Tensor) -> Double = { Double($0.shape[2] * $0.shape[3]) }
                    if let conv = layer as? ConvTranspose2d { flops += 2 * Double(conv.weight.count) * pixels(x) }
                    if let conv = layer as? Conv2d { flops += 2 * Double(conv.weight.count) * pixels(y) }
                    if let conv = layer as? SpectralNormConv2d { flops += 2 * Double(conv.weight.count) * pixels(y) }
                    x = y
                }
                return flops
            }
            let zWidth = (gan.generator.main.layers[0] as? ConvTranspose2d)?.weight.shape[0] ?? c.nz  // z, and the label embedding when concatenated
            let g = withNoGrad { convFLOPs(gan.generator.main, Tensor.randn([1, zWidth, 1, 1], generator: &rng)) }
            let d = withNoGrad { convFLOPs(gan.discriminator.main, Tensor.randn([1, c.channels, size, size], generator: &rng)) }
            let projection = classes > 0 ? 2.0 * Double(c.ndf * (1 << (c.stages - 1))) : 0
            XCTAssertEqual(gan.generatorForwardFLOPs, g, "\(size) G")
            XCTAssertEqual(gan.discriminatorForwardFLOPs, d + projection, "\(size) D")
            XCTAssertEqual(gan.trainingFLOPsPerImage, 8 * (d + projection) + 3 * g)
            if size == 32 && classes == 0 { XCTAssertEqual(gan.trainingFLOPsPerImage, 388_923_392) }
        }
    }
    private var rng = RandomGenerator(seed: 4)
}
