import Foundation
import XCTest
import TensorCore
import DataIO
import Models
import Training
import Sampling

/// `forge generate audio --resume` checks every clip against the sha256 its manifest records.
final class GenerateAudioIntegrityTests: XCTestCase {
    func testResumeRegeneratesAClipSwappedInFromElsewhere() throws {
        let dir = NSTemporaryDirectory() + "forge-genaudio-sha-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        var c = WaveGANConfig()
        (c.length, c.sampleRate, c.nz, c.ngf, c.ndf, c.batchSize) = (4096, 8000, 8, 2, 2, 4)
        let task = try GANTrainingTask(gan: WaveGAN(c), clips: Tensor.zeros([4, 4096]), samplesDirectory: dir + "/s")
        let ck = dir + "/ck.safetensors"
        try Checkpoint.save(to: ck, kind: task.kind, configJSON: task.configJSON, state: TrainingState(),
                            modules: task.modules, optimizers: task.optimizers, generators: task.generators)
        let out = dir + "/set"
        let options = AudioGenerationOptions(count: 4, seed: 5, batchSize: 3)
        _ = try AudioDatasetGenerator(checkpoint: ck, options: options, outputDirectory: out).run()
        let names = (0..<4).map { String(format: "%06d.wav", $0) }
        let original = try names.map { try FileIO.readBytes(out + "/" + $0) }
        let manifest = try DatasetManifest.read(path: out + "/manifest.csv")
        XCTAssertEqual(manifest.rows.map(\.sha256), original.map { SHA256.hexDigest($0) })

        // Clip 0 in clip 2's place: a valid mono 8 kHz WAV of the right length, but not clip 2.
        try FileIO.writeAtomically(original[0], to: out + "/" + names[2])
        var resume = options
        resume.resume = true
        var warnings: [String] = []
        let report = try AudioDatasetGenerator(checkpoint: ck, options: resume, outputDirectory: out).run(warn: { warnings.append($0) })
        XCTAssertEqual(report.replaced, [names[2]])
        XCTAssertEqual([report.kept, report.written], [3, 1])
        XCTAssertEqual(warnings.count, 1)
        XCTAssertTrue(warnings.first?.contains(names[2]) == true, warnings.first ?? "")
        XCTAssertEqual(try names.map { try FileIO.readBytes(out + "/" + $0) }, original)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), (names + ["manifest.csv"]).sorted())
    }
}
