import Foundation
import TensorCore
import DataIO
import Models

/// WaveGAN training on an `AudioFolder` as a `TrainingTask`: full batches of clips in a (seed, epoch)
/// order, one `WaveGAN.trainStep` per batch, and after the first epoch, every `sampleEvery`-th
/// epoch and when a run stops mid-epoch, `sampleCount` clips from a fixed noise batch written to `samplesDirectory` as
/// `epoch_NNN_K.wav` + `epoch_NNN.png` (waveforms and spectrograms), and as `latest_K.wav` + `latest.png`.
public final class AudioGANTrainingTask: TrainingTask {
    public let gan: WaveGAN
    /// Training clips (N, length) in [-1, 1].
    public let clips: Tensor
    public let samplesDirectory: String
    /// The fixed latent batch of the per-epoch samples.
    public let fixedNoise: Tensor
    /// Epochs between sample writes.
    public let sampleEvery: Int
    private var noiseRNG: RandomGenerator
    private var order: [Int] = []
    private var cursor = 0

    /// `clips` must be (N, config.length) with N ≥ one batch.
    public init(gan: WaveGAN, clips: Tensor, samplesDirectory: String, sampleCount: Int = 4, sampleEvery: Int = 1) throws {
        let c = gan.config
        guard clips.rank == 2, clips.shape[1] == c.length else {
            throw TrainingError.invalidConfiguration("the clips are \(clips.shape) but the model wants (N, \(c.length))")
        }
        guard clips.shape[0] >= c.batchSize else {
            throw TrainingError.invalidConfiguration("\(clips.shape[0]) clips are fewer than one batch of \(c.batchSize)")
        }
        guard sampleCount >= 1, sampleEvery >= 1 else {
            throw TrainingError.invalidConfiguration("sample count and sample interval must be at least 1")
        }
        self.gan = gan
        self.clips = clips
        self.samplesDirectory = samplesDirectory
        self.sampleEvery = sampleEvery
        noiseRNG = RandomGenerator(seed: c.seed &+ 1)
        var fixed = RandomGenerator(seed: c.seed &+ 2)  // its own generator: never shifts the training noise
        fixedNoise = Tensor.randn([sampleCount, c.nz], generator: &fixed)
    }

    public var kind: String { "wavegan" }
    public var configJSON: String { (try? Checkpoint.jsonString(gan.config)) ?? "{}" }
    public var modules: [(name: String, module: any Module)] { [("generator", gan.generator), ("discriminator", gan.discriminator)] }
    public var optimizers: [(name: String, optimizer: any Optimizer)] { [("generator", gan.optimizerG), ("discriminator", gan.optimizerD)] }
    public var generators: [String: RandomGenerator] {
        get { ["noise": noiseRNG] }
        set { if let g = newValue["noise"] { noiseRNG = g } }
    }
    public var itemName: String { "clips" }

    /// Full batches only (BatchNorm statistics of a tiny tail batch would be noise).
    public var stepsPerEpoch: Int { clips.shape[0] / gan.config.batchSize }
    public var itemsPerStep: Int { gan.config.batchSize }
    public var metricNames: [String] { ["loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2"] }
    public var plottedMetrics: [String] { ["loss_d", "loss_g"] }

    public func beginEpoch(_ epoch: Int, skippingSteps: Int) {
        // The same epoch mixing as ImageSet's batches, so a resumed epoch replays the same order.
        var g = RandomGenerator(seed: gan.config.seed ^ (UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9_7F4A_7C15))
        order = g.permutation(clips.shape[0])
        cursor = skippingSteps * gan.config.batchSize
    }

    public func step() -> [Double] {
        let b = gan.config.batchSize
        precondition(cursor + b <= order.count, "AudioGANTrainingTask: epoch ran out of batches")
        let batch = clips.indexSelect(Array(order[cursor..<(cursor + b)])).reshaped([b, 1, gan.config.length])
        cursor += b
        let r = gan.trainStep(real: batch, rng: &noiseRNG)
        return [r.lossD, r.lossG, r.dX, r.dGZ1, r.dGZ2]
    }

    /// The per-epoch samples: G(fixed z) as (count, length) rows.
    public func fixedSamples() -> [[Float]] {
        let waves = gan.generate(fixedNoise)  // (count, 1, length)
        let n = gan.config.length
        let all = waves.scalars
        return (0..<waves.shape[0]).map { Array(all[($0 * n)..<(($0 + 1) * n)]) }
    }

    public func epochEnded(epoch: Int, step: Int, completed: Bool) throws {
        guard !completed || (epoch + 1) % sampleEvery == 0 || epoch == 0 else { return }
        try writeAudioSamples(fixedSamples(), sampleRate: gan.config.sampleRate, directory: samplesDirectory,
                              name: completed ? String(format: "epoch_%03d", epoch + 1) : String(format: "epoch_%03d_step_%d", epoch + 1, step))
    }
}

/// Writes the per-epoch samples of an audio task: `directory/NAME_K.wav` and `latest_K.wav` for each
/// clip, `NAME.png` and `latest.png` with their waveforms and spectrograms.
func writeAudioSamples(_ samples: [[Float]], sampleRate rate: Int, directory: String, name: String) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    for (k, wave) in samples.enumerated() {
        let clip = AudioClip(samples: wave, channels: 1, sampleRate: rate)
        try AudioIO.writeWAV(clip, to: "\(directory)/\(name)_\(k).wav")
        try AudioIO.writeWAV(clip, to: "\(directory)/latest_\(k).wav")
    }
    try AudioFigure.write(clips: samples, sampleRate: rate, to: "\(directory)/\(name).png")
    try AudioFigure.write(clips: samples, sampleRate: rate, to: "\(directory)/latest.png")
}
