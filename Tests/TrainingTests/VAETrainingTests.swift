import Foundation
import XCTest
import TensorCore
import DataIO
import Models
import Training
import Figures

/// A temporary folder removed when the test ends.
private func scratchFolder(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "forge-vae-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// 16×16 gray PNGs of two classes (a horizontal or a vertical bar at a random row/column), written to
/// `root/<class>/i.png`, then loaded through DataIO and mapped to [0, 1].
private func generatedSet(at root: String, perClass: Int = 40, seed: UInt64 = 5) throws -> ImageSet {
    var g = RandomGenerator(seed: seed)
    for (k, name) in ["horizontal", "vertical"].enumerated() {
        try FileManager.default.createDirectory(atPath: root + "/" + name, withIntermediateDirectories: true)
        for i in 0..<perClass {
            let at = 2 + g.nextInt(below: 12)
            var pixels = [Float](repeating: 0, count: 256)
            for y in 0..<16 { for x in 0..<16 where abs((k == 0 ? y : x) - at) < 2 { pixels[y * 16 + x] = 1 } }
            try ImageCodec.writePNG(PixelImage(width: 16, height: 16, channels: 1, pixels: pixels), to: root + "/\(name)/\(i).png")
        }
    }
    return VAEData.unitRange(try ImageDataset.load(path: root, size: 16, channels: 1))
}

private func tinyConfig(classes: Int = 0) -> VAEConfig {
    var c = VAEConfig()
    (c.imageSize, c.channels, c.hidden, c.latent, c.batchSize, c.learningRate, c.classCount, c.seed) = (16, 1, 32, 4, 16, 3e-3, classes, 3)
    return c
}

private func quietOptions(_ folder: String, epochs: Int, resume: Bool = false) -> TrainingOptions {
    TrainingOptions(runDirectory: folder, epochs: epochs, 
                    resume: resume, handleInterrupts: false, showProgress: false)
}

final class VAETrainingTests: XCTestCase {
    func testTrainingOnGeneratedFolderLowersTheLossAndWritesEpochFiles() throws {
        let folder = try scratchFolder(self)
        let all = try generatedSet(at: folder + "/data")
        XCTAssertEqual(all.count, 80)
        XCTAssertEqual(all.images.scalars.max(), 1)   // [0, 1] pixels after unitRange
        XCTAssertEqual(all.images.scalars.min(), 0)
        let (train, heldOut) = try VAEData.split(all, heldOutFraction: 0.2, seed: 1)
        XCTAssertEqual([train.count, heldOut.count], [64, 16])

        let task = try VAETrainingTask(vae: VAE(tinyConfig(classes: 2)), data: train, heldOut: heldOut,
                                       samplesDirectory: folder + "/samples")
        var lines: [String] = []
        task.log = { lines.append($0) }
        let summary = try TrainingLoop(task: task, options: quietOptions(folder, epochs: 6), log: { _ in }).run()
        XCTAssertEqual(summary.outcome, .finished)
        XCTAssertEqual(summary.state.step, 6 * 4)

        // The example's two lines per epoch, and falling figures.
        XCTAssertEqual(lines.count, 12)
        XCTAssertTrue(lines[0].hasPrefix("====> Epoch: 1 Average loss: "), lines[0])
        XCTAssertTrue(lines[1].hasPrefix("====> Test set loss: "), lines[1])
        let h = task.history
        XCTAssertEqual(h.map(\.epoch), [1, 2, 3, 4, 5, 6])
        XCTAssertLessThan(h[5].trainNegativeELBO, 0.8 * h[0].trainNegativeELBO, "\(h.map(\.trainNegativeELBO))")
        XCTAssertLessThan(h[5].testNegativeELBO!, 0.8 * h[0].testNegativeELBO!, "\(h.map { $0.testNegativeELBO! })")

        // Grids decode with torchvision's make_grid layout: 8 originals over 8 reconstructions; 8×8
        // samples, a class per row (conditional), its name in a margin at the left.
        let margin = LabelledGrid.marginWidth(rowLabels: train.classNames, tileHeight: 16)
        XCTAssertGreaterThan(margin, 0)
        for e in 1...6 {
            let recon = try ImageCodec.load(path: folder + "/samples/reconstruction_\(e).png")
            XCTAssertEqual([recon.width, recon.height], [8 * 18 + 2, 2 * 18 + 2])
            let samples = try ImageCodec.load(path: folder + "/samples/sample_\(e).png")
            XCTAssertEqual([samples.width, samples.height], [margin + 146, 146])
            for row in 0..<8 {
                let ink = (2 + row * 18..<2 + row * 18 + 16).reduce(0) { n, y in n + (0..<margin).filter { samples[$0, y, 0] < 0.5 }.count }
                XCTAssertGreaterThan(ink, 10, "epoch \(e) row \(row): the class name")
            }
        }
        let csv = try String(contentsOfFile: folder + "/samples/epochs.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.count, 7)
        XCTAssertEqual(csv[0], "epoch,train_neg_elbo,test_neg_elbo,train_s")
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/metrics.csv"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/loss.png"))
    }

    /// Two epochs straight equal one epoch, a checkpoint, and one resumed epoch, bit for bit; and the
    /// checkpoint restores into a fresh model with the same outputs.
    func testCheckpointRoundTripAndExactResume() throws {
        let folder = try scratchFolder(self)
        let (train, heldOut) = try VAEData.split(try generatedSet(at: folder + "/data"), heldOutFraction: 0.2, seed: 1)
        func run(_ dir: String, epochs: Int, resume: Bool) throws -> VAE {
            let vae = VAE(tinyConfig())
            let task = try VAETrainingTask(vae: vae, data: train, heldOut: heldOut, samplesDirectory: dir + "/samples")
            task.log = { _ in }
            _ = try TrainingLoop(task: task, options: quietOptions(dir, epochs: epochs, resume: resume), log: { _ in }).run()
            return vae
        }
        let straight = try run(folder + "/a", epochs: 2, resume: false)
        _ = try run(folder + "/b", epochs: 1, resume: false)
        let resumed = try run(folder + "/b", epochs: 2, resume: true)
        for ((name, a), (_, b)) in zip(straight.stateTensors(), resumed.stateTensors()) {
            XCTAssertEqual(a.scalars, b.scalars, name)
        }
        XCTAssertEqual(try String(contentsOfFile: folder + "/b/samples/epochs.csv", encoding: .utf8).split(separator: "\n").count, 3)

        let saved = try Checkpoint.load(folder + "/a/checkpoint.safetensors", expectedKind: "vae")
        let config = try saved.config(as: VAEConfig.self)
        XCTAssertEqual(config, tinyConfig())
        let fresh = VAE(config)
        try saved.restore(modules: [("vae", fresh)])
        var g1 = RandomGenerator(seed: 9), g2 = RandomGenerator(seed: 9)
        XCTAssertEqual(straight.sample(count: 4, rng: &g1).scalars, fresh.sample(count: 4, rng: &g2).scalars)
        XCTAssertThrowsError(try Checkpoint.load(folder + "/a/checkpoint.safetensors", expectedKind: "gan"))
    }

    func testEvaluatorIWAEIsBelowTheELBO() throws {
        let folder = try scratchFolder(self)
        let set = try generatedSet(at: folder + "/data", perClass: 8)
        let vae = VAE(tinyConfig())
        var rng = RandomGenerator(seed: 1)
        let optimizer = vae.makeOptimizer()
        for _ in 0..<30 { vaeTrainingStep(vae, optimizer: optimizer, batch: set.images, rng: &rng) }
        let elbo = VAEEvaluator.evaluate(vae, on: set, rng: &rng)
        let iw = VAEEvaluator.evaluate(vae, on: set, batchSize: 5, importanceSamples: 200, rng: &rng)
        XCTAssertEqual(elbo.count, 16)
        XCTAssertEqual(elbo.negativeELBO, elbo.reconstruction + elbo.kl, accuracy: 1e-3 * elbo.negativeELBO)
        XCTAssertNil(elbo.iwae)
        XCTAssertLessThan(iw.iwae!, iw.negativeELBO)
        XCTAssertGreaterThan(iw.iwae!, 0)
    }

    func testTaskRefusesMismatchedData() throws {
        let folder = try scratchFolder(self)
        let set = try generatedSet(at: folder + "/data", perClass: 4)
        var c = tinyConfig()
        c.imageSize = 28
        XCTAssertThrowsError(try VAETrainingTask(vae: VAE(c), data: set, heldOut: nil, samplesDirectory: folder))
        XCTAssertThrowsError(try VAETrainingTask(vae: VAE(tinyConfig(classes: 3)), data: set, heldOut: nil, samplesDirectory: folder))
        XCTAssertThrowsError(try VAEData.split(set, heldOutFraction: 1.5, seed: 1))
    }
}
