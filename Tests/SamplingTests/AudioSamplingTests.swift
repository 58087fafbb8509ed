import Foundation
import XCTest
import TensorCore
import DataIO
import Models
import Training
import Figures
import Metrics
import Sampling

final class AudioSamplingTests: XCTestCase {
    private func folder() throws -> String {
        let path = NSTemporaryDirectory() + "forge-audio-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private func sine(_ hz: Double, amplitude: Float = 0.5, count: Int = 4096, rate: Int = 8000, phase: Double = 0) -> [Float] {
        (0..<count).map { amplitude * Float(sin(2 * Double.pi * hz * Double($0) / Double(rate) + phase)) }
    }

    func testWAVWrittenEqualsWAVReadBack() throws {
        let dir = try folder()
        let samples = sine(440, amplitude: 0.7) + [1, -1, 0.999, -0.25]
        let clip = AudioClip(samples: samples, channels: 1, sampleRate: 8000)
        try AudioSampling.writeWAV(clip, to: dir + "/sub/x.wav")
        let back = try AudioIO.read(path: dir + "/sub/x.wav")
        XCTAssertEqual(back.sampleRate, 8000)
        XCTAssertEqual(back.channels, 1)
        XCTAssertEqual(back.frameCount, samples.count)
        let worst = zip(back.samples, samples).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(worst, 1.0 / 32768 + 1e-6, "16-bit quantisation is the only change")
        let paths = try AudioSampling.writeWAVs([clip, clip], to: dir + "/many")
        XCTAssertEqual(paths.map { ($0 as NSString).lastPathComponent }, ["0000.wav", "0001.wav"])
    }

    /// A 1 kHz sine at amplitude 0.5 peaks in bin 1000 / (8000 / 256) = 32 at −6 dB.
    func testSpectrogramPeaksAtTheSineFrequencyAndLevel() throws {
        let s = AudioFigure.spectrogram(sine(1000), sampleRate: 8000)
        XCTAssertEqual(s.bins, 129)
        XCTAssertEqual(s.frames, (4096 - 256) / 64 + 1)
        let frame = s.frames / 2
        let row = Array(s.values[(frame * s.bins)..<((frame + 1) * s.bins)])
        let peak = row.indices.max { row[$0] < row[$1] }!
        XCTAssertEqual(peak, 32)
        XCTAssertEqual(row[peak], -6.02, accuracy: 0.2)
        XCTAssertLessThan(row[100], -60, "far from the tone the Hann window's leakage is small")
        let dir = try folder()
        let clips = [sine(1000), sine(300)].map { AudioClip(samples: $0, channels: 1, sampleRate: 8000) }
        try AudioSampling.writeFigure(clips, to: dir + "/fig.png")
        let image = try ImageCodec.load(path: dir + "/fig.png")
        // two panels side by side, each with its axes, and the dB colour bar at the right
        XCTAssertEqual(image.width, 6 + 2 * (52 + 480 + 6) + 64)
        XCTAssertEqual(image.height, 6 + 12 + 80 + 2 + 128 + 28 + 6)
        XCTAssertEqual([image.width, image.height], [AudioFigure.size(clipCount: 2).width, AudioFigure.size(clipCount: 2).height])
    }

    func testCorruptAndEmptyAudioFilesAreSkippedWithAWarningAndAnEmptyFolderIsAnError() throws {
        let dir = try folder()
        for k in 0..<3 {
            try AudioIO.writeWAV(AudioClip(samples: sine(200 * Double(k + 1)), channels: 1, sampleRate: 8000), to: dir + "/good\(k).wav")
        }
        FileManager.default.createFile(atPath: dir + "/empty.wav", contents: Data())
        FileManager.default.createFile(atPath: dir + "/corrupt.wav", contents: Data("RIFF\u{0}\u{0}garbage not audio".utf8))
        var warnings: [String] = []
        let set = try AudioFolder(path: dir, sampleRate: 8000, length: 4096, warn: { warnings.append($0) })
        XCTAssertEqual(set.count, 3)
        XCTAssertEqual(set.clips.shape, [3, 4096])
        XCTAssertEqual(warnings.count, 2)
        XCTAssertTrue(warnings.contains { $0.contains("empty.wav") } && warnings.contains { $0.contains("corrupt.wav") })
        let empty = try folder()
        XCTAssertThrowsError(try AudioFolder(path: empty, sampleRate: 8000, length: 4096, warn: { _ in }))
    }

    /// One epoch through the shared loop writes the WAVs, figure and checkpoint; the sampler
    /// rebuilt from the checkpoint makes exactly the clips the task made from the same z.
    func testTinyAudioGANTrainsThroughTheLoopAndTheCheckpointSamplesTheSameClips() throws {
        let dir = try folder()
        var c = WaveGANConfig()
        (c.length, c.sampleRate, c.nz, c.ngf, c.ndf, c.batchSize, c.seed) = (4096, 8000, 8, 2, 2, 4, 5)
        let clips = Tensor(shape: [8, 4096], data: (0..<8).flatMap { sine(150 * Double($0 + 1)) })
        let task = try GANTrainingTask(gan: WaveGAN(c), clips: clips, samplesDirectory: dir + "/samples", sampleCount: 2)
        let options = TrainingOptions(runDirectory: dir, epochs: 2, 
                                      handleInterrupts: false, showProgress: false)
        let summary = try TrainingLoop(task: task, options: options, log: { _ in }).run()
        XCTAssertEqual(summary.state.step, 4)
        for name in ["epoch_001_0.wav", "epoch_002_1.wav", "latest_0.wav", "epoch_002.png", "latest.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/samples/" + name), name)
        }
        for name in ["metrics.csv", "loss.png", "checkpoint.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + name), name)
        }
        let wav = try AudioIO.read(path: dir + "/samples/latest_1.wav")
        XCTAssertEqual(wav.sampleRate, 8000)
        XCTAssertEqual(wav.frameCount, 4096)

        let sampler = try AudioGANSampler(checkpoint: dir + "/checkpoint.safetensors")
        XCTAssertEqual(sampler.config, c)
        XCTAssertEqual(sampler.gan.generate(task.fixedNoise).scalars, task.gan.generate(task.fixedNoise).scalars)
        let a = try sampler.sample(count: 2, seed: 9), b = try sampler.sample(count: 2, seed: 9)
        XCTAssertEqual(a, b)
        XCTAssertEqual(a[0].sampleRate, 8000)
        XCTAssertThrowsError(try GANSampler(checkpoint: dir + "/checkpoint.safetensors"), "an image sampler refuses a wavegan checkpoint")
    }
}

final class AudioGenerationTests: XCTestCase {
    func testGenerateAudioWritesManifestAndOnlyAndResumeReproduceTheSameBytes() throws {
        let dir = NSTemporaryDirectory() + "forge-genaudio-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        var c = WaveGANConfig()
        (c.length, c.sampleRate, c.nz, c.ngf, c.ndf, c.batchSize) = (4096, 8000, 8, 2, 2, 4)
        let gan = WaveGAN(c)
        let task = try GANTrainingTask(gan: gan, clips: Tensor.zeros([4, 4096]), samplesDirectory: dir + "/s")
        let ck = dir + "/checkpoint.safetensors"
        try Checkpoint.save(to: ck, kind: task.kind, configJSON: task.configJSON, state: TrainingState(),
                            modules: task.modules, optimizers: task.optimizers, generators: task.generators)
        let out = dir + "/set"
        let first = try AudioDatasetGenerator(checkpoint: ck, options: AudioGenerationOptions(count: 5, seed: 3, batchSize: 2), outputDirectory: out).run()
        XCTAssertEqual(first.written, 5)
        let names = (0..<5).map { String(format: "%06d.wav", $0) }
        let original = try names.map { try Data(contentsOf: URL(fileURLWithPath: out + "/" + $0)) }
        let manifest = try DatasetManifest.read(path: out + "/manifest.csv")
        XCTAssertEqual(manifest.rows.map(\.file), names)
        XCTAssertEqual(manifest.modelKind, "wavegan")
        XCTAssertNotEqual(original[0], original[1])

        // --only 3 after deleting it: the same bytes (its own seed, independent of the batch).
        try FileManager.default.removeItem(atPath: out + "/" + names[3])
        _ = try AudioDatasetGenerator(checkpoint: ck, options: AudioGenerationOptions(count: 5, seed: 3, batchSize: 2, only: 3), outputDirectory: out).run()
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out + "/" + names[3])), original[3])

        // --resume after a "crash" (one clip missing, one truncated, a stale temp file).
        try FileManager.default.removeItem(atPath: out + "/" + names[1])
        try Data(original[4].prefix(100)).write(to: URL(fileURLWithPath: out + "/" + names[4]))
        FileManager.default.createFile(atPath: out + "/.000002.wav.tmp-x", contents: Data([1]))
        let resumed = try AudioDatasetGenerator(checkpoint: ck, options: AudioGenerationOptions(count: 5, seed: 3, batchSize: 2, resume: true), outputDirectory: out).run()
        XCTAssertEqual(resumed.kept, 3)
        XCTAssertEqual(resumed.written, 2)
        XCTAssertEqual(try names.map { try Data(contentsOf: URL(fileURLWithPath: out + "/" + $0)) }, original)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), (names + ["manifest.csv"]).sorted())

        // Other parameters in the same folder are refused.
        XCTAssertThrowsError(try AudioDatasetGenerator(checkpoint: ck, options: AudioGenerationOptions(count: 5, seed: 4, batchSize: 2), outputDirectory: out).run())
    }

    /// An audio VAE checkpoint samples and generates through the same paths as a WaveGAN one.
    func testAudioVAECheckpointSamplesAndGenerates() throws {
        let dir = NSTemporaryDirectory() + "forge-audiovae-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        var c = VAEConfig.audio()
        (c.length, c.sampleRate, c.latent, c.hidden, c.batchSize) = (4096, 8000, 4, 2, 4)
        let clips = Tensor(shape: [8, 4096], data: (0..<(8 * 4096)).map { Float(sin(Double($0) * 0.2)) * 0.3 })
        let task = try AudioVAETrainingTask(vae: VAE(c), clips: clips, samplesDirectory: dir + "/samples", sampleCount: 2)
        let options = TrainingOptions(runDirectory: dir, epochs: 1, 
                                      handleInterrupts: false, showProgress: false)
        _ = try TrainingLoop(task: task, options: options, log: { _ in }).run()
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/samples/epoch_001_1.wav"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/samples/epoch_001.png"))
        let source = try openAudioClipSource(checkpoint: dir + "/checkpoint.safetensors")
        XCTAssertEqual(source.modelKind, "audiovae")
        let a = try source.sample(count: 2, seed: 1)
        XCTAssertEqual(a, try source.sample(count: 2, seed: 1))
        XCTAssertEqual(a[0].frameCount, 4096)
        let report = try AudioDatasetGenerator(checkpoint: dir + "/checkpoint.safetensors", options: AudioGenerationOptions(count: 3),
                                               outputDirectory: dir + "/set").run()
        XCTAssertEqual(report.written, 3)
        XCTAssertEqual(try DatasetManifest.read(path: dir + "/set/manifest.csv").modelKind, "audiovae")
    }
}
