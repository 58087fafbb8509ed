import Foundation
import TensorCore
import DataIO
import Models

/// Training the VAE's sound case (`VAEConfig.audio()`, arch `conv1d`) on clips (N, length) in [-1, 1]
/// as a `TrainingTask`: shuffled batches in a (seed, epoch) order, one `vaeTrainingStep` per batch
/// (metrics per clip in nats, as `VAETrainingTask` reports per image), and after the first epoch,
/// every `sampleEvery`-th epoch and when a run stops mid-epoch, prior samples from a fixed z written
/// as WAVs + a waveform/spectrogram PNG (the same files as `GANTrainingTask`).
///
/// Under mpirun it is one rank of a data-parallel job as the image VAE is (`dataParallelVAETrainingStep`):
/// each rank computes its rows of every global batch with its rows of the one noise draw, and the
/// summed gradients are the global batch's, so N ranks train what one process trains.
public final class AudioVAETrainingTask: DataParallelTrainingTask {
    /// The sound-case VAE being trained (its config gives the clip length, batch size, seed and sample rate).
    public let vae: VAE
    /// Adam over the model's parameters (`VAE.makeOptimizer`).
    public let optimizer: Adam
    /// The training clips, (N, length) samples in [-1, 1].
    public let clips: Tensor
    /// Folder the per-epoch sample WAVs and waveform/spectrogram PNGs are written to.
    public let samplesDirectory: String
    /// The fixed latent batch of the per-epoch samples.
    public let fixedLatents: Tensor
    /// Epoch interval of the prior samples (besides the first epoch and a mid-epoch stop).
    public let sampleEvery: Int
    private var noiseRNG: RandomGenerator
    private var batches: ClipBatches
    private var dataParallel: DataParallelGroup?
    private var reducer: OverlappedGradientReducer?

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

    /// Checkpoint kind "audiovae".
    public var kind: String { "audiovae" }
    /// The `VAEConfig` as JSON.
    public var configJSON: String { (try? Checkpoint.jsonString(vae.config)) ?? "{}" }
    /// The VAE, saved under the name "vae".
    public var modules: [(name: String, module: any Module)] { [("vae", vae)] }
    /// The Adam optimizer, saved under the name "vae".
    public var optimizers: [(name: String, optimizer: any Optimizer)] { [("vae", optimizer)] }
    /// The reparameterisation noise generator, saved as "noise" (the fixed latents are rebuilt from the seed).
    public var generators: [String: RandomGenerator] {
        get { ["noise": noiseRNG] }
        set { if let g = newValue["noise"] { noiseRNG = g } }
    }
    /// Steps are counted in clips.
    public var itemName: String { "clips" }
    /// Full batches of shuffled clips in one epoch.
    public var stepsPerEpoch: Int { batches.stepsPerEpoch }
    /// Clips per batch (`VAEConfig.batchSize`).
    public var itemsPerStep: Int { vae.config.batchSize }
    /// Per-clip negative ELBO, its reconstruction and KL terms (nats), and the learned likelihood σ (0 when fixed).
    public var metricNames: [String] { ["loss", "reconstruction", "kl", "sigma"] }
    /// The three loss terms in `loss.png`; σ is logged but not drawn.
    public var plottedMetrics: [String] { ["loss", "reconstruction", "kl"] }

    /// Shuffles the clips for `epoch` in the (seed, epoch) order and skips the steps a resumed run already did.
    public func beginEpoch(_ epoch: Int, skippingSteps: Int) { batches.begin(epoch: epoch, skippingSteps: skippingSteps) }

    /// One `vaeTrainingStep` (or its data-parallel form) on the next batch; the summed terms are divided by the batch size, per clip.
    public func step() -> [Double] {
        let batch = batches.nextBatch()
        let r = vaeStep(vae, optimizer: optimizer, batch: batch, labels: nil, rng: &noiseRNG, group: dataParallel, reducer: reducer)
        let b = Double(batch.shape[0])
        return [r.total / b, r.reconstruction / b, r.kl / b, vae.sigma ?? 0]
    }

    /// Makes the task one rank of `group`: `--batch` is the global batch and must split evenly.
    public func joinDataParallel(_ group: DataParallelGroup) throws {
        _ = try group.shard(ofBatch: vae.config.batchSize)
        dataParallel = group
        reducer = group.overlapsReduction ? OverlappedGradientReducer(group: group, parameters: vae.parameters, summed: true) : nil
    }

    /// True when the gradient buckets are summed on their own thread while backward runs.
    public var reducesWhileBackwardRuns: Bool { reducer != nil }

    /// Decoded fixed latents as (count, length) rows.
    public func fixedSamples() -> [[Float]] { clipRows(vae.generate(fixedLatents)) }

    /// Writes the fixed-latent samples as WAVs + PNG after the first epoch, every `sampleEvery`-th and on a mid-epoch stop.
    public func epochEnded(epoch: Int, step: Int, completed: Bool) throws {
        try writeEpochAudioSamples(fixedSamples, sampleRate: vae.config.sampleRate, directory: samplesDirectory,
                                   sampleEvery: sampleEvery, epoch: epoch, step: step, completed: completed, tensorBoard: tensorBoard)
    }
}
