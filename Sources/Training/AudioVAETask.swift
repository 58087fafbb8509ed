import Foundation
import TensorCore
import DataIO
import Models

/// Training the VAE's sound case (`VAEConfig.audio()`, arch `conv1d`) on clips (N, length) in [-1, 1]
/// as a `TrainingTask`: shuffled batches in a (seed, epoch) order, one `vaeTrainingStep` per batch
/// (metrics per clip in nats, as `VAETrainingTask` reports per image), and after the first epoch,
/// every `sampleEvery`-th epoch and when a run stops mid-epoch, prior samples from a fixed z written
/// as WAVs + a waveform/spectrogram PNG (the same files as `GANTrainingTask`).
public final class AudioVAETrainingTask: TrainingTask {
    public let vae: VAE
    /// Adam over the model's parameters (`VAE.makeOptimizer`).
    public let optimizer: Adam
    public let clips: Tensor
    public let samplesDirectory: String
    /// The fixed latent batch of the per-epoch samples.
    public let fixedLatents: Tensor
    public let sampleEvery: Int
    private var noiseRNG: RandomGenerator
    private var batches: ClipBatches

    /// `vae` must be the sound case (`config.isAudio`).
    public init(vae: VAE, clips: Tensor, samplesDirectory: String, sampleCount: Int = 4, sampleEvery: Int = 1) throws {
        let c = vae.config
        guard c.isAudio else { throw TrainingError.invalidConfiguration("the audio task trains the VAE's 1-D (conv1d) case, not \(c.arch.rawValue)") }
        optimizer = vae.makeOptimizer()
        batches = try ClipBatches(clips: clips, length: c.length, batchSize: c.batchSize, seed: c.seed,
                                  sampleCount: sampleCount, sampleEvery: sampleEvery)
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
    public var optimizers: [(name: String, optimizer: any Optimizer)] { [("vae", optimizer)] }
    public var generators: [String: RandomGenerator] {
        get { ["noise": noiseRNG] }
        set { if let g = newValue["noise"] { noiseRNG = g } }
    }
    public var itemName: String { "clips" }
    public var stepsPerEpoch: Int { batches.stepsPerEpoch }
    public var itemsPerStep: Int { vae.config.batchSize }
    public var metricNames: [String] { ["loss", "reconstruction", "kl", "sigma"] }
    public var plottedMetrics: [String] { ["loss", "reconstruction", "kl"] }

    public func beginEpoch(_ epoch: Int, skippingSteps: Int) { batches.begin(epoch: epoch, skippingSteps: skippingSteps) }

    public func step() -> [Double] {
        let batch = batches.nextBatch()
        let r = vaeTrainingStep(vae, optimizer: optimizer, batch: batch, rng: &noiseRNG)
        let b = Double(batch.shape[0])
        return [r.total / b, r.reconstruction / b, r.kl / b, vae.sigma ?? 0]
    }

    /// Decoded fixed latents as (count, length) rows.
    public func fixedSamples() -> [[Float]] { clipRows(vae.generate(fixedLatents)) }

    public func epochEnded(epoch: Int, step: Int, completed: Bool) throws {
        try writeEpochAudioSamples(fixedSamples, sampleRate: vae.config.sampleRate, directory: samplesDirectory,
                                   sampleEvery: sampleEvery, epoch: epoch, step: step, completed: completed, tensorBoard: tensorBoard)
    }
}
