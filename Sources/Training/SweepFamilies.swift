import Foundation
import TensorCore
import DataIO
import Models
import Metrics

// The image families of `forge sweep`: the VAE (objective: held-out −ELBO) and the DCGAN
// (objective: Fréchet distance in the features of a classifier trained once on the real images).
// The char family is in Sweep.swift beside the engine.

/// The search space of a VAE sweep; JSON fields as for `CharSweepSpace`, every one optional:
///
///     {"learningRate": [1e-4, 3e-3], "latent": [8, 16, 32, 64], "hidden": [16, 32, 64], "batchSize": [32, 64, 128]}
///
/// `hidden` is the conv architecture's base channels, or the MLP's hidden units; when absent it
/// follows the architecture ({16, 32, 64} for conv, {200, 400, 800} for the MLP).
public struct VAESweepSpace: Codable, Equatable, Sendable {
    /// Lower and upper bound of Adam's log-uniform learning rate.
    public var learningRate: [Float] = [1e-4, 3e-3]
    /// Latent sizes to draw from.
    public var latent: [Int] = [8, 16, 32, 64]
    /// Widths to draw from (nil: by architecture, see the type's comment).
    public var hidden: [Int]? = nil
    /// Images per step to draw from.
    public var batchSize: [Int] = [32, 64, 128]

    /// The default space listed on each field.
    public init() {}

    private enum CodingKeys: String, CodingKey { case learningRate, latent, hidden, batchSize }

    /// Decodes a `--space` JSON object; a missing field keeps its default.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = VAESweepSpace()
        learningRate = try c.decodeIfPresent([Float].self, forKey: .learningRate) ?? d.learningRate
        latent = try c.decodeIfPresent([Int].self, forKey: .latent) ?? d.latent
        hidden = try c.decodeIfPresent([Int].self, forKey: .hidden)
        batchSize = try c.decodeIfPresent([Int].self, forKey: .batchSize) ?? d.batchSize
    }

    /// What is wrong with the space, or nil.
    public var problem: String? {
        if let p = logUniformBoundsProblem(learningRate, name: "learningRate") { return p }
        if latent.isEmpty || latent.contains(where: { $0 < 1 }) { return "latent must list positive sizes, got \(latent)" }
        if let hidden, hidden.isEmpty || hidden.contains(where: { $0 < 1 }) { return "hidden must list positive widths, got \(hidden)" }
        if batchSize.isEmpty || batchSize.contains(where: { $0 < 1 }) { return "batchSize must list positive sizes, got \(batchSize)" }
        return nil
    }
}

/// The image VAE as a sweep family: each trial is the base config with a drawn learning rate,
/// latent size, width and batch; the objective is the mean −ELBO per image of the held-out set
/// (one z per image from a generator seeded the same for every trial and rung).
public final class VAESweepFamily: SweepFamily {
    /// Training images, pixels in [0, 1].
    public let train: ImageSet
    /// The held-out images the objective is measured on.
    public let heldOut: ImageSet
    /// Architecture, image shape, likelihood, conditioning and seed of every trial.
    public let base: VAEConfig
    /// The space the trials are drawn from.
    public let space: VAESweepSpace

    /// A family over `space`; throws when the space or a drawn config is malformed.
    public init(train: ImageSet, heldOut: ImageSet, base: VAEConfig, space: VAESweepSpace) throws {
        if let p = space.problem { throw TrainingError.invalidConfiguration("the search space: \(p)") }
        guard heldOut.count > 0 else { throw TrainingError.invalidConfiguration("the VAE sweep needs held-out images for its objective") }
        (self.train, self.heldOut, self.base, self.space) = (train, heldOut, base, space)
    }

    /// "vae".
    public var kind: String { "vae" }
    /// The space as sorted-key JSON.
    public var spaceJSON: String { sortedJSON(space) }
    /// "test −ELBO".
    public var objectiveName: String { "test −ELBO" }
    /// "test_neg_elbo".
    public var objectiveColumn: String { "test_neg_elbo" }
    /// lr, latent, hidden, batch.
    public var settingColumns: [(name: String, key: String)] { [("lr", "lr"), ("latent", "latent"), ("hidden", "hidden"), ("batch", "batch")] }

    /// The drawn config as JSON under "config", and its drawn fields for the table.
    public func settings(index: Int, seed: UInt64) throws -> [String: String] {
        var g = RandomGenerator.sweepTrial(index: index, seed: seed)
        var c = base
        c.learningRate = g.logUniform(space.learningRate)
        c.latent = g.pick(space.latent)
        c.hidden = g.pick(space.hidden ?? (c.arch == .mlp ? [200, 400, 800] : [16, 32, 64]))
        c.batchSize = g.pick(space.batchSize)
        if let problem = c.problem { throw TrainingError.invalidConfiguration("trial \(index): \(problem)") }
        return ["config": try Checkpoint.jsonString(c), "lr": String(format: "%.4g", c.learningRate), "latent": "\(c.latent)",
                "hidden": "\(c.hidden)", "batch": "\(c.batchSize)"]
    }

    private func config(_ settings: [String: String]) throws -> VAEConfig {
        guard let json = settings["config"], let c = try? JSONDecoder().decode(VAEConfig.self, from: Data(json.utf8)) else {
            throw TrainingError.invalidConfiguration("sweep.json: a trial has no VAE config")
        }
        return c
    }

    /// A `VAETrainingTask` run (epochs until the rung's minutes end it); the objective is the held-out −ELBO.
    /// `decay` is not used: the VAE recipe trains at a constant Adam rate, as pytorch/examples' does.
    public func trial(settings: [String: String], runDirectory: String, minutes: Double, resume: Bool, decay: SweepDecay?) throws -> SweepTrialRun {
        let vae = VAE(try config(settings))
        let task = try VAETrainingTask(vae: vae, data: train, heldOut: nil, samplesDirectory: runDirectory + "/samples")
        task.log = { _ in }
        let options = TrainingOptions(runDirectory: runDirectory, epochs: 1_000_000, minutes: minutes, resume: resume, logEvery: 100)
        return SweepTrialRun(task: task, options: options) { [heldOut] _ in
            var g = RandomGenerator(seed: 0x5eed)   // the same noise for every trial and rung
            return VAEEvaluator.evaluate(vae, on: heldOut, batchSize: 256, rng: &g).negativeELBO
        }
    }

    /// `--latent … --hidden … --batch … --lr …` for `forge train vae`.
    public func flags(_ settings: [String: String]) throws -> String {
        let c = try config(settings)
        return String(format: "--arch %@ --latent %d --hidden %d --batch %d --lr %.3g", c.arch.rawValue, c.latent, c.hidden, c.batchSize, Double(c.learningRate))
    }
}

/// The search space of a GAN sweep; JSON fields, every one optional:
///
///     {"learningRate": [5e-5, 5e-4], "discriminatorRatio": [1, 2, 4], "width": [16, 32, 64], "batchSize": [32, 64, 128]}
///
/// `learningRate` is G's (log-uniform); D's is G's times a drawn `discriminatorRatio` (TTUR);
/// `width` is both G's and D's base channels (ngf = ndf).
public struct GANSweepSpace: Codable, Equatable, Sendable {
    /// Lower and upper bound of G's log-uniform learning rate.
    public var learningRate: [Float] = [5e-5, 5e-4]
    /// D's rate ÷ G's rate, to draw from.
    public var discriminatorRatio: [Float] = [1, 2, 4]
    /// Base channels of G and D (ngf = ndf), to draw from.
    public var width: [Int] = [16, 32, 64]
    /// Images per step to draw from.
    public var batchSize: [Int] = [32, 64, 128]

    /// The default space listed on each field.
    public init() {}

    private enum CodingKeys: String, CodingKey { case learningRate, discriminatorRatio, width, batchSize }

    /// Decodes a `--space` JSON object; a missing field keeps its default.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GANSweepSpace()
        learningRate = try c.decodeIfPresent([Float].self, forKey: .learningRate) ?? d.learningRate
        discriminatorRatio = try c.decodeIfPresent([Float].self, forKey: .discriminatorRatio) ?? d.discriminatorRatio
        width = try c.decodeIfPresent([Int].self, forKey: .width) ?? d.width
        batchSize = try c.decodeIfPresent([Int].self, forKey: .batchSize) ?? d.batchSize
    }

    /// What is wrong with the space, or nil.
    public var problem: String? {
        if let p = logUniformBoundsProblem(learningRate, name: "learningRate") { return p }
        if discriminatorRatio.isEmpty || discriminatorRatio.contains(where: { !($0 > 0) || !$0.isFinite }) {
            return "discriminatorRatio must list positive ratios, got \(discriminatorRatio)"
        }
        if width.isEmpty || width.contains(where: { $0 < 1 }) { return "width must list positive channel counts, got \(width)" }
        if batchSize.isEmpty || batchSize.contains(where: { $0 < 2 }) { return "batchSize must list sizes of at least 2, got \(batchSize)" }
        return nil
    }
}

/// The DCGAN as a sweep family: each trial is the base config (its recipe) with a drawn G rate,
/// D/G rate ratio, width and batch. The objective is the Fréchet distance between `sampleCount`
/// images of the trial's generator (its EMA when the recipe keeps one; the same z and, for a
/// conditional model, balanced labels for every trial and rung) and as many real images, in the
/// penultimate features of one classifier trained on the real images when the family is made
/// (`forge eval gan`'s feature space). So the data must have class folders.
public final class GANSweepFamily: SweepFamily {
    /// The training images, [-1, 1], labelled.
    public let data: ImageSet
    /// Image shape, recipe, conditioning, nz and seed of every trial.
    public let base: DCGANConfig
    /// The space the trials are drawn from.
    public let space: GANSweepSpace
    /// Images per side of the Fréchet distance.
    public let sampleCount: Int
    /// The real images' feature statistics, computed once.
    private let realStatistics: FeatureStatistics
    /// The feature extractor of the objective.
    public let classifier: ImageClassifier

    /// Trains the feature classifier (`classifierEpochs` over at most 10,000 real images, in
    /// `directory/fd-classifier`) and the real side's statistics; throws for unlabelled data.
    public init(data: ImageSet, base: DCGANConfig, space: GANSweepSpace, directory: String, sampleCount: Int = 1000,
                classifierEpochs: Int = 2, log: @escaping (String) -> Void = { _ in }) throws {
        if let p = space.problem { throw TrainingError.invalidConfiguration("the search space: \(p)") }
        guard data.isLabelled, data.classNames.count >= 2 else {
            throw TrainingError.invalidConfiguration("the GAN sweep's objective is the Fréchet distance in a classifier's features: the data needs at least 2 classes (sub-folders)")
        }
        guard sampleCount >= 2 else { throw TrainingError.invalidValue(field: "sampleCount", value: "\(sampleCount)", requirement: "at least 2") }
        (self.data, self.base, self.space, self.sampleCount) = (data, base, space, sampleCount)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        classifier = try SyntheticEvaluation.trainClassifier(on: SyntheticEvaluation.subset(data, count: 10_000, seed: 3), config: ClassifierConfig(),
                                                             epochs: classifierEpochs, directory: directory, name: "fd-classifier",
                                                             showProgress: false, log: log)
        let real = SyntheticEvaluation.subset(data, count: sampleCount, seed: 9)
        realStatistics = FeatureStatistics(rows: classifier.features(real.images))
    }

    /// "gan".
    public var kind: String { "gan" }
    /// The space as sorted-key JSON.
    public var spaceJSON: String { sortedJSON(space) }
    /// "FD".
    public var objectiveName: String { "FD" }
    /// "fd".
    public var objectiveColumn: String { "fd" }
    /// lr (G's), lr_d, width, batch.
    public var settingColumns: [(name: String, key: String)] { [("lr", "lr"), ("lr_d", "lr_d"), ("width", "width"), ("batch", "batch")] }

    /// The drawn config as JSON under "config", and its drawn fields for the table.
    public func settings(index: Int, seed: UInt64) throws -> [String: String] {
        var g = RandomGenerator.sweepTrial(index: index, seed: seed)
        var c = base
        c.learningRate = g.logUniform(space.learningRate)
        c.learningRateD = c.learningRate * g.pick(space.discriminatorRatio)
        let width = g.pick(space.width)
        (c.ngf, c.ndf) = (width, width)
        c.batchSize = min(g.pick(space.batchSize), data.count)
        if let problem = c.problem { throw TrainingError.invalidConfiguration("trial \(index): \(problem)") }
        return ["config": try Checkpoint.jsonString(c), "lr": String(format: "%.4g", c.learningRate),
                "lr_d": String(format: "%.4g", c.discriminatorLearningRate), "width": "\(width)", "batch": "\(c.batchSize)"]
    }

    private func config(_ settings: [String: String]) throws -> DCGANConfig {
        guard let json = settings["config"], let c = try? JSONDecoder().decode(DCGANConfig.self, from: Data(json.utf8)) else {
            throw TrainingError.invalidConfiguration("sweep.json: a trial has no GAN config")
        }
        return c
    }

    /// A `GANTrainingTask` run (epochs until the rung's minutes end it); the objective is the FD.
    /// `decay` is not used: the DCGAN recipes train at constant Adam rates, as the DCGAN paper's.
    public func trial(settings: [String: String], runDirectory: String, minutes: Double, resume: Bool, decay: SweepDecay?) throws -> SweepTrialRun {
        let gan = DCGAN(try config(settings))
        let task = try GANTrainingTask(gan: gan, data: data, samplesDirectory: runDirectory + "/samples")
        let options = TrainingOptions(runDirectory: runDirectory, epochs: 1_000_000, minutes: minutes, resume: resume, logEvery: 100)
        return SweepTrialRun(task: task, options: options) { [self] _ in frechetDistance(of: task) }
    }

    /// The FD of `sampleCount` images of the task's generator against the real statistics.
    func frechetDistance(of task: GANTrainingTask<DCGAN>) -> Double {
        let c = task.gan.config
        var g = RandomGenerator(seed: 0x5eed)   // the same z for every trial and rung
        var rows: [[Double]] = []
        for start in stride(from: 0, to: sampleCount, by: 200) {
            let n = min(200, sampleCount - start)
            let z = Tensor.randn([n, c.nz], generator: &g)
            let labels = c.isConditional ? (start..<(start + n)).map { $0 % c.classCount } : []
            rows += classifier.features(task.gan.progressSamples(z, labels: labels, ema: task.ema))
        }
        let value = Metrics.frechetDistance(realStatistics, FeatureStatistics(rows: rows))
        return value.isFinite ? value : .greatestFiniteMagnitude
    }

    /// `--ngf … --ndf … --batch … --lr … --lr-d …` for `forge train gan` (add the sweep's recipe flags).
    public func flags(_ settings: [String: String]) throws -> String {
        let c = try config(settings)
        return String(format: "--ngf %d --ndf %d --batch %d --lr %.3g --lr-d %.3g", c.ngf, c.ndf, c.batchSize,
                      Double(c.learningRate), Double(c.discriminatorLearningRate))
    }
}
