import XCTest
import TensorCore
import Models
import Training

/// DiffAugment and the minibatch-std channel inside the DCGAN recipe: their config switches, D's shape,
/// and a training step that uses them (both losses), deterministic from its seeds.
final class GANAugmentTests: XCTestCase {
    private func tinyConfig(loss: GANLoss) -> DCGANConfig {
        var c = DCGANConfig()
        (c.imageSize, c.channels, c.nz, c.ngf, c.ndf, c.classCount, c.batchSize) = (32, 1, 8, 4, 4, 3, 8)
        c.apply(loss == .hinge ? .stable : .dcganConditionalBatchNorm)
        (c.diffAugment, c.minibatchStd) = (true, true)
        return c
    }

    func testConfigSwitchesAreWrittenOnlyWhenOn() throws {
        let plain = try Checkpoint.jsonString(DCGANConfig())
        XCTAssertFalse(plain.contains("diffAugment") || plain.contains("minibatchStd"), plain)
        let on = tinyConfig(loss: .nonSaturating)
        let json = try Checkpoint.jsonString(on)
        XCTAssertTrue(json.contains("\"diffAugment\":true") && json.contains("\"minibatchStd\":true"), json)
        XCTAssertEqual(try JSONDecoder().decode(DCGANConfig.self, from: Data(json.utf8)), on)
    }

    func testMinibatchStdWidensTheLastConvolutionByOneChannel() {
        var off = tinyConfig(loss: .nonSaturating)
        off.minibatchStd = false
        let lastOff = DCGAN(off).discriminator.main.layers.last as! Conv2d
        let lastOn = DCGAN(tinyConfig(loss: .nonSaturating)).discriminator.main.layers.last as! Conv2d
        XCTAssertEqual(lastOn.weight.shape[1], lastOff.weight.shape[1] + 1)
    }

    func testAugmentedStepsTrainAndRepeatExactly() {
        for loss in [GANLoss.nonSaturating, .hinge] {
            func run() -> ([Double], [Float]) {
                let gan = DCGAN(tinyConfig(loss: loss))
                let optimizers = GANOptimizers(for: gan)
                var rng = RandomGenerator(seed: 3)
                let real = Tensor.uniform([8, 1, 32, 32], low: -1, high: 1, generator: &rng)
                var losses: [Double] = []
                for _ in 0..<3 {
                    let r = recipeGANStep(gan, optimizers: optimizers, ema: nil, real: real, labels: [0, 1, 2, 0, 1, 2, 0, 1], rng: &rng)
                    losses += [r.lossD, r.lossG]
                }
                return (losses, Array(gan.generator.parameters[0].buffer.prefix(16)))
            }
            let (lossesA, weightsA) = run(), (lossesB, weightsB) = run()
            XCTAssertTrue(lossesA.allSatisfy(\.isFinite), "\(loss): \(lossesA)")
            XCTAssertEqual(lossesA, lossesB, "\(loss): the augmentation draws come from the step's generator")
            XCTAssertEqual(weightsA, weightsB)
            let initial = Array(DCGAN(tinyConfig(loss: loss)).generator.parameters[0].buffer.prefix(16))
            XCTAssertNotEqual(weightsA, initial, "\(loss): G's gradient passed through D's augmented view")
        }
    }
}
