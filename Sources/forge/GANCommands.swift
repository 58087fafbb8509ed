import ArgumentParser
import Foundation
import TensorCore
import DataIO
import Models
import Training
import Figures
import Metrics
import Sampling

// `forge train gan`, `forge sample gan`, `forge bench gan`.

enum ConditionalMode: String, ExpressibleByArgument, CaseIterable {
    case auto, on, off
}

/// `--recipe`: auto (cbn-sn for a conditional model, dcgan otherwise) or a named recipe.
enum GANRecipeChoice: String, ExpressibleByArgument, CaseIterable {
    case auto, dcgan
    case dcganConditionalBatchNorm = "dcgan-cbn"
    case conditionalSpectralNorm = "cbn-sn"
    case stable

    /// The library recipe this names; `auto` resolves by whether the model is conditional.
    func recipe(conditional: Bool) -> GANRecipe {
        switch self {
        case .auto: return conditional ? .conditionalSpectralNorm : .dcgan
        case .dcgan: return .dcgan
        case .dcganConditionalBatchNorm: return .dcganConditionalBatchNorm
        case .conditionalSpectralNorm: return .conditionalSpectralNorm
        case .stable: return .stable
        }
    }
}

enum OnOff: String, ExpressibleByArgument, CaseIterable {
    case on, off
    var isOn: Bool { self == .on }
}

extension GeneratorConditioning: ExpressibleByArgument {}
extension GANLoss: ExpressibleByArgument {}

/// Prints a line to stdout unbuffered (the progress bar writes there directly; `print` would buffer
/// and reorder lines in a log file).
func say(_ text: String) {
    FileHandle.standardOutput.write(Data((text + "\n").utf8))
}

/// The closing line of a GAN run (image or audio): outcome, progress and the last step's scalars.
func ganSummary(_ summary: TrainingSummary) -> String {
    let m = summary.lastMetrics
    return outcomeWords(summary) + String(format: "; loss_d %.4f, loss_g %.4f, D(x) %.4f, D(G(z)) %.4f",
                  m["loss_d"] ?? .nan, m["loss_g"] ?? .nan, m["d_x"] ?? .nan, m["d_g_z1"] ?? .nan)
}

/// Prints to stderr.
func printError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// `print` on rank 0 of `world` (or outside mpirun), nothing on the other ranks: one copy of each
/// message from a data-parallel job.
func onRankZero(_ world: DataParallelGroup?, _ print: @escaping (String) -> Void) -> (String) -> Void {
    world?.isRoot == false ? { _ in } : print
}

struct TrainGAN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gan",
        abstract: "Train a DCGAN (class-conditional when the data has classes) on an image folder or IDX files, or a WaveGAN on a folder of sounds.")

    @Option(help: "Image folder (class sub-folders = classes), a folder of MNIST-style IDX files, or a folder of .wav/.flac/.ogg files.", completion: .file())
    var data: String
    @Option(help: "auto (audio when --data holds sound files and no images), image or audio.")
    var modality: Modality = .auto
    @Option(help: "Audio: clip length in samples, 4096, 8192 or 16384.") var length: Int = 4096
    @Option(help: "Audio: sample rate (default: the folder's rate; other files are resampled).") var rate: Int?
    @Option(help: "Audio: phase-shuffle radius of the discriminator (0 = off).") var phaseShuffle: Int = 2
    @Option(help: "Audio: epochs between written WAV samples and spectrograms.") var sampleEvery: Int = 1
    @Option(help: "Image size: 32 or 64 (28-pixel data is resized).")
    var size: Int = 32
    @Option(help: "Channels: 1 or 3 (default: 1 for IDX data, 3 otherwise).")
    var channels: Int?
    @Option(help: "Batch size.")
    var batch: Int = 64
    @Option(help: "Class conditioning: auto (on when the data has classes), on, off.")
    var conditional: ConditionalMode = .auto
    @Option(help: "Latent size.") var nz: Int = 100
    @Option(help: "Generator width (default 64 for images, 32 for audio).") var ngf: Int?
    @Option(help: "Discriminator width (default 64 for images, 32 for audio).") var ndf: Int?
    @Option(help: "Label embedding size of the conditional generator.") var embed: Int = 50
    @Option(help: "Training recipe: auto (cbn-sn when conditional, else dcgan), dcgan (pytorch/examples), dcgan-cbn (dcgan with per-class BatchNorm in G: the fix for the conditional collapse), cbn-sn (dcgan-cbn with a spectrally normalised D and an EMA 0.999 of G: the best measured on Fashion-MNIST) or stable (cBN G, spectral-norm D, hinge, TTUR G 1e-4 / D 4e-4 betas (0, 0.9), EMA 0.999); the switches below override its parts.")
    var recipe: GANRecipeChoice = .auto
    @Option(help: "Conditional G: concat (label embedding concatenated to z) or cbn (per-class BatchNorm). Default: the recipe's.")
    var gConditioning: GeneratorConditioning?
    @Option(help: "Spectral normalisation in D (on, off). Default: the recipe's.") var spectralNorm: OnOff?
    @Option(help: "Loss: bce (non-saturating) or hinge. Default: the recipe's.") var loss: GANLoss?
    @Option(parsing: .unconditional, help: "EMA decay of G's weights for sampling (0 = off). Default: the recipe's.") var ema: Float?
    @Option(help: "DiffAugment (translation + cutout on every batch D sees, real and fake, both steps; for small folders): on, off. Default: off.") var diffAugment: OnOff?
    @Option(help: "Minibatch standard deviation channel before D's last layer (groups of 4): on, off. Default: off.") var minibatchStd: OnOff?
    @Option(parsing: .unconditional, help: "Adam learning rate (of G; of D too unless --lr-d). Default: the recipe's (dcgan 2e-4, stable 1e-4).") var lr: Float?
    @Option(parsing: .unconditional, help: "Adam learning rate of D. Default: the recipe's (dcgan = --lr, stable 4e-4).") var lrD: Float?
    @Option(parsing: .unconditional, help: "Adam beta1. Default: the recipe's (dcgan 0.5, stable 0).") var beta1: Float?
    @Option(parsing: .unconditional, help: "Adam beta2. Default: the recipe's (dcgan 0.999, stable 0.9).") var beta2: Float?
    @Flag(help: "Data parallel (mpirun -np N): BatchNorm statistics over the whole global --batch, all ranks together, which reproduces a single process's training up to float rounding. Without it each rank normalises with the statistics of its own --batch ÷ N images or clips (PyTorch DDP's default), which trains differently from one process. With one process it is accepted and does nothing.")
    var syncBatchnorm = false
    @OptionGroup var training: RunFlags

    func validate() throws {
        guard [32, 64].contains(size) else { throw ValidationError("--size must be 32 or 64") }
        if let channels, channels != 1 && channels != 3 { throw ValidationError("--channels must be 1 or 3") }
        guard batch >= 2 else { throw ValidationError("--batch must be at least 2") }
        guard sampleEvery >= 1 else { throw ValidationError("--sample-every must be at least 1") }
    }

    func run() throws {
        if isAudio { try training.refuseFineTuningFlags(except: [], command: "train gan on sound"); return try runAudio() }
        try training.refuseFineTuningFlags(except: ["--init", "--init-optimizer", "--freeze", "--new-classes"], command: "train gan")
        let runDirectory = training.runDirectory(kind: "gan", data: data)
        let world = try DataParallelGroup.fromEnvironment()  // under mpirun: this rank of the job
        let say = onRankZero(world, forge.say)
        let saved = try training.savedConfig(DCGANConfig.self, kind: "gan", runDirectory: runDirectory)
        let parent = try training.initCheckpoint.map { try Checkpoint.load($0, expectedKind: "gan") }  // --init (FineTuningFlags.swift)
        var config = try saved ?? parent?.config(as: DCGANConfig.self) ?? DCGANConfig()
        let fromCheckpoint = saved != nil || parent != nil
        let isIDX = IDX.findFiles(in: data, split: .train) != nil
        let channelCount = fromCheckpoint ? config.channels : (channels ?? (isIDX ? 1 : 3))
        let imageSize = fromCheckpoint ? config.imageSize : size
        let start = Date()
        let set = try ImageDataset.load(path: data, size: imageSize, channels: channelCount)
        say("data: \(set.count) images \(set.channels)x\(set.size)x\(set.size) from \(data)"
              + (set.isLabelled ? ", \(set.classNames.count) classes, named from \(set.classSource)" : "")
              + String(format: " (%.1f s)", Date().timeIntervalSince(start)))
        var reinitialized: Set<String> = []
        if let parent {
            reinitialized = try fineTuneConfig(&config, parent: parent, dataClasses: set.isLabelled ? set.classNames : [])
        } else if !fromCheckpoint {
            let hasClasses = set.isLabelled && set.classNames.count >= 2
            switch conditional {
            case .on:
                guard hasClasses else { throw ValidationError("--conditional on needs data with at least 2 classes (sub-folders)") }
                config.classCount = set.classNames.count
            case .auto: config.classCount = hasClasses ? set.classNames.count : 0
            case .off: config.classCount = 0
            }
            config.imageSize = imageSize
            config.channels = channelCount
            (config.nz, config.ngf, config.ndf, config.embedDim) = (nz, ngf ?? 64, ndf ?? 64, embed)
            applyRecipe(to: &config)
            config.batchSize = batchSizeFitting(batch, items: set.count, noun: "images", warn: onRankZero(world, printError))
            config.seed = training.seedValue
        } else {
            func given<T>(_ v: T?) -> String? { v.map { "\($0)" } }
            try refuseResumeChanges([
                ("--lr", given(lr), "\(config.learningRate)"), ("--lr-d", given(lrD), "\(config.discriminatorLearningRate)"),
                ("--beta1", given(beta1), "\(config.beta1)"), ("--beta2", given(beta2), "\(config.beta2)"),
                ("--ema", given(ema), "\(config.emaDecay)"), ("--ngf", given(ngf), "\(config.ngf)"), ("--ndf", given(ndf), "\(config.ndf)"),
                ("--seed", given(training.seed), "\(config.seed)")])
        }
        if let problem = config.problem { throw ValidationError(problem) }
        let gan = DCGAN(config)
        say("model: DCGAN \(config.imageSize)x\(config.imageSize)x\(config.channels), "
              + (config.isConditional ? "conditional on \(config.classCount) classes (projection D, G \(config.generatorConditioning.rawValue))" : "unconditional")
              + ", D \(config.spectralNorm ? "spectral norm" : "BatchNorm")" + (config.minibatchStd ? " + minibatch std" : "")
              + (config.diffAugment ? ", DiffAugment translation+cutout" : "") + ", loss \(config.loss.rawValue)"
              + String(format: ", lr G %g / D %g, betas (%g, %g), EMA %@", config.learningRate, config.discriminatorLearningRate,
                       config.beta1, config.beta2, config.emaDecay > 0 ? String(config.emaDecay) : "off")
              + ", G \(gan.generator.parameterCount) / D \(gan.discriminator.parameterCount) parameters"
              + " · BLAS \(BLAS.coreName), \(Threads.count) threads")
        var options = training.options(runDirectory: runDirectory, defaultEpochs: 5, logEvery: 50)
        let task = try GANTrainingTask(gan: gan, data: set, samplesDirectory: options.samplesDirectory)
        options.dataParallel = world
        task.synchronizesBatchNorm = syncBatchnorm
        task.verifiesReplicas = ProcessInfo.processInfo.environment["FORGE_VERIFY_REPLICAS"] == "1"  // tests: compare the ranks after every step
        if let parent { options.extraMetadata = try initialize(task, parent: parent, reinitialized: reinitialized) }
        try runTraining(task, options) { summary in
            say(ganSummary(summary))
            say("samples: \(options.samplesDirectory)/latest.png (per epoch: epoch_NNN.png)")
        }
    }
}

extension TrainGAN {
    /// The recipe's ingredients, then every switch given on the command line.
    func applyRecipe(to config: inout DCGANConfig) {
        config.apply(recipe.recipe(conditional: config.isConditional))
        if let gConditioning { config.generatorConditioning = gConditioning }
        if let spectralNorm { config.spectralNorm = spectralNorm.isOn }
        if let loss { config.loss = loss }
        if let ema { config.emaDecay = ema }
        if let diffAugment { config.diffAugment = diffAugment.isOn }
        if let minibatchStd { config.minibatchStd = minibatchStd.isOn }
        if let lr { config.learningRate = lr }
        if let lrD { config.learningRateD = lrD }
        if let beta1 { config.beta1 = beta1 }
        if let beta2 { config.beta2 = beta2 }
    }
}

/// The shipped image model (`checkpoints/fashion-cgan.safetensors`, made by scripts/ship-checkpoint.py):
/// the default `--checkpoint` of `sample gan` and `generate images`.
let shippedGANCheckpointName = "checkpoints/fashion-cgan.safetensors"

/// `path`, or for the default name the shipped file found beside the binary's package when the
/// current folder has none.
func resolveShippedGAN(_ path: String) -> String {
    guard path == shippedGANCheckpointName, !FileManager.default.fileExists(atPath: path) else { return path }
    return shippedCheckpoint(shippedGANCheckpointName) ?? path
}

struct SampleGAN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gan",
        abstract: "Draw images from a DCGAN checkpoint (a grid, one PNG per image, or a latent interpolation), or WAVs from a WaveGAN checkpoint.")

    @Option(help: "The checkpoint (.safetensors) written by `forge train gan` (default: the shipped Fashion-MNIST conditional GAN).",
            completion: .file(extensions: ["safetensors"]))
    var checkpoint: String = shippedGANCheckpointName
    @Option(help: "Number of images (default 64) or clips (default 1).") var count: Int?
    @Option(help: "Seed of the latent vectors.") var seed: UInt64 = defaultSeed
    @Option(name: .customLong("class"), help: "Class name (or id) for every image (conditional models).")
    var className: String?
    @Option(help: "Grid PNG to write (audio: x.wav, with x.png showing waveform and spectrogram).", completion: .file()) var out: String?
    @Option(help: "Write one PNG per image into this folder instead of a grid.", completion: .directory) var outDir: String?
    @Option(help: "Interpolate between the latent vectors of two seeds, e.g. 3,7.") var interpolate: String?
    @Option(help: "Images in the interpolation strip.") var steps: Int = 10
    @Option(help: "Grid columns.") var columns: Int = 8
    @Flag(help: "No class names beside the grid rows (conditional models label each row with its class).") var noLabels = false

    func validate() throws {
        if out != nil && outDir != nil { throw ValidationError("give --out or --out-dir, not both") }
        if let count, count <= 0 { throw ValidationError("--count must be positive") }
        guard columns > 0 else { throw ValidationError("--columns must be positive") }
    }

    func run() throws {
        if isAudioCheckpoint { return try runAudio() }
        let count = self.count ?? 64
        try writeImageSamples(open: { try GANSampler(checkpoint: resolveShippedGAN(checkpoint)) }, count: count, seed: seed, className: className,
                              interpolate: interpolate, steps: steps, columns: columns, labels: !noLabels, out: out, outDir: outDir,
                              defaultOut: "samples/gan.png", interpolationOut: "samples/interpolation.png")
    }
}

struct BenchGAN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gan",
        abstract: "Time one DCGAN (or WaveGAN, --modality audio) D+G step on synthetic data (pytorch/examples dcgan; bench/torch_ref.py is its PyTorch twin).")

    @Option(help: "image (DCGAN) or audio (WaveGAN).") var modality: Modality = .image
    @Option(help: "Audio: clip length in samples (4096, 8192, 16384).") var length: Int = 4096

    @Option(help: "Image size: 32 or 64.") var size: Int = 32
    @Option(help: "Batch size.") var batch: Int = 64
    @Option(help: "Channels.") var channels: Int = 3
    @Option var nz: Int = 100
    @Option(help: "Generator width (default 64 for images, 32 for audio).") var ngf: Int?
    @Option(help: "Discriminator width (default 64 for images, 32 for audio).") var ndf: Int?
    @Option(help: "Untimed steps first.") var warmup: Int = 5
    @Option(help: "Steps per timed round.") var steps: Int = 10
    @Option(help: "Timed rounds (the median is reported).") var rounds: Int = 3
    @Option(help: "Images: dcgan (pytorch/examples' step; bench/torch_ref.py dcgan32/64), or a conditional recipe with the EMA 0.999 of G: dcgan-cbn, cbn-sn or stable (bench/torch_ref.py cgan32-cbn / cgan32-cbn-sn / cgan32-stable).")
    var recipe: GANRecipeChoice = .dcgan
    @Option(help: "Classes of a conditional model, labels cycling through them (default: 10 for dcgan-cbn and stable, 0 for dcgan).")
    var classes: Int?

    func run() throws {
        if modality == .audio { return try runAudio() }
        let (ngf, ndf) = (self.ngf ?? 64, self.ndf ?? 64)
        var config = DCGANConfig()
        (config.imageSize, config.channels, config.nz, config.ngf, config.ndf, config.batchSize) = (size, channels, nz, ngf, ndf, batch)
        config.classCount = classes ?? (recipe == .dcgan || recipe == .auto ? 0 : 10)
        config.apply(recipe.recipe(conditional: config.isConditional))
        if recipe == .dcganConditionalBatchNorm { config.emaDecay = 0.999 }  // as its PyTorch twin, cgan32-cbn
        if let problem = config.problem { throw ValidationError(problem) }
        let gan = DCGAN(config)
        var rng = RandomGenerator(seed: 0)
        let real = Tensor.uniform([batch, channels, size, size], low: -1, high: 1, generator: &rng)  // synthetic "images"
        let labels = (0..<batch).map { config.isConditional ? $0 % config.classCount : 0 }
        let name = recipe == .dcgan || recipe == .auto ? "dcgan\(size)"
            : "cgan\(size)-" + [.stable: "stable", .conditionalSpectralNorm: "cbn-sn"][recipe, default: "cbn"]
        say("forge bench gan: \(name) b\(batch) ngf\(ngf) ndf\(ndf) nc\(channels) · BLAS \(BLAS.coreName) "
              + "(OPENBLAS_CORETYPE=\(ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] ?? "unset")), \(Threads.count) threads")
        say(String(format: "FLOPS %@ %.6e per sample (counted from the layer shapes: %.3f GFLOP per image per step)",
                   name, gan.trainingFLOPsPerImage, gan.trainingFLOPsPerImage / 1e9))  // for bench/run.py's GFLOP/s and % of peak
        let optimizers = GANOptimizers(for: gan)
        let ema = gan.makeEMA()
        // As bench/torch_ref.py measures the GAN: each step timed alone, a median per round, the median of the rounds.
        let timed = StepTiming.rounds(warmup: warmup, steps: steps, rounds: rounds, eachStepAlone: true, onRound: { r, round in
            say(String(format: "  round %d: median %.1f ms/step (min %.1f, max %.1f)", r + 1, round.secondsPerStep * 1000,
                       round.stepSeconds.min()! * 1000, round.stepSeconds.max()! * 1000))
        }) {
            _ = recipeGANStep(gan, optimizers: optimizers, ema: ema, real: real, labels: labels, rng: &rng)
        }
        let median = StepTiming.median(timed.map(\.secondsPerStep)) * 1000
        say(String(format: "%@ b%d: median %.1f ms/step, %.1f samples/s, max RSS %.0f MB",
                     name, batch, median, Double(batch) * 1000 / median, StepTiming.peakResidentMiB))
        say(String(format: "RESULT %@ %.2f samples/s", name, Double(batch) * 1000 / median))  // for bench/run.py
    }
}
