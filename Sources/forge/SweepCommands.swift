import ArgumentParser
import Foundation
import DataIO
import Models
import Training

// `forge sweep`: successive halving under a wall-time budget (Training/Sweep.swift); this file only
// parses flags and prints.

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search hyper-parameters under a time budget by successive halving.",
        subcommands: [SweepChar.self, SweepVAE.self, SweepGAN.self])
}

struct SweepChar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "char",
        abstract: "Successive halving of char-model trials within --budget-minutes.",
        discussion: """
            Every trial is an ordinary training run in OUT/trial-NN (checkpoint, metrics.csv, loss.png). \
            Rung 0 trains all --trials; each later rung continues the best 1/--eta of the previous one from \
            its checkpoint. Each rung gets an equal share of the budget left, split evenly over its trials, \
            so the sweep ends within the budget (plus the last evaluations). The objective is the loss in \
            nats per character over the first --eval-chars characters of the validation split (the last \
            10 %), the same text for every trial and rung, so the ranking carries no sampling noise. A \
            trial's learning rate stays at its sampled value after warm-up, so runs of different lengths \
            can be continued and compared; in the last rung it decays (cosine, to a tenth of the peak), \
            so the best checkpoint is a finished model.

            Default space, a neighbourhood of the baby recipe (so that trials cost about the same and a \
            short first rung ranks them fairly): learning rate log-uniform in [3e-4, 3e-3], layers {3, 4, 5, \
            6}, width {96, 128, 160, 192} with 32 channels per head, dropout {0, 0.1}, batch {8, 12, 16, 24}, \
            block {64, 128}; trial 0 is the baby recipe itself. --space FILE replaces any of them with JSON, \
            e.g. {"learningRate": [3e-4, 3e-3], "layers": [4], "embedding": [128, 192], "headSize": 32, \
            "dropout": [0], "batchSize": [12], "blockSize": [64], "firstTrialIsBase": false}; --block N is \
            the same as "blockSize": [N].

            Writes OUT/results.csv, OUT/sweep.png (val loss against training minutes, pruned trials marked), \
            OUT/best_flags.txt and OUT/best.safetensors. --resume continues an interrupted sweep without \
            repeating finished rungs.
            """)

    @Option(help: "A UTF-8 text file, or a folder of them.", completion: .file()) var data: String
    @Option(help: "Block size of every trial (default: drawn from the space).") var block: Int?
    @Option(help: "Characters of the validation split the objective reads (all of it when shorter).") var evalChars: Int = 262_144
    @OptionGroup var sweep: SweepFlags

    func run() throws {
        var base = CharTrainingOptions()
        (base.seed, base.warmupIterations) = (sweep.seed, 50)
        var space = try sweep.searchSpace(default: CharSweepSpace())
        if let block {
            guard block >= 1 else { throw ValidationError("--block must be at least 1, got \(block)") }
            space.blockSize = [block]
            base.blockSize = block
        }
        guard evalChars >= 2 else { throw ValidationError("--eval-chars must be at least 2, got \(evalChars)") }
        let corpus = try TextCorpus(path: data)
        let search = try CharSweep(corpus: corpus, base: base, space: space, trials: sweep.trials, eta: sweep.eta,
                                   budgetMinutes: sweep.budgetMinutes, seed: sweep.seed, directory: sweep.out, resume: sweep.resume,
                                   objectiveCharacters: evalChars)
        say("data: \(data): \(corpus.tokens.count) characters")
        try sweep.runAndReport(search, command: "forge train char --data \(data)")
    }
}

/// The flags every `forge sweep KIND` shares: budget, halving, space file, seed, folder, resume.
struct SweepFlags: ParsableArguments {
    @Option(help: "Wall-time budget of the whole sweep, in minutes.") var budgetMinutes: Double
    @Option(help: "Trials in the first rung.") var trials: Int = 9
    @Option(help: "Keep the best 1/eta of the trials at each rung.") var eta: Int = 3
    @Option(help: "A JSON file with the search space (see above).", completion: .file(extensions: ["json"])) var space: String?
    @Option(help: "Seed of the trial draws and of every trial's run.") var seed: UInt64 = defaultSeed
    @Option(help: "Sweep folder.", completion: .directory) var out: String
    @Flag(help: "Continue the sweep saved in --out.") var resume = false

    /// The --space file decoded, or the default space.
    func searchSpace<Space: Decodable>(default value: Space) throws -> Space {
        guard let space else { return value }
        guard let bytes = FileManager.default.contents(atPath: space) else { throw ValidationError("cannot read --space \(space)") }
        do { return try JSONDecoder().decode(Space.self, from: bytes) } catch {
            throw ValidationError("--space \(space) is not a valid search space: \(error)")
        }
    }

    /// Runs `sweep` and prints the table (objective per trial's last rung), the time and the best flags.
    func runAndReport(_ sweep: HyperparameterSweep, command: String) throws {
        say("sweep: \(trials) trials, eta \(eta), \(sweep.rungCount) rungs, \(budgetMinutes) minutes → \(out)")
        let best = try sweep.run()
        say("")
        say(String(format: "%-6@ %-5@ %-8@ %-11@ %@", "trial", "rung", "minutes", sweep.family.objectiveName, "config"))
        for t in sweep.state.trials {
            guard let last = t.rungs.last else { continue }
            say(String(format: "%-6@ %-5d %-8.2f %-11.4f %@%@", String(format: "%02d", t.index), last.rung, last.minutes, last.valLoss,
                       try sweep.flags(ofTrial: t.index), t.index == best ? "   ← best" : t.prunedAfterRung != nil ? "   (pruned)" : ""))
        }
        say(String(format: "took %.1f of %.1f minutes", sweep.state.elapsedSeconds / 60, budgetMinutes))
        say("best: \(command) \(try sweep.flags(ofTrial: best))")
        say("wrote \(out)/results.csv, sweep.png, best_flags.txt, best.safetensors")
    }
}

struct SweepVAE: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vae",
        abstract: "Successive halving of image-VAE trials within --budget-minutes.",
        discussion: """
            As `forge sweep char`: every trial is an ordinary `train vae` run in OUT/trial-NN, each rung \
            continues the best 1/--eta. The objective is the mean −ELBO per image of the held-out images \
            (the data's test split, else --val-split of it), the same noise for every trial.

            Default space: learning rate log-uniform in [1e-4, 3e-3], latent {8, 16, 32, 64}, hidden \
            {16, 32, 64} for --arch conv or {200, 400, 800} for mlp, batch {32, 64, 128}. --space FILE \
            replaces any of them, e.g. {"learningRate": [3e-4, 3e-3], "latent": [16, 32], "hidden": [32], \
            "batchSize": [64]}.
            """)

    @Option(help: "Image folder or a folder of MNIST-style IDX files.", completion: .file()) var data: String
    @Option(help: "Image side (images are resized).") var size: Int = 28
    @Option(help: "Channels: 1 or 3 (default: 1 for IDX data, 3 otherwise).") var channels: Int?
    @Option(help: "Encoder/decoder of every trial: mlp or conv.") var arch: VAEArchitecture = .mlp
    @Option(help: "Hold out this fraction of --data when it has no test split.") var valSplit: Double = 0.1
    @OptionGroup var sweep: SweepFlags

    func run() throws {
        var train = try loadUnitRange(data, size: size, channels: channels)
        let heldOut: ImageSet
        if hasHeldOutSplit(data) {
            heldOut = try loadUnitRange(data, size: size, channels: train.channels, split: .test)
        } else {
            guard valSplit > 0, valSplit < 1 else { throw ValidationError("--val-split must be in (0, 1), got \(valSplit)") }
            (train, heldOut) = try VAEData.split(train, heldOutFraction: valSplit, seed: sweep.seed)
        }
        say("data: \(train.count) training images \(train.channels)x\(train.size)x\(train.size) from \(data), \(heldOut.count) held out")
        var base = VAEConfig()
        (base.arch, base.imageSize, base.channels, base.seed) = (arch, size, train.channels, sweep.seed)
        base.likelihood = train.channels == 1 ? .bernoulli : .gaussianLearned
        let family = try VAESweepFamily(train: train, heldOut: heldOut, base: base, space: try sweep.searchSpace(default: VAESweepSpace()))
        let search = try HyperparameterSweep(family: family, trials: sweep.trials, eta: sweep.eta, budgetMinutes: sweep.budgetMinutes,
                                             seed: sweep.seed, directory: sweep.out, resume: sweep.resume)
        try sweep.runAndReport(search, command: "forge train vae --data \(data)")
    }
}

struct SweepGAN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gan",
        abstract: "Successive halving of image-GAN trials within --budget-minutes.",
        discussion: """
            As `forge sweep char`: every trial is an ordinary `train gan` run in OUT/trial-NN with the \
            --recipe, each rung continues the best 1/--eta. The objective is the Fréchet distance between \
            1,000 images of the trial's generator (its EMA when the recipe keeps one; the same z and \
            balanced classes for every trial) and 1,000 real images, in the features of a classifier \
            trained once on the real images before the first rung (OUT/fd-classifier; `forge eval gan`'s \
            feature space). So --data needs class folders (or IDX labels).

            Default space: G's learning rate log-uniform in [5e-5, 5e-4], D's rate ÷ G's {1, 2, 4}, \
            width (ngf = ndf) {16, 32, 64}, batch {32, 64, 128}. --space FILE replaces any of them, e.g. \
            {"learningRate": [1e-4, 4e-4], "discriminatorRatio": [1, 4], "width": [32], "batchSize": [64]}.
            """)

    @Option(help: "Image folder (class sub-folders = classes) or a folder of MNIST-style IDX files.", completion: .file()) var data: String
    @Option(help: "Image size: 32 or 64.") var size: Int = 32
    @Option(help: "Channels: 1 or 3 (default: 1 for IDX data, 3 otherwise).") var channels: Int?
    @Option(help: "Training recipe of every trial (see `forge train gan --help`).") var recipe: GANRecipeChoice = .auto
    @Option(help: "Class conditioning: auto (on when the data has classes), on, off.") var conditional: ConditionalMode = .auto
    @OptionGroup var sweep: SweepFlags

    func validate() throws {
        guard [32, 64].contains(size) else { throw ValidationError("--size must be 32 or 64") }
    }

    func run() throws {
        let isIDX = IDX.findFiles(in: data, split: .train) != nil
        let set = try ImageDataset.load(path: data, size: size, channels: channels ?? (isIDX ? 1 : 3))
        say("data: \(set.count) images \(set.channels)x\(set.size)x\(set.size) from \(data)" + (set.isLabelled ? ", \(set.classNames.count) classes" : ""))
        guard set.isLabelled, set.classNames.count >= 2 else {
            throw ValidationError("--data: the GAN sweep measures each trial by the Fréchet distance in a classifier's features, which needs at least 2 classes (sub-folders); \(data) has none")
        }
        var base = DCGANConfig()
        (base.imageSize, base.channels) = (size, set.channels)
        base.classCount = conditional == .off ? 0 : set.classNames.count
        base.apply(recipe.recipe(conditional: base.isConditional))
        base.seed = sweep.seed
        guard sweep.resume || !FileManager.default.fileExists(atPath: sweep.out + "/sweep.json") else {
            throw ValidationError("--out: \(sweep.out) already holds a sweep; give --resume or a new folder")
        }
        let start = Date()
        say("training the feature classifier on \(min(set.count, 10_000)) real images (2 epochs) …")
        let family = try GANSweepFamily(data: set, base: base, space: try sweep.searchSpace(default: GANSweepSpace()), directory: sweep.out)
        say(String(format: "feature classifier ready (%.1f s)", Date().timeIntervalSince(start)))
        let search = try HyperparameterSweep(family: family, trials: sweep.trials, eta: sweep.eta, budgetMinutes: sweep.budgetMinutes,
                                             seed: sweep.seed, directory: sweep.out, resume: sweep.resume)
        try sweep.runAndReport(search, command: "forge train gan --data \(data) --recipe \(recipe.rawValue)\(conditional == .off ? " --conditional off" : "")")
    }
}
