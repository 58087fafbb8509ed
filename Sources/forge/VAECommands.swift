import ArgumentParser
import Foundation
import TensorCore
import DataIO
import Models
import Training
import Figures
import Metrics
import Sampling

// `forge train vae`, `forge sample vae`, `forge eval vae`, `forge bench vae`.

extension VAEArchitecture: ExpressibleByArgument {}
extension VAELikelihood: ExpressibleByArgument {}

/// Writes a line to stderr.

/// Loads `--data` in [0, 1] pixels; IDX folders default to 1 channel, image folders to 3.
func loadUnitRange(_ path: String, size: Int, channels: Int?, split: IDX.Split = .train) throws -> ImageSet {
    let isIDX = IDX.findFiles(in: path, split: split) != nil
    return VAEData.unitRange(try ImageDataset.load(path: path, size: size, channels: channels ?? (isIDX ? 1 : 3), split: split))
}

/// Whether `path` has a held-out split of its own (IDX t10k/test files, or test/ or val/ beside train/).
func hasHeldOutSplit(_ path: String) -> Bool {
    if IDX.findFiles(in: path, split: .test) != nil { return true }
    let fm = FileManager.default
    var d: ObjCBool = false
    return fm.fileExists(atPath: path + "/train", isDirectory: &d) && d.boolValue
        && ["test", "val"].contains { fm.fileExists(atPath: path + "/" + $0, isDirectory: &d) && d.boolValue }
}

struct TrainVAE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "Train a VAE (pytorch/examples architecture by default) on an image folder or IDX files.",
        discussion: """
        Prints the negative ELBO in nats per image each epoch like pytorch/examples ('Average loss' on the \
        training data, 'Test set loss' on the held-out split) and writes reconstruction_E.png, sample_E.png, \
        epochs.csv, metrics.csv and loss.png to the samples folder. The held-out split is --val DIR, else \
        --val-split F, else the data's own test split (IDX t10k files, test/ or val/), else 10% of the data.
        """)

    @Option(help: "Image folder, a folder of MNIST-style IDX files, or a folder of .wav/.flac/.ogg files (1-D conv VAE).", completion: .file()) var data: String
    @Option(help: "auto (audio when --data holds sound files and no images), image or audio.") var modality: Modality = .auto
    @Option(help: "Audio: clip length in samples, 4096, 8192 or 16384.") var length: Int = 4096
    @Option(help: "Audio: sample rate (default: the folder's rate; other files are resampled).") var rate: Int?
    @Option(help: "Audio: epochs between written WAV samples and spectrograms.") var sampleEvery: Int = 1
    @Option(help: "Image side (images are resized).") var size: Int = 28
    @Option(help: "Channels: 1 or 3 (default: 1 for IDX data, 3 otherwise).") var channels: Int?
    @Option(help: "Encoder/decoder: mlp (pytorch/examples) or conv.") var arch: VAEArchitecture = .mlp
    @Option(help: "Latent size (default 20; audio 64).") var latent: Int?
    @Option(help: "MLP hidden width (default 400) or the first conv layer's channels (default 32).") var hidden: Int?
    @Option(help: "p(x|z): bernoulli (default for 1 channel), gaussian (fixed σ), gaussian-learned (default for RGB).")
    var likelihood: VAELikelihood?
    @Option(help: "σ of the fixed Gaussian likelihood, in [0, 1] pixel units.") var sigma: Float = 0.1
    @Flag(help: "Condition on the class labels (CVAE).") var conditional = false
    @Option(help: "Batch size (default 128; audio 16).") var batch: Int?
    @Option(parsing: .unconditional, help: "Adam learning rate (default 1e-3).") var lr: Float?
    @Option(help: "Hold out this fraction of --data for the test loss.") var valSplit: Double?
    @Option(help: "Held-out images (a folder, or IDX files whose test split is used).", completion: .file()) var val: String?
    @OptionGroup var training: RunFlags

    func validate() throws {
        if let channels, channels != 1 && channels != 3 { throw ValidationError("--channels must be 1 or 3") }
        if val != nil && valSplit != nil { throw ValidationError("give --val or --val-split, not both") }
        if let batch, batch < 1 { throw ValidationError("--batch must be positive") }
        guard sampleEvery >= 1 else { throw ValidationError("--sample-every must be at least 1") }
    }

    func run() throws {
        if isAudio { try training.refuseFineTuningFlags(except: [], command: "train vae on sound"); return try runAudio() }
        try training.refuseFineTuningFlags(except: ["--init", "--init-optimizer", "--freeze", "--new-classes"], command: "train vae")
        let (latent, batch) = (self.latent ?? 20, self.batch ?? 128)
        let runDirectory = training.runDirectory(kind: "vae", data: data)
        let world = try DataParallelGroup.fromEnvironment()  // under mpirun: this rank of the job
        let say = onRankZero(world, forge.say)
        do {
            let saved = try training.savedConfig(VAEConfig.self, kind: "vae", runDirectory: runDirectory)
            let parent = try training.initCheckpoint.map { try Checkpoint.load($0, expectedKind: "vae") }  // --init (FineTuningFlags.swift)
            var config = try saved ?? parent?.config(as: VAEConfig.self) ?? VAEConfig()
            if parent != nil { config.seed = training.seedValue }
            let fromCheckpoint = saved != nil || parent != nil
            let start = Date()
            let imageSize = fromCheckpoint ? config.imageSize : size
            let channelCount = fromCheckpoint ? config.channels : channels
            var train = try loadUnitRange(data, size: imageSize, channels: channelCount)
            var heldOut: ImageSet
            var heldOutName: String
            if let val {
                heldOut = try loadUnitRange(val, size: imageSize, channels: train.channels,
                                            split: hasHeldOutSplit(val) ? .test : .train)
                heldOutName = val
            } else if valSplit == nil && hasHeldOutSplit(data) {
                heldOut = try loadUnitRange(data, size: imageSize, channels: train.channels, split: .test)
                heldOutName = "the test split of \(data)"
            } else {
                let fraction = valSplit ?? 0.1
                (train, heldOut) = try VAEData.split(train, heldOutFraction: fraction, seed: fromCheckpoint ? config.seed : training.seedValue)
                heldOutName = String(format: "%.0f%% of %@", fraction * 100, data)
            }
            say("data: \(train.count) training images \(train.channels)x\(train.size)x\(train.size) from \(data), "
                  + "\(heldOut.count) held out from \(heldOutName)" + String(format: " (%.1f s)", Date().timeIntervalSince(start))
                  + (train.isLabelled ? "; \(train.classNames.count) classes, named from \(train.classSource)" : ""))
            var reinitialized: Set<String> = []
            if let parent {
                reinitialized = try fineTuneConfig(&config, parent: parent, dataClasses: train.isLabelled ? train.classNames : [])
            } else if fromCheckpoint {
                try refuseResumeChanges([
                    ("--latent", self.latent.map { "\($0)" }, "\(config.latent)"), ("--hidden", hidden.map { "\($0)" }, "\(config.hidden)"),
                    ("--batch", self.batch.map { "\($0)" }, "\(config.batchSize)"), ("--lr", lr.map { "\($0)" }, "\(config.learningRate)"),
                    ("--seed", training.seed.map { "\($0)" }, "\(config.seed)"),
                    ("--likelihood", likelihood.map { $0.rawValue }, config.likelihood.rawValue)])
            } else {
                config.arch = arch
                config.imageSize = size
                config.channels = train.channels
                config.latent = latent
                config.hidden = hidden ?? (arch == .mlp ? 400 : 32)
                config.likelihood = likelihood ?? (train.channels == 1 ? .bernoulli : .gaussianLearned)
                config.gaussianStd = sigma
                if conditional {
                    guard train.isLabelled && train.classNames.count >= 2 else {
                        throw ValidationError("--conditional needs data with at least 2 classes")
                    }
                    config.classCount = train.classNames.count
                }
                (config.learningRate, config.batchSize, config.seed) = (lr ?? 1e-3, batch, training.seedValue)
            }
            if let problem = config.problem { throw ValidationError(problem) }
            let vae = VAE(config)
            say("model: VAE \(config.arch.rawValue) \(config.channels)x\(config.imageSize)x\(config.imageSize), latent \(config.latent), "
                  + "hidden \(config.hidden), \(config.likelihood.rawValue) likelihood"
                  + (config.isConditional ? ", conditional on \(config.classCount) classes" : "")
                  + ", \(vae.parameterCount) parameters · BLAS \(BLAS.coreName), \(Threads.count) threads")
            var options = training.options(runDirectory: runDirectory, defaultEpochs: 10, logEvery: 100)
            let samplesDirectory = options.samplesDirectory
            let task = try VAETrainingTask(vae: vae, data: train, heldOut: heldOut, samplesDirectory: samplesDirectory)
            options.dataParallel = world
            if let parent { options.extraMetadata = try initialize(task, parent: parent, reinitialized: reinitialized) }
            try runTraining(task, options) { summary in
                if let last = task.history.last {
                    say(outcomeWords(summary) + String(format: "; train -ELBO %.2f, test -ELBO %.2f nats/image",
                                 last.trainNegativeELBO, last.testNegativeELBO ?? .nan))
                } else {
                    say(outcomeWords(summary))
                }
                say("samples: \(samplesDirectory)/reconstruction_E.png, sample_E.png, epochs.csv")
            }
        }
    }
}

struct SampleVAE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "Decode draws from the prior of a VAE checkpoint: a grid, one PNG per image, or a latent interpolation.")

    @Option(help: "The checkpoint (.safetensors) written by `forge train vae`.", completion: .file(extensions: ["safetensors"])) var checkpoint: String
    @Option(help: "Number of images (default 64) or clips (default 1).") var count: Int?
    @Option(help: "Seed of the latent vectors.") var seed: UInt64 = defaultSeed
    @Option(name: .customLong("class"), help: "Class name (or id) for every image (conditional models).") var className: String?
    @Option(help: "Grid PNG to write (default samples/vae.png); audio checkpoints: x.wav (+ x.png spectrograms).", completion: .file()) var out: String?
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
        if (try? Checkpoint.load(checkpoint).kind) == "audiovae" { return try runAudio() }
        let count = self.count ?? 64
        try writeImageSamples(open: { try VAESampler(checkpoint: checkpoint) }, count: count, seed: seed, className: className,
                              interpolate: interpolate, steps: steps, columns: columns, labels: !noLabels, out: out, outDir: outDir,
                              defaultOut: "samples/vae.png", interpolationOut: "samples/vae-interpolation.png")
    }
}

struct EvalVAE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "Negative ELBO and the IWAE estimate of −log p(x) (Burda et al.), in nats per image, on a folder of images.")

    @Option(help: "The checkpoint (.safetensors) written by `forge train vae`.", completion: .file(extensions: ["safetensors"])) var checkpoint: String
    @Option(help: "Images: a folder, or IDX files (their test split unless --split train).", completion: .file()) var data: String
    @Option(help: "Which split of --data: test (default when it has one) or train.") var split: String?
    @Option(help: "Importance samples k of the IWAE bound (1 = the ELBO).") var iw: Int = 1000
    @Option(help: "Evaluate only the first N images.") var limit: Int?
    @Option(help: "Seed of the reparameterisation noise.") var seed: UInt64 = defaultSeed

    func validate() throws {
        guard iw >= 1 else { throw ValidationError("--iw must be at least 1") }
        if let split, split != "train" && split != "test" { throw ValidationError("--split must be train or test") }
        if let limit, limit < 1 { throw ValidationError("--limit must be positive") }
    }

    func run() throws {
        do {
            let sampler = try VAESampler(checkpoint: checkpoint)
            let c = sampler.config
            let which: IDX.Split = split == "train" ? .train : (split == "test" || hasHeldOutSplit(data) ? .test : .train)
            var set = try loadUnitRange(data, size: c.imageSize, channels: c.channels, split: which)
            if let limit, limit < set.count {
                set = ImageSet(images: set.images.slice(axis: 0, 0..<limit).detachedCopy(),
                               labels: set.isLabelled ? Array(set.labels[0..<limit]) : [], classNames: set.classNames)
            }
            if c.isConditional && (!set.isLabelled || set.classNames.count != c.classCount) {
                throw ValidationError("this conditional checkpoint needs labelled images of its \(c.classCount) classes")
            }
            say("eval: \(set.count) images (\(which == .test ? "test" : "train") split of \(data)), k = \(iw) importance samples")
            var rng = RandomGenerator(seed: seed)
            let t0 = Date()
            let r = VAEEvaluator.evaluate(sampler.vae, on: set, batchSize: max(1, min(128, 16_384 / iw)), importanceSamples: iw,
                                          rng: &rng) { done in
                if done % 1000 < max(1, min(128, 16_384 / iw)) || done == set.count {
                    FileHandle.standardError.write(Data(String(format: "\r  %d/%d images, %.0f s", done, set.count, Date().timeIntervalSince(t0)).utf8))
                }
            }
            FileHandle.standardError.write(Data("\n".utf8))
            say(String(format: "negative ELBO:        %.4f nats/image", r.negativeELBO))
            say(String(format: "IWAE -log p(x), k=%d: %.4f nats/image", iw, r.iwae ?? .nan))
            say(String(format: "(%.1f s)", Date().timeIntervalSince(t0)))
        }
    }
}

struct BenchVAE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "Time VAE training steps on synthetic data; bench/torch_ref.py (make bench) runs the same in PyTorch.")

    @Option(help: "Batch size.") var batch: Int = 128
    @Option(help: "Image side; input size = side².") var side: Int = 28
    @Option(help: "Hidden width.") var hidden: Int = 400
    @Option(help: "Latent size.") var latent: Int = 20
    @Option(help: "Untimed steps first.") var warmup: Int = 20
    @Option(help: "Steps per timed round.") var steps: Int = 200
    @Option(help: "Timed rounds (the median is reported).") var rounds: Int = 3

    func run() throws {
        var config = VAEConfig()
        (config.imageSize, config.hidden, config.latent, config.batchSize) = (side, hidden, latent, batch)
        if let problem = config.problem { throw ValidationError(problem) }
        let vae = VAE(config)
        var rng = RandomGenerator(seed: 0)
        // A pool of synthetic batches in [0, 1] (BCE targets), cycled through, as bench/torch_ref.py does.
        let pool = (0..<8).map { _ in Tensor.uniform([batch, 1, side, side], generator: &rng) }
        var next = 0
        // fc1, fc21, fc22, fc3, fc4: 2 FLOPs per weight per image forward, backward twice that
        let d = side * side
        let trainingFLOPs = 3 * 2.0 * Double(d * hidden + 2 * hidden * latent + latent * hidden + hidden * d)
        say(String(format: "FLOPS vae %.6e per sample (counted from the layer shapes)", trainingFLOPs))
        let optimizer = vae.makeOptimizer()
        func step() { vaeTrainingStep(vae, optimizer: optimizer, batch: pool[next % pool.count], rng: &rng); next += 1 }
        let env = ProcessInfo.processInfo.environment
        say("forge bench vae: \(side * side)-\(hidden)-\(latent) b\(batch) · BLAS \(BLAS.coreName) "
              + "(OPENBLAS_CORETYPE=\(env["OPENBLAS_CORETYPE"] ?? "unset")), kernels \(BLAS.kernelLevel), \(Threads.count) threads")
        let timed = StepTiming.rounds(warmup: warmup, steps: steps, rounds: rounds, onRound: { r, round in
            let ms = round.secondsPerStep * 1000
            say(String(format: "  round %d: %.3f ms/step, %.0f samples/s", r + 1, ms, Double(batch) * 1000 / ms))
        }, step)
        let median = StepTiming.median(timed.map(\.secondsPerStep)) * 1000
        let rate = Double(batch) * 1000 / median
        say(String(format: "vae %d-%d-%d b%d: median %.3f ms/step, %.0f samples/s; one 60000-image epoch of steps ~%.2f s",
                     side * side, hidden, latent, batch, median, rate, 60_000 / rate))
        say(String(format: "RESULT vae %.2f samples/s", rate))
    }
}
