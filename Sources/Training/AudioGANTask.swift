import Foundation
import TensorCore
import DataIO
import Models

/// WaveGAN training on an `AudioFolder` as a `TrainingTask`: full batches of clips in a (seed, epoch)
/// order, one `waveGANTrainingStep` per batch, and after the first epoch, every `sampleEvery`-th
/// epoch and when a run stops mid-epoch, `sampleCount` clips from a fixed noise batch written to `samplesDirectory` as
/// `epoch_NNN_K.wav` + `epoch_NNN.png` (waveforms and spectrograms), and as `latest_K.wav` + `latest.png`.
public final class AudioGANTrainingTask: TrainingTask {
    public let gan: WaveGAN
    /// Adam for G and D (`GANOptimizers`).
    public let ganOptimizers: GANOptimizers
    /// Training clips (N, length) in [-1, 1].
    public let clips: Tensor
    public let samplesDirectory: String
    /// The fixed latent batch of the per-epoch samples.
    public let fixedNoise: Tensor
    /// Epochs between sample writes.
    public let sampleEvery: Int
    private var noiseRNG: RandomGenerator
    private var batches: ClipBatches

    /// `clips` must be (N, config.length) with N ≥ one batch.
    public init(gan: WaveGAN, clips: Tensor, samplesDirectory: String, sampleCount: Int = 4, sampleEvery: Int = 1) throws {
        let c = gan.config
        batches = try ClipBatches(clips: clips, length: c.length, batchSize: c.batchSize, seed: c.seed,
                                  sampleCount: sampleCount, sampleEvery: sampleEvery)
        self.gan = gan
        ganOptimizers = GANOptimizers(for: gan)
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
    public var optimizers: [(name: String, optimizer: any Optimizer)] { ganOptimizers.named }
    public var generators: [String: RandomGenerator] {
        get { ["noise": noiseRNG] }
        set { if let g = newValue["noise"] { noiseRNG = g } }
    }
    public var itemName: String { "clips" }

    /// Full batches only (BatchNorm statistics of a tiny tail batch would be noise).
    public var stepsPerEpoch: Int { batches.stepsPerEpoch }
    public var itemsPerStep: Int { gan.config.batchSize }
    public var metricNames: [String] { ["loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2"] }
    public var plottedMetrics: [String] { ["loss_d", "loss_g"] }

    public func beginEpoch(_ epoch: Int, skippingSteps: Int) { batches.begin(epoch: epoch, skippingSteps: skippingSteps) }

    public func step() -> [Double] {
        let r = waveGANTrainingStep(gan, optimizers: ganOptimizers, real: batches.next(), rng: &noiseRNG)
        return [r.lossD, r.lossG, r.dX, r.dGZ1, r.dGZ2]
    }

    /// The per-epoch samples: G(fixed z) as (count, length) rows.
    public func fixedSamples() -> [[Float]] { clipRows(gan.generate(fixedNoise)) }

    public func epochEnded(epoch: Int, step: Int, completed: Bool) throws {
        try writeEpochAudioSamples(fixedSamples, sampleRate: gan.config.sampleRate, directory: samplesDirectory,
                                   sampleEvery: sampleEvery, epoch: epoch, step: step, completed: completed, tensorBoard: tensorBoard)
    }
}
