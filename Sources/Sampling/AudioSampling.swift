import Foundation
import TensorCore
import DataIO
import Models
import Figures

/// A trained audio model (WaveGAN generator or audio VAE decoder) that turns latent vectors into clips.
public protocol AudioClipSource: AnyObject {
    /// The checkpoint kind ("wavegan", "audiovae").
    var modelKind: String { get }
    var sampleRate: Int { get }
    /// Samples per clip.
    var length: Int { get }
    /// Latent size.
    var latentSize: Int { get }
    /// Clips for latent vectors (B, latentSize); each clip depends only on its own row.
    func clips(fromLatents z: Tensor) -> [AudioClip]
}

extension AudioClipSource {
    /// `count` clips from N(0, I) latent vectors drawn with `seed`.
    public func sample(count: Int, seed: UInt64) throws -> [AudioClip] {
        guard count > 0 else { throw SamplingError("count must be positive, got \(count)") }
        var rng = RandomGenerator(seed: seed)
        return clips(fromLatents: Tensor.randn([count, latentSize], generator: &rng))
    }

    /// Splits a model's output (B, 1, length) into mono clips.
    func splitClips(_ waves: Tensor) -> [AudioClip] {
        let n = length, all = waves.scalars
        return (0..<waves.shape[0]).map {
            AudioClip(samples: Array(all[($0 * n)..<(($0 + 1) * n)]), channels: 1, sampleRate: sampleRate)
        }
    }
}

/// Opens a `wavegan` or `audiovae` checkpoint by its stored kind.
public func openAudioClipSource(checkpoint path: String) throws -> any AudioClipSource {
    let kind = try Checkpoint.load(path).kind
    switch kind {
    case "wavegan": return try AudioGANSampler(checkpoint: path)
    case "audiovae": return try AudioVAESampler(checkpoint: path)
    default: throw SamplingError("\(path) is a \(kind) checkpoint, not an audio model (wavegan or audiovae)")
    }
}

/// A trained WaveGAN generator loaded from a checkpoint, ready to draw clips.
/// Sampling runs BatchNorm in evaluation mode without a graph, so a clip depends only on its own
/// seed-derived z, not on the batch it is drawn with.
public final class AudioGANSampler: AudioClipSource {
    /// The WaveGAN with the checkpoint's generator weights (its discriminator stays freshly initialised and
    /// unused).
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

    /// The configuration the checkpoint was trained with.
    public var config: WaveGANConfig { gan.config }
    /// "wavegan", the checkpoint kind.
    public var modelKind: String { "wavegan" }
    /// The training clips' rate (Hz), so generated clips play at the right speed.
    public var sampleRate: Int { config.sampleRate }
    /// Samples per clip.
    public var length: Int { config.length }
    /// The generator's latent size nz.
    public var latentSize: Int { config.nz }
    /// Mono clips from latents (B, nz) through the generator in evaluation mode, no graph.
    public func clips(fromLatents z: Tensor) -> [AudioClip] { splitClips(gan.generate(z)) }
}

/// A trained sound VAE (the VAE's `conv1d` case) loaded from an `audiovae` checkpoint; clips are the
/// decoder's Gaussian mean.
public final class AudioVAESampler: AudioClipSource {
    /// The sound VAE with the checkpoint's weights.
    public let vae: VAE
    /// The training state the checkpoint was written at.
    public let state: TrainingState

    /// Loads an `audiovae` checkpoint; throws when its configuration is invalid or not the `conv1d` case.
    public init(checkpoint path: String) throws {
        let saved = try Checkpoint.load(path, expectedKind: "audiovae")
        let config = try saved.config(as: VAEConfig.self)
        if let problem = config.problem { throw CheckpointError(path: path, message: "invalid configuration: \(problem)") }
        guard config.isAudio else { throw CheckpointError(path: path, message: "an audiovae checkpoint must hold the conv1d VAE, not \(config.arch.rawValue)") }
        vae = VAE(config)
        try saved.restore(modules: [("vae", vae)])
        state = saved.state
    }

    /// The configuration the checkpoint was trained with (`conv1d`).
    public var config: VAEConfig { vae.config }
    /// "audiovae", the checkpoint kind.
    public var modelKind: String { "audiovae" }
    /// The training clips' rate (Hz), so generated clips play at the right speed.
    public var sampleRate: Int { config.sampleRate }
    /// Samples per clip.
    public var length: Int { config.length }
    /// The VAE's latent size.
    public var latentSize: Int { config.latent }
    /// Mono clips from latents (B, latent): the decoder's mean, no graph.
    public func clips(fromLatents z: Tensor) -> [AudioClip] { splitClips(vae.generate(z)) }
}

/// Writing generated sound: WAV files and the waveform/spectrogram figure.
public enum AudioSampling {
    /// Writes `clip` as 16-bit WAV at `path`, creating the parent folder.
    public static func writeWAV(_ clip: AudioClip, to path: String) throws {
        try ImageSampler.createParent(of: path)
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

    /// Writes the waveform + spectrogram figure of `clips` (all at one sample rate) as a PNG,
    /// `titles[k]` (e.g. the seed and clip number) above clip k when given.
    public static func writeFigure(_ clips: [AudioClip], columns: Int = 2, titles: [String]? = nil, to path: String) throws {
        guard let rate = clips.first?.sampleRate else { throw SamplingError("no clips to draw") }
        try ImageSampler.createParent(of: path)
        try AudioFigure.write(clips: clips.map { $0.mixedToMono().samples }, sampleRate: rate, columns: columns, titles: titles, to: path)
    }
}

// MARK: - synthetic sound datasets

/// Options of `forge generate audio` (the audio counterpart of `ImageGenerationOptions`).
public struct AudioGenerationOptions: Sendable {
    /// Number of clips.
    public var count: Int
    /// Run seed: clip i uses `ItemSeed.derive(runSeed: seed, index: i)`.
    public var seed: UInt64
    /// Clips per forward pass (BatchNorm runs in evaluation mode, so it does not change the bits).
    public var batchSize: Int
    /// Keep valid existing clips and write only the missing ones.
    public var resume: Bool
    /// Write only clip `only`.
    public var only: Int?

    /// Options for `count` clips from run seed `seed`, `batchSize` per forward pass, optionally resuming or
    /// recreating clip `only`.
    public init(count: Int, seed: UInt64 = 0, batchSize: Int = 32, resume: Bool = false, only: Int? = nil) {
        self.count = count
        self.seed = seed
        self.batchSize = batchSize
        self.resume = resume
        self.only = only
    }
}

/// Writes a synthetic sound dataset from a WaveGAN or audio VAE checkpoint: `DIR/<index>.wav` (16-bit, the
/// model's rate) and `DIR/manifest.csv` in the same format and with the same guarantees as
/// `ImageDatasetGenerator`: per-item seeds (so `only` recreates one clip bit for bit), a manifest
/// written first and checked on `resume`, and stale temporary files removed on resume.
public final class AudioDatasetGenerator {
    /// The generator or decoder the clips come from (`openAudioClipSource`).
    public let sampler: any AudioClipSource
    /// The options the run was planned with.
    public let options: AudioGenerationOptions
    /// The folder the clips and `manifest.csv` are written to.
    public let outputDirectory: String
    /// The checkpoint file as given; the manifest records its last path component.
    public let checkpointPath: String
    /// SHA-256 of the checkpoint file.
    public let checkpointSHA256: String
    /// Every item of the run, in index order.
    public let items: [PlannedItem]

    /// Plans the run: opens the checkpoint, derives every clip's seed and file name (`NNNNNN.wav`, at least 6
    /// digits) and hashes the checkpoint file. Throws on a non-positive count or batch size, or an `only`
    /// outside the run.
    public init(checkpoint path: String, options: AudioGenerationOptions, outputDirectory: String) throws {
        guard options.batchSize > 0 else { throw SamplingError("the batch size must be positive, got \(options.batchSize)") }
        guard options.count > 0 else { throw SamplingError("the count must be positive, got \(options.count)") }
        if let only = options.only, !(0..<options.count).contains(only) {
            throw SamplingError(field: "only", "\(only) is outside the run's items 0..<\(options.count)")
        }
        sampler = try openAudioClipSource(checkpoint: path)
        let digits = max(6, String(options.count - 1).count)
        items = (0..<options.count).map { i in
            let number = String(repeating: "0", count: max(0, digits - String(i).count)) + String(i)
            return PlannedItem(index: i, label: 0, className: "", file: number + ".wav", seed: ItemSeed.derive(runSeed: options.seed, index: i))
        }
        self.options = options
        self.outputDirectory = outputDirectory
        self.checkpointPath = path
        self.checkpointSHA256 = try SHA256.hexDigest(ofFile: path)
    }

    /// The generation parameters as recorded in the manifest.
    public var parameters: String {
        "count=\(options.count) seed=\(options.seed) batch=\(options.batchSize) format=wav16 rate=\(sampler.sampleRate) length=\(sampler.length)"
    }

    /// The manifest of the whole run.
    public var manifest: DatasetManifest {
        DatasetManifest(checkpoint: URL(fileURLWithPath: checkpointPath).lastPathComponent, checkpointSHA256: checkpointSHA256,
                 modelKind: sampler.modelKind, parameters: parameters,
                 rows: items.map { DatasetManifest.Row(file: $0.file, index: $0.index, label: 0, className: "", seed: $0.seed) },
                 recordsItemSHA256: true)
    }

    /// Generates the planned clips (all, the missing ones with `resume`, or one with `only`) and
    /// writes `manifest.csv` with each clip's sha256; `progress(done, total)` after each batch. `warn`
    /// hears of clips a resume found swapped or damaged (regenerated).
    /// With a `group` of several ranks, every rank calls `run`: the ranks compute the batches in turn
    /// and rank 0 writes them (`BatchSchedule`), the same folder as one process writes; `progress`,
    /// `warn` and the report are rank 0's.
    public func run(group: (any GenerationGroup)? = nil, progress: (Int, Int) -> Void = { _, _ in },
                    warn: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws -> GenerationReport {
        let start = Date()
        var plan: GenerationPlan?
        let wanted = [Bool](packedFlags: try BatchSchedule.shareFromRoot(group) {
            plan = try GenerationPlan.prepare(outputDirectory, manifest: manifest, items: items, resume: options.resume,
                                              only: options.only, isValid: isValidItem, warn: warn)
            return plan!.wanted.packedFlags
        })
        let total = wanted.filter { $0 }.count
        // Each clip goes to a temporary file first and is renamed into place once the manifest holds its hash.
        let committer = plan.map { ItemCommitter(plan: $0) }   // rank 0 (or the one process) only
        defer { committer?.discardPending() }
        let batches = stride(from: 0, to: items.count, by: options.batchSize).map { batchStart in
            items[batchStart..<min(items.count, batchStart + options.batchSize)].filter { wanted[$0.index] }
        }.filter { !$0.isEmpty }
        var done = 0
        func consume(_ clips: [(item: PlannedItem, clip: AudioClip)]) throws {
            for (item, clip) in clips {
                let path = outputDirectory + "/" + item.file, temporary = temporaryPath(beside: path)
                do {
                    try AudioIO.writeWAV(clip, to: temporary)
                    try committer!.add(temporary: temporary, path: path, index: item.index, sha256: SHA256.hexDigest(ofFile: temporary))
                } catch {
                    unlink(temporary)
                    throw error
                }
            }
            done += clips.count
            progress(done, total)
        }
        try BatchSchedule.run(batches, group: group, compute: { missing in
            // One z per item from its own seed: a clip does not depend on the batch it is drawn in.
            let z = Tensor.concat(missing.map { item -> Tensor in
                var g = RandomGenerator(seed: item.seed)
                return Tensor.randn([1, sampler.latentSize], generator: &g)
            }, axis: 0)
            return Array(zip(missing, sampler.clips(fromLatents: z)))
        }, pack: { clips in
            // the samples as they are: rank 0 writes the WAV exactly as it would from its own clips
            var packed = PackedFields()
            for (item, clip) in clips {
                packed.append(item.index)
                packed.append(clip.channels)
                packed.append(clip.sampleRate)
                packed.append(clip.samples.withUnsafeBytes { Array($0) })
            }
            return packed.bytes
        }, consume: { _, clips in try consume(clips) }, consumeRemote: { missing, bytes in
            let fields = try PackedFields.fields(of: bytes)
            var clips: [(item: PlannedItem, clip: AudioClip)] = []
            for (n, item) in zip(stride(from: 0, to: fields.count - 3, by: 4), missing) {
                let (channels, rate) = (try PackedFields.integer(fields[n + 1]), try PackedFields.integer(fields[n + 2]))
                let raw = fields[n + 3]
                guard try PackedFields.integer(fields[n]) == item.index, channels > 0, rate > 0,
                      raw.count % (channels * MemoryLayout<Float>.size) == 0 else { throw SamplingError("a rank sent a malformed clip for item \(item.index)") }
                let samples = raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
                clips.append((item, AudioClip(samples: samples, channels: channels, sampleRate: rate)))
            }
            guard clips.count == missing.count else { throw SamplingError("a rank sent \(clips.count) clips for a batch of \(missing.count)") }
            try consume(clips)
        })
        guard let committer, var plan else { return GenerationReport() }
        try committer.commit()
        plan.report.written = total
        plan.report.seconds = Date().timeIntervalSince(start)
        return plan.report
    }

    /// A file is a valid item when it decodes as mono audio of the model's rate and length.
    func isValidItem(_ path: String) -> Bool {
        guard let clip = try? AudioIO.read(path: path) else { return false }
        return clip.channels == 1 && clip.sampleRate == sampler.sampleRate && clip.frameCount == sampler.length
    }
}
