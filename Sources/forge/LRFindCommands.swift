import ArgumentParser
import Foundation
import TensorCore
import DataIO
import Models
import Training

// `forge lr-find char|gan|vae|classifier`: Leslie Smith's learning-rate range test on a fresh model
// built from the same flags as `forge train KIND`. The test is Training's `LearningRateFinder`; this
// file builds the task, prints and writes.

struct LRFind: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "lr-find",
        abstract: "Find a learning rate: train a fresh model with an exponentially growing rate until the loss diverges.",
        discussion: """
            Leslie Smith's range test. A fresh model (built from the same flags as `forge train KIND`, \
            nothing loaded or saved besides the outputs) trains for --steps steps while the rate grows \
            exponentially from --start-lr to --end-lr; every optimizer's rate is set before each step (a GAN's \
            D and G keep their ratio) and the recipe's own schedule is ignored. The loss followed is the \
            metric named loss, or for a GAN loss_d + loss_g (both players must stay stable). The test stops \
            when its bias-corrected moving average (β 0.98) passes 4× its minimum, or is NaN. It writes \
            lr_find.csv and lr_find.png (loss against log10 of the rate) into --out and prints the suggested \
            rate, read off the loss averaged over a centred window (no lag): the rate where it falls fastest \
            per factor of rate (steepest descent: the most progress per step while still stable), or, when \
            that is not found before the minimum, the minimum's rate / 10 (the minimum itself sits at the \
            edge of divergence). Both are printed. A rate near the suggestion is a good peak rate for --lr.
            """,
        subcommands: [LRFindChar.self, LRFindGAN.self, LRFindVAE.self, LRFindClassifier.self])
}

/// The flags of the range test itself, the same for every kind.
struct LRFindFlags: ParsableArguments {
    @Option(help: "The rate of the first step.") var startLr: Double = 1e-7
    @Option(help: "The rate the last step reaches.") var endLr: Double = 10
    @Option(help: "Steps of the test (fewer when the loss diverges).") var steps: Int = 200
    @Option(help: "Folder for lr_find.png and lr_find.csv (default lr-find-KIND).", completion: .directory) var out: String?
    @Option(help: "Seed of the weights and data order (default 1337).") var seed: UInt64?

    func validate() throws {
        if !(startLr > 0 && startLr.isFinite) { throw ValidationError("--start-lr must be a positive number, got \(startLr)") }
        if !(endLr > startLr && endLr.isFinite) { throw ValidationError("--end-lr must be above --start-lr (\(startLr)), got \(endLr)") }
        if steps < 2 { throw ValidationError("--steps must be at least 2, got \(steps)") }
    }

    var seedValue: UInt64 { seed ?? defaultSeed }

    /// Runs the test on `task`, writes the outputs and prints the suggestion.
    func run(_ task: any TrainingTask, kind: String) throws {
        let options = LearningRateFinderOptions(startRate: startLr, endRate: endLr, steps: steps)
        let folder = out ?? "lr-find-\(kind)"
        let name = LearningRateFinder.lossName(task.metricNames)
        say("range test: \(steps) steps, lr \(startLr) → \(endLr) (×\(String(format: "%.4f", options.rate(at: 1) / options.rate(at: 0))) a step), following \(name)")
        let every = max(1, steps / 20)
        let result = try LearningRateFinder.run(task, options: options) { step, rate, loss in
            if step % every == 0 { say(String(format: "  step %4d  lr %.3e  %@ %.4f", step, rate, name, loss)) }
        }
        let paths = try LearningRateFinder.write(result, to: folder, title: "\(kind) lr find")
        if let d = result.divergedAt {
            say(String(format: "diverged at step %d (lr %.3e): stopped", d + 1, result.rates[d]))
        } else {
            say("no divergence up to lr \(endLr): the suggestion may lie higher; raise --end-lr")
        }
        let f = { (v: Double?) in v.map { String(format: "%.3e", $0) } ?? "none" }
        say("steepest descent at lr \(f(result.steepestRate)); minimum of the centred loss at lr \(f(result.minimumRate)) (/10 = \(f(result.minimumRateOverTen)))")
        if let s = result.suggestedRate {
            say("suggested --lr \(String(format: "%.2e", s)) (\(result.suggestionRule))")
        } else {
            say("no suggestion: the loss gave too few finite points; lower --start-lr or raise --steps")
        }
        say("wrote \(paths.png), \(paths.csv)")
    }
}

struct LRFindChar: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "char", abstract: "Range test of a char transformer (nanoGPT's recipe: AdamW, gradient clipping).")
    @Option(help: "A UTF-8 text file, or a folder of them.", completion: .file()) var data: String
    @Option(help: "baby (default) or shakespeare: the architecture and batch of `forge train char`.") var preset: String = "baby"
    @OptionGroup var architecture: CharArchitectureFlags
    @OptionGroup var finder: LRFindFlags

    func run() throws {
        guard var o = CharTrainingOptions.preset(preset) else {
            throw ValidationError("unknown preset \(preset); choose one of \(CharTrainingOptions.presetNames.joined(separator: ", "))")
        }
        architecture.apply(to: &o)
        o.seed = finder.seedValue
        if let problem = o.problem() { throw problem }
        let corpus = try TextCorpus(path: data)
        let task = try CharTrainingTask(corpus: corpus, options: o)
        say("model: \(o.layers) layers, \(o.heads) heads, \(o.embedding) embd, block \(o.blockSize), batch \(o.batchSize) on \(data)")
        try finder.run(task, kind: "char")
    }
}

struct LRFindGAN: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "gan", abstract: "Range test of a DCGAN (images; Adam on both players).")
    @Option(help: "Image folder or a folder of MNIST-style IDX files.", completion: .file()) var data: String
    @Option(help: "Image size: 32 or 64.") var size: Int = 32
    @Option(help: "Channels: 1 or 3 (default: 1 for IDX data, 3 otherwise).") var channels: Int?
    @Option(help: "Batch size.") var batch: Int = 64
    @Option(help: "Class conditioning: auto, on, off.") var conditional: ConditionalMode = .auto
    @Option(help: "Latent size.") var nz: Int = 100
    @Option(help: "Generator width.") var ngf: Int = 64
    @Option(help: "Discriminator width.") var ndf: Int = 64
    @OptionGroup var finder: LRFindFlags

    func run() throws {
        let set = try ImageDataset.load(path: data, size: size, channels: defaultChannels(data, channels))
        var config = DCGANConfig()
        let hasClasses = set.isLabelled && set.classNames.count >= 2
        if conditional == .on && !hasClasses { throw ValidationError("--conditional on needs data with at least 2 classes (sub-folders)") }
        config.classCount = conditional == .off || !hasClasses ? 0 : set.classNames.count
        (config.imageSize, config.channels, config.nz, config.ngf, config.ndf) = (size, set.channels, nz, ngf, ndf)
        (config.batchSize, config.seed) = (batch, finder.seedValue)
        if let problem = config.problem { throw ValidationError(problem) }
        let folder = finder.out ?? "lr-find-gan"
        // the task's sample grids are written only at epoch ends, which the range test never reaches
        let task = try GANTrainingTask(gan: DCGAN(config), data: set, samplesDirectory: folder + "/samples")
        try finder.run(task, kind: "gan")
    }
}

struct LRFindVAE: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "vae", abstract: "Range test of an image VAE (Adam).")
    @Option(help: "Image folder or a folder of MNIST-style IDX files.", completion: .file()) var data: String
    @Option(help: "Image side (images are resized).") var size: Int = 28
    @Option(help: "Channels: 1 or 3 (default: 1 for IDX data, 3 otherwise).") var channels: Int?
    @Option(help: "Encoder/decoder: mlp or conv.") var arch: VAEArchitecture = .mlp
    @Option(help: "Latent size.") var latent: Int = 20
    @Option(help: "MLP hidden width (default 400) or the first conv layer's channels (default 32).") var hidden: Int?
    @Option(help: "Batch size.") var batch: Int = 128
    @OptionGroup var finder: LRFindFlags

    func run() throws {
        let set = VAEData.unitRange(try ImageDataset.load(path: data, size: size, channels: defaultChannels(data, channels)))
        var config = VAEConfig()
        (config.arch, config.imageSize, config.channels, config.latent) = (arch, size, set.channels, latent)
        config.hidden = hidden ?? (arch == .mlp ? 400 : 32)
        config.likelihood = set.channels == 1 ? .bernoulli : .gaussianLearned
        (config.batchSize, config.seed) = (batch, finder.seedValue)
        if let problem = config.problem { throw ValidationError(problem) }
        let folder = finder.out ?? "lr-find-vae"
        let task = try VAETrainingTask(vae: VAE(config), data: set, heldOut: nil, samplesDirectory: folder + "/samples")
        try finder.run(task, kind: "vae")
    }
}

struct LRFindClassifier: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "classifier", abstract: "Range test of the small CNN classifier (Adam).")
    @Option(help: "Image folder (class sub-folders) or a folder of MNIST-style IDX files.", completion: .file()) var data: String
    @Option(help: "Image size (a multiple of 8).") var size: Int = 32
    @Option(help: "Channels: 1 or 3 (default: 1 for IDX data, 3 otherwise).") var channels: Int?
    @Option(help: "Batch size.") var batch: Int = 64
    @Option(help: "Channels of the first conv stage.") var width: Int = 16
    @Option(help: "Size of the penultimate feature layer.") var features: Int = 128
    @OptionGroup var finder: LRFindFlags

    func run() throws {
        let set = try ImageDataset.load(path: data, size: size, channels: defaultChannels(data, channels))
        var config = ClassifierConfig()
        (config.imageSize, config.channels, config.classCount) = (size, set.channels, set.classNames.count)
        (config.width, config.featureDim, config.batchSize, config.seed) = (width, features, batch, finder.seedValue)
        if let problem = config.problem { throw ValidationError(problem) }
        let task = try ClassifierTrainingTask(classifier: ImageClassifier(config), data: set, randomHorizontalFlip: false)
        try finder.run(task, kind: "classifier")
    }
}
