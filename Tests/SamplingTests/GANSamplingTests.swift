import Foundation
import XCTest
import TensorCore
import DataIO
import Models
import Training
import Figures
import Metrics
import Sampling

final class GANSamplingTests: XCTestCase {
    private func folder() throws -> String {
        let path = NSTemporaryDirectory() + "forge-sampling-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private func tinyConfig(classes: Int) -> DCGANConfig {
        var c = DCGANConfig()
        (c.imageSize, c.channels, c.nz, c.ngf, c.ndf, c.embedDim, c.classCount, c.batchSize, c.seed) = (32, 3, 8, 4, 4, 4, classes, 8, 11)
        return c
    }

    /// Trains a tiny GAN for one epoch on random images and returns it with its checkpoint path.
    private func trainedCheckpoint(classes: Int) throws -> (GANTrainingTask<DCGAN>, String) {
        let dir = try folder()
        var g = RandomGenerator(seed: 2)
        let images = Tensor.uniform([24, 3, 32, 32], low: -1, high: 1, generator: &g)
        let labels = classes > 0 ? (0..<24).map { $0 % classes } : []
        let names = (0..<classes).map { ["cat", "dog", "emu"][$0] }
        let task = try GANTrainingTask(gan: DCGAN(tinyConfig(classes: classes)),
                                       data: ImageSet(images: images, labels: labels, classNames: names),
                                       samplesDirectory: dir + "/samples")
        let options = TrainingOptions(runDirectory: dir, epochs: 1, 
                                      handleInterrupts: false, showProgress: false)
        _ = try TrainingLoop(task: task, options: options, log: { _ in }).run()
        return (task, dir + "/checkpoint.safetensors")
    }

    /// With an EMA (the stable recipe), the sampler draws from the averaged generator, exactly as
    /// the training task's grids do, not from the last G.
    func testSamplerUsesTheEMAGeneratorOfTheStableRecipe() throws {
        let dir = try folder()
        var config = tinyConfig(classes: 3)
        config.apply(.stable)
        var g = RandomGenerator(seed: 2)
        let images = Tensor.uniform([24, 3, 32, 32], low: -1, high: 1, generator: &g)
        let task = try GANTrainingTask(gan: DCGAN(config), data: ImageSet(images: images, labels: (0..<24).map { $0 % 3 }, classNames: ["cat", "dog", "emu"]),
                                       samplesDirectory: dir + "/samples")
        let options = TrainingOptions(runDirectory: dir, epochs: 1, 
                                      handleInterrupts: false, showProgress: false)
        _ = try TrainingLoop(task: task, options: options, log: { _ in }).run()
        let ema = try XCTUnwrap(task.ema)
        let sampler = try GANSampler(checkpoint: dir + "/checkpoint.safetensors")
        var rng = RandomGenerator(seed: 42)
        let z = task.gan.noise(16, generator: &rng), labels = (0..<16).map { ($0 / 8) % 3 }
        XCTAssertTrue(try sampler.sample(count: 16, seed: 42).scalars == ema.generate(z, labels: labels).scalars)
        XCTAssertFalse(try sampler.sample(count: 16, seed: 42).scalars == task.gan.generate(z, labels: labels).scalars)
    }

    func testCheckpointRoundTripGivesIdenticalSamplesForTheSameSeed() throws {
        let (task, path) = try trainedCheckpoint(classes: 3)
        let sampler = try GANSampler(checkpoint: path)
        XCTAssertEqual(sampler.classNames, ["cat", "dog", "emu"])
        XCTAssertEqual(sampler.config, task.gan.config)

        let fromFile = try sampler.sample(count: 16, seed: 42)
        var rng = RandomGenerator(seed: 42)
        let expected = task.gan.generate(task.gan.noise(16, generator: &rng), labels: (0..<16).map { ($0 / 8) % 3 })
        XCTAssertEqual(fromFile.shape, [16, 3, 32, 32])
        XCTAssertTrue(fromFile.scalars == expected.scalars, "the reloaded generator must reproduce the trained one exactly")
        XCTAssertTrue(fromFile.scalars.allSatisfy { $0 >= -1 && $0 <= 1 })

        // same seed → same images (also from a second load); another seed → other images
        XCTAssertTrue(try GANSampler(checkpoint: path).sample(count: 16, seed: 42).scalars == fromFile.scalars)
        XCTAssertFalse(try sampler.sample(count: 16, seed: 43).scalars == fromFile.scalars)
        // evaluation-mode BatchNorm: an image does not depend on the batch it is drawn with
        // (up to float rounding: GEMM blocking depends on the batch size)
        let first4 = try sampler.sample(count: 4, seed: 42)
        let diff = zip(first4.scalars, fromFile.scalars.prefix(4 * 3 * 32 * 32)).map { abs($0 - $1) }.max()!
        XCTAssertLessThan(diff, 1e-5)
    }

    func testClassSelectionAndErrors() throws {
        let (_, path) = try trainedCheckpoint(classes: 3)
        let sampler = try GANSampler(checkpoint: path)
        XCTAssertEqual(try sampler.classIndex("dog"), 1)
        XCTAssertEqual(try sampler.classIndex("EMU"), 2)
        XCTAssertEqual(try sampler.classIndex("0"), 0)
        XCTAssertThrowsError(try sampler.classIndex("horse")) {
            XCTAssertEqual("\($0)", "unknown class \"horse\"; the classes are: cat, dog, emu")
        }
        XCTAssertEqual(sampler.labels(count: 5, classIndex: 2), [2, 2, 2, 2, 2])
        XCTAssertEqual(sampler.labels(count: 20, classIndex: nil, columns: 4), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 0, 0, 1, 1, 1, 1])
        // a class changes the picture for the same z
        XCTAssertNotEqual(try sampler.sample(count: 2, seed: 1, classIndex: 0).scalars,
                          try sampler.sample(count: 2, seed: 1, classIndex: 1).scalars)
    }

    func testUnconditionalCheckpointHasNoClasses() throws {
        let (_, path) = try trainedCheckpoint(classes: 0)
        let sampler = try GANSampler(checkpoint: path)
        XCTAssertEqual(sampler.classNames, [])
        XCTAssertThrowsError(try sampler.classIndex("cat")) { XCTAssertTrue("\($0)".contains("unconditional")) }
    }

    func testInterpolationStripEndsAtBothSeeds() throws {
        let (_, path) = try trainedCheckpoint(classes: 3)
        let sampler = try GANSampler(checkpoint: path)
        let strip = try sampler.interpolate(seedA: 3, seedB: 7, steps: 5, classIndex: 2)
        XCTAssertEqual(strip.shape, [5, 3, 32, 32])
        let a = try sampler.sample(count: 1, seed: 3, classIndex: 2).scalars
        let b = try sampler.sample(count: 1, seed: 7, classIndex: 2).scalars
        let n = 3 * 32 * 32
        for (x, y) in zip(strip.scalars.prefix(n), a) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        for (x, y) in zip(strip.scalars.suffix(n), b) { XCTAssertEqual(x, y, accuracy: 1e-5) }
        XCTAssertThrowsError(try sampler.interpolate(seedA: 1, seedB: 2, steps: 1))
    }

    func testWritesAGridAndOneFilePerImage() throws {
        let (_, path) = try trainedCheckpoint(classes: 3)
        let dir = try folder()
        let sampler = try GANSampler(checkpoint: path)
        let images = try sampler.sample(count: 6, seed: 1)
        try sampler.writeGrid(images, columns: 3, to: dir + "/deep/grid.png")
        let grid = try ImageCodec.load(path: dir + "/deep/grid.png")
        XCTAssertEqual([grid.width, grid.height, grid.channels], [3 * 34 + 2, 2 * 34 + 2, 3])
        let paths = try sampler.writeImages(images, to: dir + "/each")
        XCTAssertEqual(paths.count, 6)
        let one = try ImageCodec.load(path: paths[5])
        XCTAssertEqual([one.width, one.height, one.channels], [32, 32, 3])
        // the PNG holds the image (8-bit rounding aside)
        let expected = images[5].scalars
        XCTAssertEqual(one[10, 20, 1], (expected[1 * 1024 + 20 * 32 + 10] + 1) / 2, accuracy: 1 / 255)
    }

    func testSamplerRefusesOtherCheckpoints() throws {
        let dir = try folder()
        try Checkpoint.save(to: dir + "/checkpoint.safetensors", kind: "vae", configJSON: "{}", state: TrainingState(), modules: [("m", Linear(2, 2))])
        XCTAssertThrowsError(try GANSampler(checkpoint: dir + "/checkpoint.safetensors")) {
            XCTAssertTrue("\($0)".contains("holds a \"vae\" model, not a \"gan\" one"), "\($0)")
        }
        try FileIO.writeAtomically([1, 2, 3], to: dir + "/bad.safetensors")
        XCTAssertThrowsError(try GANSampler(checkpoint: dir + "/bad.safetensors")) {
            XCTAssertTrue("\($0)".contains("cannot be read"), "\($0)")
        }
    }
}
