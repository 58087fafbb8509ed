import Foundation
import TensorCore
import DataIO
import Models

/// Audio VAE training on clips (N, length) as a `TrainingTask`: shuffled batches in a (seed, epoch)
/// order, one `AudioVAE.trainStep` per batch (metrics per clip, in nats), and after the first epoch,
/// every `sampleEvery`-th epoch and when a run stops mid-epoch, prior samples from a fixed z written
/// as WAVs + a waveform/spectrogram PNG (the same files as `AudioGANTrainingTask`).
public final class AudioVAETrainingTask: TrainingTask {
    public let vae: AudioVAE
    public let clips: Tensor
    public let samplesDirectory: String
    /// The fixed latent batch of the per-epoch samples.
    public let fixedLatents: Tensor
    public let sampleEvery: Int
    private var noiseRNG: RandomGenerator
    private var order: [Int] = []
    private var cursor = 0

    public init(vae: AudioVAE, clips: Tensor, samplesDirectory: String, sampleCount: Int = 4, sampleEvery: Int = 1) throws {
        let c = vae.config
        guard clips.rank == 2, clips.shape[1] == c.length else {
            throw TrainingError.invalidConfiguration("the clips are \(clips.shape) but the model wants (N, \(c.length))")
        }
        guard clips.shape[0] >= c.batchSize else {
            throw TrainingError.invalidConfiguration("\(clips.shape[0]) clips are fewer than one batch of \(c.batchSize)")
        }
        guard sampleCount >= 1, sampleEvery >= 1 else {
            throw TrainingError.invalidConfiguration("sample count and sample interval must be at least 1")
        }
        self.vae = vae
        self.clips = clips
        self.samplesDirectory = samplesDirectory
        self.sampleEvery = sampleEvery
        noiseRNG = RandomGenerator(seed: c.seed &+ 1)
        var fixed = RandomGenerator(seed: c.seed &+ 2)
        fixedLatents = Tensor.randn([sampleCount, c.latent], generator: &fixed)
    }

    public var kind: String { "audiovae" }
    public var configJSON: String { (try? Checkpoint.jsonString(vae.config)) ?? "{}" }
    public var modules: [(name: String, module: any Module)] { [("vae", vae)] }
    public var optimizers: [(name: String, optimizer: any Optimizer)] { [("vae", vae.optimizer)] }
    public var generators: [String: RandomGenerator] {
        get { ["noise": noiseRNG] }
        set { if let g = newValue["noise"] { noiseRNG = g } }
    }
    public var itemName: String { "clips" }
    public var stepsPerEpoch: Int { clips.shape[0] / vae.config.batchSize }
    public var itemsPerStep: Int { vae.config.batchSize }
    public var metricNames: [String] { ["loss", "recon", "kl", "sigma"] }
    public var plottedMetrics: [String] { ["loss", "recon", "kl"] }

    public func beginEpoch(_ epoch: Int, skippingSteps: Int) {
        var g = RandomGenerator(seed: vae.config.seed ^ (UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9_7F4A_7C15))
        order = g.permutation(clips.shape[0])
        cursor = skippingSteps * vae.config.batchSize
    }

    public func step() -> [Double] {
        let b = vae.config.batchSize
        precondition(cursor + b <= order.count, "AudioVAETrainingTask: epoch ran out of batches")
        let batch = clips.indexSelect(Array(order[cursor..<(cursor + b)])).reshaped([b, 1, vae.config.length])
        cursor += b
        let r = vae.trainStep(batch, rng: &noiseRNG)
        return [r.total, r.reconstruction, r.kl, vae.sigma]
    }

    /// Decoded fixed latents as (count, length) rows.
    public func fixedSamples() -> [[Float]] {
        let waves = vae.generate(fixedLatents), n = vae.config.length, all = waves.scalars
        return (0..<waves.shape[0]).map { Array(all[($0 * n)..<(($0 + 1) * n)]) }
    }

    public func epochEnded(epoch: Int, step: Int, completed: Bool) throws {
        guard !completed || (epoch + 1) % sampleEvery == 0 || epoch == 0 else { return }
        try writeAudioSamples(fixedSamples(), sampleRate: vae.config.sampleRate, directory: samplesDirectory,
                              name: completed ? String(format: "epoch_%03d", epoch + 1) : String(format: "epoch_%03d_step_%d", epoch + 1, step))
    }
}
