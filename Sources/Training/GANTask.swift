import Foundation
import Figures
import TensorCore
import DataIO
import Models

/// DCGAN training on an `ImageSet` as a `TrainingTask`: batches in a (seed, epoch) order, one
/// `recipeGANStep` per batch, and each epoch a grid from a fixed noise batch (the same z every
/// epoch; one row per class when conditional) written to `samplesDirectory/epoch_NNN.png` and
/// `latest.png`.
public final class GANTrainingTask: TrainingTask {
    public let gan: DCGAN
    /// Adam for G and D (`GANOptimizers`).
    public let ganOptimizers: GANOptimizers
    public let data: ImageSet
    public let samplesDirectory: String
    /// The fixed latent batch and labels of the progress grids.
    public let fixedNoise: Tensor
    public let fixedLabels: [Int]
    public let gridColumns: Int
    /// The average of G's weights that draws the grids and is checkpointed (config.emaDecay > 0; GANRecipe.swift).
    public let ema: GeneratorEMA?
    private var noiseRNG: RandomGenerator
    private var batches: ImageBatches?

    public init(gan: DCGAN, data: ImageSet, samplesDirectory: String) throws {
        let c = gan.config
        guard data.channels == c.channels, data.size == c.imageSize else {
            throw TrainingError.invalidConfiguration("the data is \(data.channels)×\(data.size)×\(data.size) but the model wants \(c.channels)×\(c.imageSize)×\(c.imageSize)")
        }
        if c.isConditional {
            guard data.isLabelled, data.classNames.count == c.classCount else {
                throw TrainingError.invalidConfiguration("a conditional model of \(c.classCount) classes needs data with that many classes (the data has \(data.classNames.count))")
            }
        }
        guard data.count >= c.batchSize else {
            throw TrainingError.invalidConfiguration("\(data.count) images are fewer than one batch of \(c.batchSize)")
        }
        self.gan = gan
        ganOptimizers = GANOptimizers(for: gan)
        self.data = data
        self.samplesDirectory = samplesDirectory
        noiseRNG = RandomGenerator(seed: c.seed &+ 1)
        // The grid noise has its own generator so drawing it never shifts the training noise.
        var fixed = RandomGenerator(seed: c.seed &+ 2)
        gridColumns = 8
        // conditional: one row of 8 per class; unconditional: 8 rows of 8
        fixedLabels = c.isConditional ? (0..<c.classCount).flatMap { Array(repeating: $0, count: 8) } : Array(repeating: 0, count: 64)
        fixedNoise = Tensor.randn([fixedLabels.count, c.nz], generator: &fixed)
        ema = c.emaDecay > 0 ? GeneratorEMA(of: gan.generator, decay: c.emaDecay) : nil
    }

    public var kind: String { "gan" }
    public var configJSON: String { (try? Checkpoint.jsonString(gan.config)) ?? "{}" }
    public var modules: [(name: String, module: any Module)] {
        [("generator", gan.generator), ("discriminator", gan.discriminator)] + (ema.map { [("generator_ema", $0)] } ?? [])
    }
    public var optimizers: [(name: String, optimizer: any Optimizer)] { ganOptimizers.named }
    public var generators: [String: RandomGenerator] {
        get { ["noise": noiseRNG] }
        set { if let g = newValue["noise"] { noiseRNG = g } }
    }
    public var extraMetadata: [String: String] {
        gan.config.isConditional ? ["forge.classes": (try? Checkpoint.jsonString(data.classNames)) ?? "[]"] : [:]
    }

    /// Full batches only: BatchNorm statistics of a 3-image tail batch would be noise.
    public var stepsPerEpoch: Int { data.count / gan.config.batchSize }
    public var itemsPerStep: Int { gan.config.batchSize }
    public var metricNames: [String] { ["loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2"] }
    public var plottedMetrics: [String] { ["loss_d", "loss_g"] }

    public func beginEpoch(_ epoch: Int, skippingSteps: Int) {
        var it = data.batches(size: gan.config.batchSize, seed: gan.config.seed, epoch: epoch, dropLast: true)
        for _ in 0..<skippingSteps { _ = it.next() }
        batches = it
    }

    public func step() -> [Double] {
        guard let (images, labels) = batches?.next() else { preconditionFailure("GANTrainingTask: epoch ran out of batches") }
        let r = recipeGANStep(gan, optimizers: ganOptimizers, ema: ema, real: images, labels: labels, rng: &noiseRNG)
        return [r.lossD, r.lossG, r.dX, r.dGZ1, r.dGZ2]
    }

    /// The progress grid: G(fixed z), a row per class when conditional.
    /// With an EMA, the averaged generator draws it, with its BatchNorm statistics recomputed first.
    public func fixedGrid() -> Tensor {
        guard let ema else { return gan.generate(fixedNoise, labels: fixedLabels) }
        ema.recomputeBatchNormStatistics(batchSize: gan.config.batchSize)
        return ema.generate(fixedNoise, labels: fixedLabels)
    }

    public func epochEnded(epoch: Int, step: Int, completed: Bool) throws {
        try FileManager.default.createDirectory(atPath: samplesDirectory, withIntermediateDirectories: true)
        let images = fixedGrid()
        let name = completed ? String(format: "epoch_%03d.png", epoch + 1) : String(format: "epoch_%03d_step_%d.png", epoch + 1, step)
        // A conditional grid has one row per class: its name goes in the left margin.
        let rowLabels = gan.config.isConditional ? data.classNames : []
        try LabelledGrid.write(images: images, rowLabels: rowLabels, columns: gridColumns, to: samplesDirectory + "/" + name)
        try LabelledGrid.write(images: images, rowLabels: rowLabels, columns: gridColumns, to: samplesDirectory + "/latest.png")
        try tensorBoard?.addImageFile("samples/fixed_noise_grid", path: samplesDirectory + "/latest.png", step: step)
    }
}
