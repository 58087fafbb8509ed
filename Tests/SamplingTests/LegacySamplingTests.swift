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
        try samePNG({ try GANSampler.writeGrid(try sampler.sample(count: 8, seed: 3), columns: 8, to: $0) }, as: "gan-seed3.png")
    }

    func testOldVAECheckpointSamplesTheSameGrid() throws {
        let sampler = try VAESampler(checkpoint: legacy.appendingPathComponent("vae.safetensors").path)
        try samePNG({ try VAESampler.writeGrid(try sampler.sample(count: 8, seed: 3), columns: 8, to: $0) }, as: "vae-seed3.png")
    }
}
