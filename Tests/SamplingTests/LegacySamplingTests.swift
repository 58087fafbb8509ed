import XCTest
import Foundation
import TensorCore
import DataIO
import Models
import Sampling

/// A GAN and a VAE checkpoint written by the code before the one training loop (Tests/TrainingTests/
/// Fixtures/legacy, see its README) load and sample byte for byte what that code wrote.
final class LegacySamplingTests: XCTestCase {
    private let legacy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("TrainingTests/Fixtures/legacy")

    private func samePNG(_ write: (String) throws -> Void, as expected: String) throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("forge-legacy-\(UUID().uuidString).png").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try write(path)
        XCTAssertEqual(try FileIO.readBytes(path), try FileIO.readBytes(legacy.appendingPathComponent(expected).path))
    }

    func testOldGANCheckpointSamplesTheSameGrid() throws {
        let sampler = try GANSampler(checkpoint: legacy.appendingPathComponent("gan.safetensors").path)
        try samePNG({ try sampler.writeGrid(try sampler.sample(count: 8, seed: 3), columns: 8, to: $0) }, as: "gan-seed3.png")
    }

    func testOldVAECheckpointSamplesTheSameGrid() throws {
        let sampler = try VAESampler(checkpoint: legacy.appendingPathComponent("vae.safetensors").path)
        try samePNG({ try sampler.writeGrid(try sampler.sample(count: 8, seed: 3), columns: 8, to: $0) }, as: "vae-seed3.png")
    }

    /// An audio VAE checkpoint from before the audio VAE became the VAE's 1-D case (`conv1d`) loads
    /// through the one `VAE` and decodes the clips the old `AudioVAE` wrote. Compared as 16-bit
    /// samples within 2 steps: the fixture was written with OpenBLAS's default kernels, and `make
    /// test` pins another core type whose sums can round a sample the other way.
    func testOldAudioVAECheckpointSamplesTheSameClips() throws {
        let source = try openAudioClipSource(checkpoint: legacy.appendingPathComponent("audiovae.safetensors").path)
        XCTAssertEqual(source.modelKind, "audiovae")
        let clips = try source.sample(count: 2, seed: 3)
        for (k, clip) in clips.enumerated() {
            let old = try AudioIO.read(path: legacy.appendingPathComponent("audiovae-seed3_000\(k).wav").path)
            XCTAssertEqual(old.samples.count, clip.samples.count)
            let worst = zip(old.samples, clip.samples).map { abs(Double($0) - Double($1)) * 32768 }.max() ?? .infinity
            XCTAssertLessThanOrEqual(worst, 2, "clip \(k) differs by \(worst) 16-bit steps")
        }
    }
}
