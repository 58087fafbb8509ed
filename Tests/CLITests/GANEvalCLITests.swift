import XCTest
import Foundation
import DataIO

/// Small folders with the defaults, and `forge eval gan` end to end, on images that the tiny legacy
/// GAN fixture (10 Fashion-MNIST classes, 32×32×1) draws through `forge generate images`.
final class GANEvalCLITests: CLITestCase {
    private var legacyGAN: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TrainingTests/Fixtures/legacy/gan.safetensors").path
    }

    /// A class-folder image set of `count` images (count / 10 per class) drawn by the fixture.
    private func imageFolder(_ path: String, count: Int, seed: Int) throws {
        let (status, _, err) = try run(["generate", "images", "--checkpoint", legacyGAN, "--count", "\(count)", "--out", path, "--seed", "\(seed)"])
        XCTAssertEqual(status, 0, err)
    }

    /// 20 images and the default batch of 64: one batch of 20 per step and a warning, not an error.
    func testAFolderSmallerThanOneBatchTrainsWithTheDefaults() throws {
        let dir = folder()
        try imageFolder(dir + "/small", count: 20, seed: 1)
        let (status, out, err) = try run(["train", "gan", "--data", dir + "/small", "--ngf", "4", "--ndf", "4", "--steps", "2",
                                          "--no-tensorboard", "--out", dir + "/run"])
        XCTAssertEqual(status, 0, out + err)
        XCTAssertTrue(err.contains("warning: 20 images are fewer than one batch of 64: training with one batch of 20"), err)
        XCTAssertTrue(out.contains("finished at step 2"), out)
        let config = try String(contentsOfFile: dir + "/run/config.json", encoding: .utf8)
        XCTAssertTrue(config.contains("\"batchSize\" : 20") || config.contains("\"batchSize\":20"), config)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/checkpoint.safetensors"))
        // The classifier too.
        let (s2, out2, err2) = try run(["train", "classifier", "--data", dir + "/small", "--epochs", "1", "--no-tensorboard", "--out", dir + "/cls"])
        XCTAssertEqual(s2, 0, out2 + err2)
        XCTAssertTrue(err2.contains("20 images are fewer than one batch of 64"), err2)
    }

    /// `forge eval gan` generates, evaluates and writes the per-class table as CSV; it says which
    /// features the measures use.
    func testEvalGANWritesTheTable() throws {
        let dir = folder()
        try imageFolder(dir + "/real/train", count: 100, seed: 1)
        try imageFolder(dir + "/real/test", count: 60, seed: 2)
        let (status, out, err) = try run(["eval", "gan", "--checkpoint", legacyGAN, "--data", dir + "/real/train", "--test", dir + "/real/test",
                                          "--per-class", "6", "--epochs", "1", "--out", dir + "/eval"])
        XCTAssertEqual(status, 0, out + err)
        XCTAssertTrue(out.contains("Kynkäänniemi") && out.contains("real-trained"), out)
        XCTAssertTrue(out.contains("ratio to real"), out)
        let csv = try String(contentsOfFile: dir + "/eval/results.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.count, 12, "header + all + 10 classes")
        XCTAssertTrue(csv[0].hasPrefix("scope,real_trained_accuracy,cas,cas_ratio,precision,recall,frechet_distance"), String(csv[0]))
        XCTAssertTrue(csv[1].hasPrefix("all,"))
        XCTAssertTrue(csv[2].hasPrefix("Ankle boot,"), String(csv[2]))  // the real folder's classes, sorted by name
        // 6 generated and 6 real test images per class: every feature measure is a number (the CAS
        // ratio may be 0/0 for a class that a 1-epoch classifier on 60 images never predicts).
        for line in csv[2...] {
            let fields = line.split(separator: ",")
            XCTAssertEqual(fields.count, 12, String(line))
            XCTAssertFalse(fields[4...].contains("nan"), String(line))
            XCTAssertEqual(fields[10], "6", String(line))
            XCTAssertEqual(fields[11], "6", String(line))
            let recall = Double(fields[5])!
            XCTAssertTrue((0...1).contains(recall), String(line))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/eval/synthetic").filter { !$0.hasSuffix(".csv") }.count, 10)
        // The grid: a row of 6 per class, the class names in a left margin beside the 6 · 34 + 2 pixels of tiles.
        let grid = try ImageCodec.load(path: dir + "/eval/grid.png")
        XCTAssertEqual(grid.height, 10 * 34 + 2)
        XCTAssertGreaterThan(grid.width, 6 * 34 + 2 + 40, "a margin wide enough for \"T-shirt/top\"")
        // Refused: fewer images per class than k + 1.
        let (s2, _, e2) = try run(["eval", "gan", "--checkpoint", legacyGAN, "--data", dir + "/real/train", "--per-class", "3", "--out", dir + "/eval2"])
        XCTAssertEqual(s2, 2)
        XCTAssertTrue(e2.contains("--per-class"), e2)
    }
}
