import Foundation
import Figures
import TensorCore
import DataIO
import Models

// One GAN training task for the image DCGAN and the audio WaveGAN. What differs between them is
// small and named by `TrainableGAN` (the step each plays, its EMA, its kind); the batches come from a
// `GANBatchSource` (images with labels, or clips), and the progress samples are written by the
// domain's writer (a labelled grid, or WAVs + a waveform/spectrogram PNG).

/// A GAN as its training task sees it: two networks, their latent size and training settings, the
/// optimizers and the step of its game. DCGAN and WaveGAN conform.
public protocol TrainableGAN: AnyObject {
    /// The checkpoint kind ("gan", "wavegan").
    var checkpointKind: String { get }
    /// The configuration that rebuilds the networks, as JSON.
    var configJSON: String { get }
    var generatorNetwork: any Module { get }
    var discriminatorNetwork: any Module { get }
    var latentSize: Int { get }
    var batchSize: Int { get }
    var seed: UInt64 { get }
    /// Class count of a conditional GAN; 0 when unconditional.
    var classCount: Int { get }
    /// The G/D optimizers of this GAN's configuration.
    func makeOptimizers() -> GANOptimizers
    /// The average of G's weights that draws the progress samples and is checkpointed, or nil.
    func makeEMA() -> GeneratorEMA?
    /// One step of the GAN's game on a real batch (its labels ignored when unconditional); with `part`
    /// (data parallel) on this rank's rows of the global batch.
    func trainingStep(optimizers: GANOptimizers, ema: GeneratorEMA?, real: Tensor, labels: [Int],
                      rng: inout RandomGenerator, part: GANDataParallelPart?) -> GANStepResult
    /// G(z) for the progress samples, through the EMA generator when there is one.
    func progressSamples(_ z: Tensor, labels: [Int], ema: GeneratorEMA?) -> Tensor
}

extension DCGAN: TrainableGAN {
    /// Checkpoint kind "gan".
    public var checkpointKind: String { "gan" }
    /// The `DCGANConfig` as JSON.
    public var configJSON: String { (try? Checkpoint.jsonString(config)) ?? "{}" }
    /// G, checkpointed as "generator".
    public var generatorNetwork: any Module { generator }
    /// D, checkpointed as "discriminator".
    public var discriminatorNetwork: any Module { discriminator }
    /// The length of z (`nz`, 100 in pytorch/examples).
    public var latentSize: Int { config.nz }
    /// Images per step (`DCGANConfig.batchSize`).
    public var batchSize: Int { config.batchSize }
    /// The config's seed; the task draws its training noise from seed + 1 and the fixed progress z from seed + 2.
    public var seed: UInt64 { config.seed }
    /// The config's class count when conditional, else 0.
    public var classCount: Int { config.isConditional ? config.classCount : 0 }
    /// Adam for G and D with the config's betas and two rates (`GANOptimizers(for:)`).
    public func makeOptimizers() -> GANOptimizers { GANOptimizers(for: self) }
    /// A `GeneratorEMA` of G when the config's `emaDecay` is above 0, else nil.
    public func makeEMA() -> GeneratorEMA? { config.emaDecay > 0 ? GeneratorEMA(of: generator, decay: config.emaDecay) : nil }
    /// `recipeGANStep`: the config's loss (pytorch/examples' non-saturating step, or the hinge game), then the EMA update.
    public func trainingStep(optimizers: GANOptimizers, ema: GeneratorEMA?, real: Tensor, labels: [Int],
                             rng: inout RandomGenerator, part: GANDataParallelPart?) -> GANStepResult {
        recipeGANStep(self, optimizers: optimizers, ema: ema, real: real, labels: labels, rng: &rng, part: part)
    }
    /// With an EMA, the averaged generator draws, with its BatchNorm statistics recomputed first.
    public func progressSamples(_ z: Tensor, labels: [Int], ema: GeneratorEMA?) -> Tensor {
        guard let ema else { return generate(z, labels: labels) }
        ema.recomputeBatchNormStatistics(batchSize: config.batchSize)
        return ema.generate(z, labels: labels)
    }
}

extension WaveGAN: TrainableGAN {
    /// Checkpoint kind "wavegan".
    public var checkpointKind: String { "wavegan" }
    /// The `WaveGANConfig` as JSON.
    public var configJSON: String { (try? Checkpoint.jsonString(config)) ?? "{}" }
    /// G, checkpointed as "generator".
    public var generatorNetwork: any Module { generator }
    /// D, checkpointed as "discriminator".
    public var discriminatorNetwork: any Module { discriminator }
    /// The length of z (`nz`).
    public var latentSize: Int { config.nz }
    /// Clips per step (`WaveGANConfig.batchSize`).
    public var batchSize: Int { config.batchSize }
    /// The config's seed; the task draws its training noise from seed + 1 and the fixed progress z from seed + 2.
    public var seed: UInt64 { config.seed }
    /// Always 0: the WaveGAN is unconditional.
    public var classCount: Int { 0 }
    /// Adam with the config's rate and betas for both players (`GANOptimizers(for:)`).
    public func makeOptimizers() -> GANOptimizers { GANOptimizers(for: self) }
    /// Always nil: the WaveGAN keeps no weight average.
    public func makeEMA() -> GeneratorEMA? { nil }
    /// `waveGANTrainingStep` on the real clips (the labels and `ema` are ignored).
    public func trainingStep(optimizers: GANOptimizers, ema: GeneratorEMA?, real: Tensor, labels: [Int],
                             rng: inout RandomGenerator, part: GANDataParallelPart?) -> GANStepResult {
        waveGANTrainingStep(self, optimizers: optimizers, real: real, rng: &rng, part: part)
    }
    /// G(z) straight from the generator (no labels, no EMA).
    public func progressSamples(_ z: Tensor, labels: [Int], ema: GeneratorEMA?) -> Tensor { generate(z) }
}

/// Full batches of a GAN's training data in a (seed, epoch) order: a resumed epoch replays the same order.
public protocol GANBatchSource {
    /// Full batches per epoch (BatchNorm statistics of a tiny tail batch would be noise).
    var stepsPerEpoch: Int { get }
    mutating func begin(epoch: Int, skippingSteps: Int)
    /// The next batch and its labels (zeros for unlabelled data).
    mutating func next() -> (batch: Tensor, labels: [Int])
}

/// An image set's batches (B, C, S, S) with their labels.
struct ImageGANBatches: GANBatchSource {
    let data: ImageSet
    let batchSize: Int, seed: UInt64
    private var batches: ImageBatches?

    init(data: ImageSet, batchSize: Int, seed: UInt64) { (self.data, self.batchSize, self.seed) = (data, batchSize, seed) }

    var stepsPerEpoch: Int { data.count / batchSize }
    mutating func begin(epoch: Int, skippingSteps: Int) {
        var it = data.batches(size: batchSize, seed: seed, epoch: epoch, dropLast: true)
        for _ in 0..<skippingSteps { _ = it.next() }
        batches = it
    }
    mutating func next() -> (batch: Tensor, labels: [Int]) {
        guard let (images, labels) = batches?.next() else { preconditionFailure("GAN training: epoch ran out of batches") }
        return (images, labels)
    }
}

extension ClipBatches: GANBatchSource {
    mutating func next() -> (batch: Tensor, labels: [Int]) {
        let batch = nextBatch()
        return (batch, [Int](repeating: 0, count: batchSize))
    }
}

/// GAN training as a `TrainingTask`: batches in a (seed, epoch) order, one step of the GAN's game per
/// batch, and progress samples from a fixed noise batch (the same z every time; one row per class
/// when conditional) written by the domain: for images a labelled grid `samples/epoch_NNN.png` +
/// `latest.png` every epoch; for sound WAVs + a waveform/spectrogram PNG (see `writeEpochAudioSamples`).
public final class GANTrainingTask<Network: TrainableGAN>: TrainingTask {
    /// The GAN being trained: a `DCGAN` on images or a `WaveGAN` on clips.
    public let gan: Network
    /// Adam for G and D (`GANOptimizers`).
    public let ganOptimizers: GANOptimizers
    /// Folder the progress grids (images) or WAVs + PNGs (sound) are written to.
    public let samplesDirectory: String
    /// The fixed latent batch and labels of the progress samples.
    public let fixedNoise: Tensor
    /// The class of each fixed-noise sample: 8 per class when conditional, else all 0.
    public let fixedLabels: [Int]
    /// The average of G's weights that draws the progress samples and is checkpointed (GANRecipe.swift).
    public let ema: GeneratorEMA?
    /// Class names of labelled data (the checkpoint's `forge.classes`), empty otherwise.
    public let classNames: [String]
    /// What a step's batch counts: "samples" (images) or "clips".
    public let itemName: String
    /// Data parallel with `--sync-batchnorm`: G's and D's BatchNorm layers take their statistics over
    /// the global batch (all ranks), reproducing one process. Read by `joinDataParallel`; set it before
    /// training. Off (the default): each rank's statistics of its own rows, as PyTorch DDP.
    public var synchronizesBatchNorm = false
    /// Data parallel, for tests: after every step each rank compares its parameters, optimizer state
    /// and buffers (spectral-norm u/v, the EMA; BatchNorm running statistics only when synchronised)
    /// bit for bit with rank 0's, and the job stops with `DataParallelError.mismatch` when one differs.
    public var verifiesReplicas = false
    private var noiseRNG: RandomGenerator
    private var batches: any GANBatchSource
    /// Set by `joinDataParallel`: this rank's part of every global batch.
    private var dataParallel: GANDataParallelPart?
    /// Whether rank 0's buffers (running statistics, spectral-norm u/v, the EMA's count) have been
    /// copied to every rank; done at the first step, after a resume has loaded them.
    private var buffersShared = false
    private let writeSamples: (GANTrainingTask, _ epoch: Int, _ step: Int, _ completed: Bool) throws -> Void

    init(gan: Network, batches: any GANBatchSource, classNames: [String], fixedLabels: [Int], itemName: String,
         samplesDirectory: String, writeSamples: @escaping (GANTrainingTask, Int, Int, Bool) throws -> Void) {
        self.gan = gan
        ganOptimizers = gan.makeOptimizers()
        self.batches = batches
        self.classNames = classNames
        self.itemName = itemName
        self.samplesDirectory = samplesDirectory
        self.writeSamples = writeSamples
        noiseRNG = RandomGenerator(seed: gan.seed &+ 1)
        // The progress noise has its own generator so drawing it never shifts the training noise.
        var fixed = RandomGenerator(seed: gan.seed &+ 2)
        self.fixedLabels = fixedLabels
        fixedNoise = Tensor.randn([fixedLabels.count, gan.latentSize], generator: &fixed)
        ema = gan.makeEMA()
    }

    /// The GAN's checkpoint kind ("gan" or "wavegan").
    public var kind: String { gan.checkpointKind }
    /// The GAN's configuration as JSON.
    public var configJSON: String { gan.configJSON }
    /// G as "generator", D as "discriminator", and the EMA as "generator_ema" when kept.
    public var modules: [(name: String, module: any Module)] {
        [("generator", gan.generatorNetwork), ("discriminator", gan.discriminatorNetwork)] + (ema.map { [("generator_ema", $0)] } ?? [])
    }
    /// G's and D's Adam, saved as "generator" and "discriminator".
    public var optimizers: [(name: String, optimizer: any Optimizer)] { ganOptimizers.named }
    /// The training noise generator (z, and the WaveGAN's phase shifts), saved as "noise".
    public var generators: [String: RandomGenerator] {
        get { ["noise": noiseRNG] }
        set { if let g = newValue["noise"] { noiseRNG = g } }
    }
    /// The class names as `forge.classes` for a conditional GAN; nothing otherwise.
    public var extraMetadata: [String: String] {
        gan.classCount > 0 ? ["forge.classes": (try? Checkpoint.jsonString(classNames)) ?? "[]"] : [:]
    }

    /// Full batches per epoch of the data.
    public var stepsPerEpoch: Int { batches.stepsPerEpoch }
    /// Images or clips per batch.
    public var itemsPerStep: Int { gan.batchSize }
    /// D's and G's losses, mean D(x), and mean D(G(z)) before and after D's update, as pytorch/examples' dcgan prints them.
    public var metricNames: [String] { ["loss_d", "loss_g", "d_x", "d_g_z1", "d_g_z2"] }
    /// The two losses in `loss.png`; the D outputs are logged but not drawn.
    public var plottedMetrics: [String] { ["loss_d", "loss_g"] }

    /// Starts the (seed, epoch) batch order and skips the steps a resumed run already did.
    public func beginEpoch(_ epoch: Int, skippingSteps: Int) { batches.begin(epoch: epoch, skippingSteps: skippingSteps) }

    /// One step of the GAN's game on the next real batch; returns the five `metricNames` scalars.
    /// Data parallel: this rank's rows of the global batch, the scalars averaged over the ranks.
    public func step() -> [Double] {
        let (real, labels) = batches.next()
        if let part = dataParallel { return dataParallelStep(part: part, real: real, labels: labels) }
        let r = gan.trainingStep(optimizers: ganOptimizers, ema: ema, real: real, labels: labels, rng: &noiseRNG, part: nil)
        return [r.lossD, r.lossG, r.dX, r.dGZ1, r.dGZ2]
    }

    /// One step as rank `part.group.rank`: every rank holds the global batch and draws its z; each
    /// computes its rows (the GAN's `trainingStep` with the part). An MPI failure or replicas that drifted
    /// apart end the whole job: the ranks would otherwise wait for each other forever.
    private func dataParallelStep(part: GANDataParallelPart, real: Tensor, labels: [Int]) -> [Double] {
        do {
            if !buffersShared {
                try part.group.broadcastValues(modules.flatMap { $0.module.namedBuffers() }, what: "buffers")
                buffersShared = true
            }
            let rows = part.rows
            let local = gan.trainingStep(optimizers: ganOptimizers, ema: ema, real: real.slice(axis: 0, rows),
                                         labels: Array(labels[rows]), rng: &noiseRNG, part: part)
            let r = try part.averaged(local)
            if verifiesReplicas { try verifyReplicas(part.group) }
            return [r.lossD, r.lossG, r.dX, r.dGZ1, r.dGZ2]
        } catch {
            FileHandle.standardError.write(Data("forge: error: rank \(part.group.rank) of \(part.group.size): \(error)\n".utf8))
            part.group.abort(code: 1)
        }
    }

    /// Compares every rank's state with rank 0's, bit for bit (see `verifiesReplicas`); rank 0 prints
    /// how many tensors agree.
    private func verifyReplicas(_ group: DataParallelGroup) throws {
        // running statistics of unsynchronised BatchNorm are each rank's own; the EMA's are recomputed by rank 0 alone
        var rankOwn = Set<ObjectIdentifier>()
        for (name, module) in modules {
            for case let bn as BatchNorm2d in module.namedModules().map(\.1) where name == "generator_ema" || !synchronizesBatchNorm {
                for (_, t) in bn.localBuffers { rankOwn.insert(ObjectIdentifier(t)) }
            }
        }
        var tensors = modules.flatMap { m in m.module.stateTensors().map { (m.name + "." + $0.0, $0.1) } }
            .filter { !rankOwn.contains(ObjectIdentifier($0.1)) }
        for (name, optimizer) in optimizers { tensors += optimizer.stateTensors(prefix: "optimizer.\(name).") }
        var differing: [String] = []
        for (name, t) in tensors where t.count > 0 {
            let root = t.detachedCopy()
            try group.broadcast(UnsafeMutableRawPointer(root.mutablePointer), count: root.count * MemoryLayout<Float>.size)
            if memcmp(root.pointer, t.pointer, t.count * MemoryLayout<Float>.size) != 0 { differing.append(name) }
        }
        if try group.anyRank([!differing.isEmpty])[0] {
            throw DataParallelError.mismatch(differing.isEmpty ? "another rank's state differs from rank 0's"
                                             : "rank \(group.rank)'s \(differing.prefix(5).joined(separator: ", ")) differ from rank 0's")
        }
        if group.isRoot {
            FileHandle.standardOutput.write(Data("replicas agree: \(tensors.count) tensors identical on \(group.size) ranks\n".utf8))
        }
    }

    /// G(fixed z), a row per class when conditional, through the EMA generator when there is one.
    public func fixedSamples() -> Tensor { gan.progressSamples(fixedNoise, labels: fixedLabels, ema: ema) }

    /// Writes the progress samples from the fixed noise: a grid at every epoch end and mid-epoch stop, or WAVs on the sound cadence.
    public func epochEnded(epoch: Int, step: Int, completed: Bool) throws {
        try writeSamples(self, epoch, step, completed)
    }
}

extension GANTrainingTask where Network == DCGAN {
    /// DCGAN training on an image set; the grid has one row of 8 per class when conditional, else 8 rows of 8.
    public convenience init(gan: DCGAN, data: ImageSet, samplesDirectory: String) throws {
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
        let labels = c.isConditional ? (0..<c.classCount).flatMap { Array(repeating: $0, count: 8) } : Array(repeating: 0, count: 64)
        self.init(gan: gan, batches: ImageGANBatches(data: data, batchSize: c.batchSize, seed: c.seed),
                  classNames: c.isConditional ? data.classNames : [], fixedLabels: labels, itemName: "samples",
                  samplesDirectory: samplesDirectory, writeSamples: { task, epoch, step, completed in
                      try writeEpochGrid(task.fixedSamples(), rowLabels: task.classNames, columns: task.gridColumns, directory: samplesDirectory,
                                         epoch: epoch, step: step, completed: completed, tensorBoard: task.tensorBoard)
                  })
    }

    /// Columns of the progress grid: one row of 8 per class.
    public var gridColumns: Int { 8 }
}

extension GANTrainingTask: DataParallelTrainingTask {
    /// Makes this task rank `group.rank` of `group`: each rank computes `--batch ÷ ranks` rows of every
    /// global batch (throws `DataParallelError.batchNotDivisible` when it does not split evenly), and
    /// with `synchronizesBatchNorm` G's and D's BatchNorm layers sum their statistics over the ranks.
    /// Gradients are averaged while backward runs when MPI allows it (`overlapsReduction`), except
    /// with `synchronizesBatchNorm`: its statistics are reduced on this thread inside forward and
    /// backward, and MPI calls here are serialised, so those runs average after backward.
    public func joinDataParallel(_ group: DataParallelGroup) throws {
        var part = try GANDataParallelPart(group: group, globalBatch: gan.batchSize)
        if synchronizesBatchNorm {
            part.synchronizeBatchNorm(in: [gan.generatorNetwork, gan.discriminatorNetwork])
        } else if group.overlapsReduction {
            part.overlapReduction(of: ganOptimizers)
        }
        dataParallel = part
    }

    /// Whether each player's gradients are averaged while backward runs (see `joinDataParallel`).
    public var reducesWhileBackwardRuns: Bool { dataParallel?.overlapsReduction == true }
}

extension GANTrainingTask where Network == WaveGAN {
    /// WaveGAN training on clips (N, config.length) with N ≥ one batch; `sampleCount` clips from the
    /// fixed noise are written after the first epoch, every `sampleEvery`-th epoch and when a run stops mid-epoch.
    public convenience init(gan: WaveGAN, clips: Tensor, samplesDirectory: String, sampleCount: Int = 4, sampleEvery: Int = 1) throws {
        let c = gan.config
        let batches = try ClipBatches(clips: clips, length: c.length, batchSize: c.batchSize, seed: c.seed,
                                      sampleCount: sampleCount, sampleEvery: sampleEvery)
        self.init(gan: gan, batches: batches, classNames: [], fixedLabels: [Int](repeating: 0, count: sampleCount),
                  itemName: "clips", samplesDirectory: samplesDirectory, writeSamples: { task, epoch, step, completed in
                      try writeEpochAudioSamples({ clipRows(task.fixedSamples()) }, sampleRate: c.sampleRate, directory: samplesDirectory,
                                                 sampleEvery: sampleEvery, epoch: epoch, step: step, completed: completed,
                                                 tensorBoard: task.tensorBoard)
                  })
    }
}

/// Writes an image task's progress grid as `directory/epoch_NNN.png` (or `epoch_NNN_step_S.png` when a
/// run stops mid-epoch) and `latest.png`, class names in the left margin when given; with a TensorBoard
/// writer also as `samples/fixed_noise_grid`.
func writeEpochGrid(_ images: Tensor, rowLabels: [String], columns: Int, directory: String, epoch: Int, step: Int, completed: Bool,
                    tensorBoard: TensorBoardWriter?) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let name = completed ? String(format: "epoch_%03d.png", epoch + 1) : String(format: "epoch_%03d_step_%d.png", epoch + 1, step)
    try LabelledGrid.write(images: images, rowLabels: rowLabels, columns: columns, to: directory + "/" + name)
    try LabelledGrid.write(images: images, rowLabels: rowLabels, columns: columns, to: directory + "/latest.png")
    try tensorBoard?.addImageFile("samples/fixed_noise_grid", path: directory + "/latest.png", step: step)
}
