import Foundation
import XCTest
import TensorCore
import DataIO
import Models
import Training
import Figures

final class GANTrainingTests: XCTestCase {
    private func loadFolder(_ dir: String) throws -> ImageSet {
        try makeImageFolder(at: dir + "/data")
        return try ImageDataset.load(path: dir + "/data", size: 32, channels: 1, warn: { _ in })
    }

    func testTinyConditionalGANTrainsWithFiniteLossesAndWritesItsFiles() throws {
        let dir = try temporaryFolder(self)
        let data = try loadFolder(dir)
        XCTAssertEqual(data.classNames, ["bar", "disc"])
        let task = try GANTrainingTask(gan: DCGAN(tinyConfig()), data: data, samplesDirectory: dir + "/samples")
        XCTAssertEqual(task.stepsPerEpoch, 4)
        let summary = try TrainingLoop(task: task, options: quietOptions(dir, epochs: 2), log: { _ in }).run()
        XCTAssertEqual(summary.state.step, 8)
        for name in task.metricNames {
            let v = try XCTUnwrap(summary.lastMetrics[name])
            XCTAssertTrue(v.isFinite, "\(name) = \(v)")
        }
        XCTAssertGreaterThan(summary.lastMetrics["loss_d"]!, 0)
        XCTAssertTrue((0...1).contains(summary.lastMetrics["d_x"]!))

        // a grid per epoch: 2 classes × 8 columns of 32-pixel images with 2-pixel padding
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/loss.png"))
        for file in ["epoch_001.png", "epoch_002.png", "latest.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/samples/" + file), file)
        }
        let grid = try ImageCodec.load(path: dir + "/samples/epoch_002.png")
        // …with the class names in a left margin: "DISC" at scale 1, 4 pixels either side
        let margin = LabelledGrid.marginWidth(rowLabels: data.classNames, tileHeight: 32)
        XCTAssertEqual(margin, 4 * 6 + 8)
        XCTAssertEqual([grid.width, grid.height, grid.channels], [margin + 8 * 34 + 2, 2 * 34 + 2, 1])
        for row in 0..<2 {   // the label's ink on the white margin
            let ink = (2 + row * 34..<2 + row * 34 + 32).reduce(0) { n, y in n + (0..<margin).filter { grid[$0, y, 0] < 0.5 }.count }
            XCTAssertGreaterThan(ink, 20, "row \(row) label")
        }
        let csv = try String(contentsOfFile: dir + "/metrics.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.first, "step,epoch,wall_s,items_per_s,lr,loss_d,loss_g,d_x,d_g_z1,d_g_z2")
        XCTAssertEqual(csv.count, 9)

        // the checkpoint: PyTorch-style names, both optimizers, the noise RNG, the class names
        let saved = try Checkpoint.load(dir + "/checkpoint.safetensors", expectedKind: "gan")
        let names = Set(saved.tensors.keys)
        for name in ["generator.main.0.weight", "generator.main.1.running_mean", "generator.label_embedding.weight",
                     "discriminator.main.0.weight", "discriminator.main.3.num_batches_tracked", "discriminator.projection.weight",
                     "optimizer.generator.state.0.exp_avg", "optimizer.discriminator.state.0.exp_avg_sq", "rng.noise"] {
            XCTAssertTrue(names.contains(name), name)
        }
        XCTAssertEqual(try saved.stringArray("forge.classes"), ["bar", "disc"])
        XCTAssertEqual(try saved.config(as: DCGANConfig.self), tinyConfig())
    }

    /// The run that stops after epoch 2 and resumes to 4 ends with the same bits as the run that
    /// goes straight to 4: weights, BatchNorm buffers, Adam state and RNG.
    func testResumeAfterTwoEpochsEqualsStraightRunToFour() throws {
        let dir = try temporaryFolder(self)
        let data = try loadFolder(dir)
        let straightDir = dir + "/straight", splitDir = dir + "/split"

        let straight = try GANTrainingTask(gan: DCGAN(tinyConfig()), data: data, samplesDirectory: straightDir + "/samples")
        _ = try TrainingLoop(task: straight, options: quietOptions(straightDir, epochs: 4), log: { _ in }).run()

        let firstHalf = try GANTrainingTask(gan: DCGAN(tinyConfig()), data: data, samplesDirectory: splitDir + "/samples")
        _ = try TrainingLoop(task: firstHalf, options: quietOptions(splitDir, epochs: 2), log: { _ in }).run()
        XCTAssertEqual(try Checkpoint.load(splitDir + "/checkpoint.safetensors").state.epoch, 2)
        let secondHalf = try GANTrainingTask(gan: DCGAN(tinyConfig()), data: data, samplesDirectory: splitDir + "/samples")
        let summary = try TrainingLoop(task: secondHalf, options: quietOptions(splitDir, epochs: 4, resume: true), log: { _ in }).run()
        XCTAssertEqual(summary.state.step, 16)

        let a = try SafeTensors.read(URL(fileURLWithPath: straightDir + "/checkpoint.safetensors"))
        let b = try SafeTensors.read(URL(fileURLWithPath: splitDir + "/checkpoint.safetensors"))
        XCTAssertEqual(a.names, b.names)
        XCTAssertGreaterThan(a.names.count, 50)
        for name in a.names {
            XCTAssertEqual(a.tensors[name]!.scalars, b.tensors[name]!.scalars, "\(name) differs after resume")
        }
        XCTAssertEqual(try a.int64Array("rng.noise"), try b.int64Array("rng.noise"))
        // and the weights really moved during training
        let initial = DCGAN(tinyConfig())
        XCTAssertNotEqual(a.tensors["generator.main.0.weight"]!.scalars, initial.generator.main.layers[0].localParameters[0].1.scalars)
        // the progress grid of epoch 4 is the same picture
        XCTAssertEqual(try FileIO.readBytes(straightDir + "/samples/epoch_004.png"), try FileIO.readBytes(splitDir + "/samples/epoch_004.png"))
    }

    func testTaskRefusesMismatchedData() throws {
        let dir = try temporaryFolder(self)
        let data = try loadFolder(dir)
        XCTAssertThrowsError(try GANTrainingTask(gan: DCGAN(tinyConfig(classes: 3)), data: data, samplesDirectory: dir)) {
            XCTAssertTrue("\($0)".contains("3 classes"), "\($0)")
        }
        var wide = tinyConfig()
        wide.channels = 3
        XCTAssertThrowsError(try GANTrainingTask(gan: DCGAN(wide), data: data, samplesDirectory: dir)) {
            XCTAssertTrue("\($0)".contains("model wants 3×32×32"), "\($0)")
        }
    }

    func testCorruptCheckpointGivesAClearError() throws {
        let dir = try temporaryFolder(self)
        let data = try loadFolder(dir)
        let task = try GANTrainingTask(gan: DCGAN(tinyConfig()), data: data, samplesDirectory: dir + "/samples")
        _ = try TrainingLoop(task: task, options: quietOptions(dir, epochs: 1), log: { _ in }).run()
        let path = dir + "/checkpoint.safetensors"
        let bytes = try FileIO.readBytes(path)

        // truncated (a torn copy)
        try FileIO.writeAtomically(Array(bytes.prefix(bytes.count / 2)), to: dir + "/torn.safetensors")
        XCTAssertThrowsError(try Checkpoint.load(dir + "/torn.safetensors", expectedKind: "gan")) { error in
            XCTAssertTrue(error is CheckpointError)
            XCTAssertTrue("\(error)".contains("torn.safetensors: cannot be read (corrupt or not a safetensors file)"), "\(error)")
        }
        // garbage
        try FileIO.writeAtomically(Array("not a checkpoint at all".utf8), to: dir + "/junk.safetensors")
        XCTAssertThrowsError(try Checkpoint.load(dir + "/junk.safetensors")) {
            XCTAssertTrue("\($0)".contains("junk.safetensors: cannot be read"), "\($0)")
        }
        // missing
        XCTAssertThrowsError(try Checkpoint.load(dir + "/none.safetensors")) {
            XCTAssertTrue("\($0)".contains("none.safetensors: no such file"), "\($0)")
        }
        // a valid file from a wider model: the error names the tensors and shapes
        var wider = tinyConfig()
        wider.ngf = 8
        let saved = try Checkpoint.load(path, expectedKind: "gan")
        XCTAssertThrowsError(try saved.restore(modules: [("generator", DCGAN(wider).generator)])) {
            XCTAssertTrue("\($0)".contains("generator.main.0.weight has shape [12, 16, 4, 4] in the file, the model needs [12, 32, 4, 4]"), "\($0)")
        }
        // a module missing from the file
        XCTAssertThrowsError(try saved.restore(modules: [("critic", DCGAN(tinyConfig()).discriminator)])) {
            XCTAssertTrue("\($0)".contains("no tensors for module \"critic\""), "\($0)")
        }
    }
}
