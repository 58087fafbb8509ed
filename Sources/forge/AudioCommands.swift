import ArgumentParser
import Foundation
import TensorCore
import DataIO
import Models
import Training
import Figures
import Metrics
import Sampling

// The audio side of `forge train gan`, `forge sample gan` and `forge bench gan`: the WaveGAN.
// `TrainGAN` / `SampleGAN` / `BenchGAN` route here when the data, the checkpoint or `--modality`
// says audio.

/// What a model learns from.
enum Modality: String, ExpressibleByArgument, CaseIterable {
    case auto, image, audio

    /// This modality, or for `auto` whether `data` is a folder of sound files.
    func isAudio(data: String) -> Bool {
        switch self {
        case .audio: return true
        case .image: return false
        case .auto: return AudioFolder.isAudioFolder(data)
        }
    }
}

extension TrainGAN {
    /// `--modality`, or for `auto` whether `--data` is a folder of sound files.
    var isAudio: Bool { modality.isAudio(data: data) }

    /// Trains a WaveGAN on the audio folder `--data`.
    func runAudio() throws {
        guard WaveGANConfig.lengths.contains(length) else { throw ValidationError("--length must be 4096, 8192 or 16384") }
        let runDirectory = training.runDirectory(kind: "wavegan", data: data)
        let world = try DataParallelGroup.fromEnvironment()  // under mpirun: this rank of the job
        let say = onRankZero(world, forge.say)
        var config = WaveGANConfig()
        let savedConfig = try training.savedConfig(WaveGANConfig.self, kind: "wavegan", runDirectory: runDirectory)
        let resumingRun = savedConfig != nil
        if let saved = savedConfig {
            config = saved
            func given<T>(_ v: T?) -> String? { v.map { "\($0)" } }
            try refuseResumeChanges([("--lr", given(lr), "\(config.learningRate)"), ("--beta1", given(beta1), "\(config.beta1)"),
                                     ("--beta2", given(beta2), "\(config.beta2)"), ("--ngf", given(ngf), "\(config.ngf)"),
                                     ("--ndf", given(ndf), "\(config.ndf)"), ("--seed", given(training.seed), "\(config.seed)")])
        } else {
            guard let sampleRate = rate ?? AudioFolder.firstSampleRate(in: data) else {
                throw ValidationError("no readable audio files in \(data)")
            }
            config.length = length
            config.sampleRate = sampleRate
            (config.nz, config.ngf, config.ndf) = (nz, ngf ?? 32, ndf ?? 32)
            config.phaseShuffle = phaseShuffle
            (config.learningRate, config.beta1, config.beta2) = (lr ?? 2e-4, beta1 ?? 0.5, beta2 ?? 0.999)  // the DCGAN defaults
            config.batchSize = batch
            config.seed = training.seedValue
        }
        if let problem = config.problem { throw ValidationError(problem) }
        let start = Date()
        let folder: AudioFolder
        let warn = onRankZero(world, printError)
        folder = try AudioFolder(path: data, sampleRate: config.sampleRate, length: config.length, warn: warn)
        if !resumingRun { config.batchSize = batchSizeFitting(config.batchSize, items: folder.count, noun: "clips", warn: warn) }
        say("data: \(folder.count) clips of \(config.length) samples at \(config.sampleRate) Hz "
              + String(format: "(%.2f s each) from %@", Double(config.length) / Double(config.sampleRate), data)
              + (folder.skipped.isEmpty ? "" : ", \(folder.skipped.count) skipped")
              + String(format: " (%.1f s)", Date().timeIntervalSince(start)))
        let gan = WaveGAN(config)
        say("model: WaveGAN \(config.length) samples, d=\(config.ngf)/\(config.ndf), kernel \(config.kernelSize) stride 4, "
              + "phase shuffle \(config.phaseShuffle), BCE loss, G \(gan.generator.parameterCount) / D \(gan.discriminator.parameterCount) parameters"
              + " · BLAS \(BLAS.coreName), \(Threads.count) threads")
        var options = training.options(runDirectory: runDirectory, defaultEpochs: 5, logEvery: 50)
        let task = try GANTrainingTask(gan: gan, clips: folder.clips, samplesDirectory: options.samplesDirectory,
                                            sampleCount: 4, sampleEvery: sampleEvery)
        options.dataParallel = world
        task.synchronizesBatchNorm = syncBatchnorm
        task.verifiesReplicas = ProcessInfo.processInfo.environment["FORGE_VERIFY_REPLICAS"] == "1"  // tests: compare the ranks after every step
        try runTraining(task, options) { summary in
            say(ganSummary(summary))
            say("samples: \(options.samplesDirectory)/latest_K.wav + latest.png (waveforms, spectrograms)")
        }
    }
}

extension SampleGAN {
    /// Whether `--checkpoint` holds a WaveGAN (the kind stored in the file).
    var isAudioCheckpoint: Bool {
        (try? Checkpoint.load(checkpoint).kind) == "wavegan" || (out?.lowercased().hasSuffix(".wav") ?? false)
    }

    /// Writes clips from a WaveGAN checkpoint (see `sampleAudio`).
    func runAudio() throws {
        try sampleAudio(checkpoint: checkpoint, count: count, seed: seed, out: out, outDir: outDir)
    }
}

/// `forge sample gan|vae` on an audio checkpoint: `--out x.wav` (one clip; with `--count N` > 1,
/// x_0000.wav …) or `--out-dir DIR` (NNNN.wav), plus the waveform/spectrogram PNG beside them.
func sampleAudio(checkpoint: String, count: Int?, seed: UInt64, out: String?, outDir: String?) throws {
        do {
            let sampler = try openAudioClipSource(checkpoint: checkpoint)
            let n = count ?? 1
            let clips = try sampler.sample(count: n, seed: seed)
            let titles = (0..<n).map { "seed \(seed) clip \($0)" }
            if let outDir {
                let paths = try AudioSampling.writeWAVs(clips, to: outDir)
                try AudioSampling.writeFigure(clips, titles: titles, to: outDir + "/spectrograms.png")
                say("wrote \(paths.count) WAVs (\(sampler.sampleRate) Hz) and spectrograms.png to \(outDir)/")
                return
            }
            let path = out ?? "samples/\(sampler.modelKind).wav"
            let stem = path.lowercased().hasSuffix(".wav") ? String(path.dropLast(4)) : path
            var written: [String] = []
            if n == 1 {
                try AudioSampling.writeWAV(clips[0], to: stem + ".wav")
                written = [stem + ".wav"]
            } else {
                for (i, clip) in clips.enumerated() {
                    let p = stem + String(format: "_%04d.wav", i)
                    try AudioSampling.writeWAV(clip, to: p)
                    written.append(p)
                }
            }
            try AudioSampling.writeFigure(clips, titles: titles, to: stem + ".png")
            say("wrote \(written.count == 1 ? written[0] : "\(written.count) clips \(stem)_NNNN.wav") (\(sampler.sampleRate) Hz, "
                  + "\(sampler.length) samples) and \(stem).png")
        }
}

extension BenchGAN {
    /// Times WaveGAN training steps on synthetic clips; reports clips/s and the GFLOP/s of the
    /// convolutions and dense layers (`WaveGAN.trainingFLOPsPerClip`).
    func runAudio() throws {
        var config = WaveGANConfig()
        (config.length, config.nz, config.ngf, config.ndf, config.batchSize) = (length, nz, ngf ?? 32, ndf ?? 32, batch)
        if let problem = config.problem { throw ValidationError(problem) }
        let gan = WaveGAN(config)
        var rng = RandomGenerator(seed: 0)
        let real = Tensor.uniform([batch, 1, length], low: -1, high: 1, generator: &rng)  // synthetic "clips"
        say("forge bench gan --modality audio: wavegan \(length) b\(batch) d\(config.ngf)/\(config.ndf) kernel \(config.kernelSize) · BLAS \(BLAS.coreName) "
              + "(OPENBLAS_CORETYPE=\(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "unset")), \(Threads.count) threads")
        let optimizers = GANOptimizers(for: gan)
        let timed = StepTiming.rounds(warmup: warmup, steps: steps, rounds: rounds,
                                      onRound: { r, round in say(String(format: "  round %d: %.1f ms/step", r + 1, round.secondsPerStep * 1000)) }) {
            _ = waveGANTrainingStep(gan, optimizers: optimizers, real: real, rng: &rng)
        }
        let median = StepTiming.median(timed.map(\.secondsPerStep)) * 1000
        let clipsPerSecond = Double(batch) * 1000 / median
        say(String(format: "wavegan%d b%d: median %.1f ms/step, %.1f samples/s, %.1f GFLOP/s (%.2f GFLOP per clip per step), max RSS %.0f MB",
                     length, batch, median, clipsPerSecond, clipsPerSecond * gan.trainingFLOPsPerClip / 1e9,
                     gan.trainingFLOPsPerClip / 1e9, StepTiming.peakResidentMiB))
    }
}

struct GenerateAudio: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audio",
        abstract: "Write a synthetic sound dataset from a WaveGAN or audio VAE checkpoint: DIR/NNNNNN.wav + manifest.csv (per-item seeds, --only, --resume).")

    @Option(help: "The WaveGAN or audio VAE checkpoint (.safetensors) or a run folder.", completion: .file(extensions: ["safetensors"])) var checkpoint: String
    @Option(help: "Number of clips.") var count: Int
    @Option(help: "Output folder.", completion: .file()) var out: String
    @Option(help: "Run seed; clip i uses a seed derived from (seed, i).") var seed: UInt64 = defaultSeed
    @Option(help: "Clips per forward pass (recorded in the manifest; keep it when resuming).") var batch: Int = 32
    @Flag(help: "Continue an interrupted run: keep valid clips, generate the missing ones.") var resume = false
    @Option(help: "Recreate only clip N (same arguments as the original run).") var only: Int?
    @Option(help: "Also write a waveform/spectrogram PNG of the first (up to 8) clips.") var figure: String?

    func validate() throws {
        guard count >= 1 else { throw ValidationError("--count must be positive") }
        guard batch >= 1 else { throw ValidationError("--batch must be positive") }
        if resume && only != nil { throw ValidationError("give --resume or --only, not both") }
    }

    func run() throws {
        try runGeneration { group, say in
            let options = AudioGenerationOptions(count: count, seed: seed, batchSize: batch, resume: resume, only: only)
            let generator = try AudioDatasetGenerator(checkpoint: Checkpoint.file(at: checkpoint), options: options, outputDirectory: out)
            let c = generator.sampler
            say("generate audio: \(count) clips × \(c.length) samples at \(c.sampleRate) Hz from \(c.modelKind) → \(out) · checkpoint sha256 \(generator.checkpointSHA256.prefix(16))…")
            let report = try generator.run(group: group) { done, total in say("  \(done)/\(total) clips") }
            guard group?.isRoot != false else { return }
            say(String(format: "wrote %d clips (%@kept %d from an earlier run) in %.1f s: %.1f clips/s; manifest %@/manifest.csv%@",
                         report.written, only != nil ? "--only, " : "", report.kept, report.seconds, report.itemsPerSecond, out,
                         group.map { "; \($0.size) ranks" } ?? ""))
            if let figure {
                let clips = try generator.items.prefix(8).map { try AudioIO.read(path: out + "/" + $0.file) }
                try AudioSampling.writeFigure(clips, titles: generator.items.prefix(8).map { "\($0.file) seed \($0.seed)" }, to: figure)
                say("figure: \(figure)")
            }
        }
    }
}

extension TrainVAE {
    /// `--modality`, or for `auto` whether `--data` is a folder of sound files.
    var isAudio: Bool { modality.isAudio(data: data) }

    /// Trains the 1-D conv audio VAE (Gaussian likelihood with learned σ) on the audio folder `--data`.
    func runAudio() throws {
        guard WaveGANConfig.lengths.contains(length) else { throw ValidationError("--length must be 4096, 8192 or 16384") }
        let runDirectory = training.runDirectory(kind: "audiovae", data: data)
        let world = try DataParallelGroup.fromEnvironment()  // under mpirun: this rank of the job
        let say = onRankZero(world, forge.say)
        var config = VAEConfig.audio()
        let savedConfig = try training.savedConfig(VAEConfig.self, kind: "audiovae", runDirectory: runDirectory)
        let resumingRun = savedConfig != nil
        if let saved = savedConfig {
            config = saved
            func given<T>(_ v: T?) -> String? { v.map { "\($0)" } }
            try refuseResumeChanges([("--lr", given(lr), "\(config.learningRate)"), ("--latent", given(latent), "\(config.latent)"),
                                     ("--hidden", given(hidden), "\(config.hidden)"), ("--batch", given(batch), "\(config.batchSize)"),
                                     ("--seed", given(training.seed), "\(config.seed)")])
        } else {
            guard let sampleRate = rate ?? AudioFolder.firstSampleRate(in: data) else { throw ValidationError("no readable audio files in \(data)") }
            (config.length, config.sampleRate, config.latent, config.hidden) = (length, sampleRate, latent ?? 64, hidden ?? 16)
            (config.learningRate, config.batchSize, config.seed) = (lr ?? 1e-3, batch ?? 16, training.seedValue)
        }
        if let problem = config.problem { throw ValidationError(problem) }
        let folder: AudioFolder
        let warn = onRankZero(world, printError)
        folder = try AudioFolder(path: data, sampleRate: config.sampleRate, length: config.length, warn: warn)
        if !resumingRun { config.batchSize = batchSizeFitting(config.batchSize, items: folder.count, noun: "clips", warn: warn) }
        say("data: \(folder.count) clips of \(config.length) samples at \(config.sampleRate) Hz from \(data)"
              + (folder.skipped.isEmpty ? "" : ", \(folder.skipped.count) skipped"))
        let vae = VAE(config)
        say("model: VAE, 1-D case (conv1d): \(config.length) samples, width \(config.hidden), latent \(config.latent), kernel \(config.kernelSize) stride 4, "
              + "Gaussian likelihood with learned σ, \(vae.parameterCount) parameters · BLAS \(BLAS.coreName), \(Threads.count) threads")
        var options = training.options(runDirectory: runDirectory, defaultEpochs: 10, logEvery: 100)
        options.dataParallel = world
        let task = try AudioVAETrainingTask(vae: vae, clips: folder.clips, samplesDirectory: options.samplesDirectory, sampleEvery: sampleEvery)
        try runTraining(task, options) { summary in
            let m = summary.lastMetrics
            say(outcomeWords(summary) + String(format: "; -ELBO %.1f nats/clip (recon %.1f, KL %.1f), σ %.4f",
                         m["loss"] ?? .nan, m["reconstruction"] ?? .nan, m["kl"] ?? .nan, m["sigma"] ?? .nan))
            say("samples: \(options.samplesDirectory)/latest_K.wav + latest.png (prior samples: waveforms, spectrograms)")
        }
    }
}

extension SampleVAE {
    /// Writes clips from an audio VAE checkpoint (see `sampleAudio`).
    func runAudio() throws {
        try sampleAudio(checkpoint: checkpoint, count: count, seed: seed, out: out, outDir: outDir)
    }
}
