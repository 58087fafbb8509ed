import Foundation
import TensorCore
import DataIO
import Models
import Training

/// A trained WaveGAN generator loaded from a checkpoint, ready to draw clips.
/// Sampling runs BatchNorm in evaluation mode without a graph, so a clip depends only on its own
/// seed-derived z, not on the batch it is drawn with.
public final class AudioGANSampler {
    public let gan: WaveGAN
    /// The training state the checkpoint was written at.
    public let state: TrainingState

    /// Loads the generator of a `wavegan` checkpoint (the discriminator and optimizers are ignored).
    public init(checkpoint path: String) throws {
        let saved = try Checkpoint.load(path, expectedKind: "wavegan")
        let config = try saved.config(as: WaveGANConfig.self)
        if let problem = config.problem { throw CheckpointError(path: path, message: "invalid configuration: \(problem)") }
        gan = WaveGAN(config)
        try saved.restore(modules: [("generator", gan.generator)])
        state = saved.state
    }

    public var config: WaveGANConfig { gan.config }

    /// `count` clips at the model's sample rate from latent vectors drawn with `seed`.
    public func sample(count: Int, seed: UInt64) throws -> [AudioClip] {
        guard count > 0 else { throw SamplingError("count must be positive, got \(count)") }
        var rng = RandomGenerator(seed: seed)
        return clips(from: gan.generate(gan.noise(count, generator: &rng)))
    }

    /// Splits G's output (B, 1, length) into mono clips.
    func clips(from waves: Tensor) -> [AudioClip] {
        let n = config.length, all = waves.scalars
        return (0..<waves.shape[0]).map {
            AudioClip(samples: Array(all[($0 * n)..<(($0 + 1) * n)]), channels: 1, sampleRate: config.sampleRate)
        }
    }
}

/// Writing generated sound: WAV files and the waveform/spectrogram figure.
public enum AudioSampling {
    /// Writes `clip` as 16-bit WAV at `path`, creating the parent folder.
    public static func writeWAV(_ clip: AudioClip, to path: String) throws {
        try GANSampler.createParent(of: path)
        try AudioIO.writeWAV(clip, to: path)
    }

    /// Writes the clips as `directory/prefixNNNN.wav`; returns the paths.
    @discardableResult
    public static func writeWAVs(_ clips: [AudioClip], to directory: String, prefix: String = "") throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return try clips.enumerated().map { i, clip in
            let path = directory + "/" + prefix + String(format: "%04d.wav", i)
            try AudioIO.writeWAV(clip, to: path)
            return path
        }
    }

    /// Writes the waveform + spectrogram figure of `clips` (all at one sample rate) as a PNG.
    public static func writeFigure(_ clips: [AudioClip], columns: Int = 2, to path: String) throws {
        guard let rate = clips.first?.sampleRate else { throw SamplingError("no clips to draw") }
        try GANSampler.createParent(of: path)
        try AudioFigure.write(clips: clips.map { $0.mixedToMono().samples }, sampleRate: rate, columns: columns, to: path)
    }
}
