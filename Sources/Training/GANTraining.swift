import Foundation
import TensorCore
import Models

// The GANs' optimisation: their two Adam optimizers and one step of the non-saturating game as
// pytorch/examples `dcgan/main.py` plays it, for the image DCGAN and the audio WaveGAN alike (the
// hinge game of the stable recipe is in GANRecipe.swift). Models hold only the networks.

/// The scalars of one training step, named as in pytorch/examples dcgan.
public struct GANStepResult: Sendable {
    /// D's loss on real + fake.
    public var lossD: Double
    /// G's non-saturating loss −log D(G(z)).
    public var lossG: Double
    /// Mean D(x) on the real batch.
    public var dX: Double
    /// Mean D(G(z)) before the D update (D_G_z1) and after it (D_G_z2).
    public var dGZ1: Double
    /// Mean D(G(z)) after D's update, as G's step sees it (D_G_z2).
    public var dGZ2: Double

    /// Stores the five scalars of one step.
    public init(lossD: Double, lossG: Double, dX: Double, dGZ1: Double, dGZ2: Double) {
        (self.lossD, self.lossG, self.dX, self.dGZ1, self.dGZ2) = (lossD, lossG, dX, dGZ1, dGZ2)
    }
}

/// The Adam optimizers of a GAN's two players, saved in checkpoints as "generator" and "discriminator".
public final class GANOptimizers {
    /// G's Adam over the generator's parameters (saved as "generator").
    public let generator: Adam
    /// D's Adam over the discriminator's parameters (saved as "discriminator").
    public let discriminator: Adam

    /// pytorch/examples' optimizers for a DCGAN: Adam with the config's betas, G at `learningRate`,
    /// D at `discriminatorLearningRate` (the same unless a recipe uses two rates).
    public init(for gan: DCGAN) {
        let c = gan.config
        generator = Adam(gan.generator.parameters, learningRate: c.learningRate, betas: (c.beta1, c.beta2))
        discriminator = Adam(gan.discriminator.parameters, learningRate: c.discriminatorLearningRate, betas: (c.beta1, c.beta2))
    }

    /// The WaveGAN's: Adam with the config's rate and betas for both.
    public init(for gan: WaveGAN) {
        let c = gan.config
        generator = Adam(gan.generator.parameters, learningRate: c.learningRate, betas: (c.beta1, c.beta2))
        discriminator = Adam(gan.discriminator.parameters, learningRate: c.learningRate, betas: (c.beta1, c.beta2))
    }

    /// As a task lists them for its checkpoint.
    public var named: [(name: String, optimizer: any Optimizer)] { [("generator", generator), ("discriminator", discriminator)] }
}

/// One DCGAN step on a real batch (B, C, S, S) in [-1, 1] with its labels, drawing z from `rng`:
/// (1) update D to maximise log D(x) + log(1 − D(G(z))); (2) update G to maximise log D(G(z)).
///
/// With `part` (data parallel) `real` and `labels` are this rank's rows of the global batch: z and the
/// augmentation are drawn for the whole global batch, as one process draws them, and cut to those
/// rows; each player's gradients are averaged over the ranks before its update.
public func dcganTrainingStep(_ gan: DCGAN, optimizers: GANOptimizers, real: Tensor, labels: [Int],
                              rng: inout RandomGenerator, part: GANDataParallelPart? = nil) -> GANStepResult {
    let b = real.shape[0]
    let (generator, discriminator) = (gan.generator, gan.discriminator)
    generator.train()
    discriminator.train()
    let augment = diffAugment(for: gan.config, rng: &rng).map { a in part.map { $0.augmenting(a) } ?? { a($0) } }
    return nonSaturatingGANStep(
        real: real, discriminator: discriminator, optimizerD: optimizers.discriminator, optimizerG: optimizers.generator,
        discriminate: { x in discriminator.forward(augment.map { $0(x) } ?? x, labels: labels) },
        makeFake: {
            let z: Tensor  // this rank's rows of the global batch's z, or the whole batch's
            if let part { z = part.noise { gan.noise($0, generator: &rng) } } else { z = gan.noise(b, generator: &rng) }
            return generator.forward(z, labels: labels)  // the real batch's class mix
        },
        beforeUpdate: part.map { part in { part.averageGradients(of: $0) } },
        gradientReady: part.map { part in { part.gradientReady(for: $0) } })
}

/// One WaveGAN step on a real batch (B, 1, length) in [-1, 1], drawing z and the phase shifts from
/// `rng`: the same two updates as `dcganTrainingStep`.
///
/// With `part` (data parallel) `real` is this rank's rows of the global batch: z and the phase shifts
/// are drawn for the whole global batch, as one process draws them, and cut to those rows; each
/// player's gradients are averaged over the ranks before its update.
public func waveGANTrainingStep(_ gan: WaveGAN, optimizers: GANOptimizers, real: Tensor,
                                rng: inout RandomGenerator, part: GANDataParallelPart? = nil) -> GANStepResult {
    let b = real.shape[0]
    let (generator, discriminator) = (gan.generator, gan.discriminator)
    generator.train()
    discriminator.train()
    // One generator feeds phase shuffle and z, in the step's call order.
    var shuffle: RandomGenerator? = rng
    let shard = part?.shard
    let result = nonSaturatingGANStep(
        real: real, discriminator: discriminator, optimizerD: optimizers.discriminator, optimizerG: optimizers.generator,
        discriminate: { discriminator.forward($0, shuffling: &shuffle, shard: shard) },
        makeFake: {
            var g = shuffle!
            let z: Tensor  // this rank's rows of the global batch's z, or the whole batch's
            if let part { z = part.noise { gan.noise($0, generator: &g) } } else { z = gan.noise(b, generator: &g) }
            shuffle = g
            return generator.forward(z)
        },
        beforeUpdate: part.map { part in { part.averageGradients(of: $0) } },
        gradientReady: part.map { part in { part.gradientReady(for: $0) } })
    rng = shuffle!
    return result
}

/// One GAN step on a real batch (its first dimension is the batch size):
/// (1) update D to maximise log D(x) + log(1 − D(G(z))) on the real batch and a fake batch cut from G's graph;
/// (2) update G to maximise log D(G(z)) with D's weights frozen, so backward skips their gradients
///     (PyTorch's example computes and then discards them; the update is the same).
/// `discriminate` gives D's logits (B) for a batch, `makeFake` draws z and returns G(z); they are called
/// in this order: D(real), makeFake, D(fake) for D, D(fake) for G (callers' random draws depend on it).
/// `beforeUpdate`, when given, runs on each optimizer just before its step (data parallel: it averages
/// that player's gradients over the ranks). `gradientReady`, when given, names the leaf hook of the
/// last backward before each player's update (data parallel: its reducer, which starts averaging a
/// bucket of gradients as soon as that backward has finished them).
func nonSaturatingGANStep(real: Tensor, discriminator: any Module, optimizerD: Adam, optimizerG: Adam,
                          discriminate: (Tensor) -> Tensor, makeFake: () -> Tensor,
                          beforeUpdate: ((Adam) -> Void)? = nil,
                          gradientReady: ((Adam) -> ((Tensor) -> Void)?)? = nil) -> GANStepResult {
    let b = real.shape[0]
    let ones = Tensor.ones([b]), zeros = Tensor.zeros([b])

    // (1) D step: real batch, then a fake batch cut from G's graph.
    optimizerD.zeroGrad()
    let outReal = discriminate(real)
    let errDReal = binaryCrossEntropyWithLogits(outReal, targets: ones)
    errDReal.backward()
    let fake = makeFake()
    let outFake = discriminate(fake.detachedSharingStorage())
    let errDFake = binaryCrossEntropyWithLogits(outFake, targets: zeros)
    errDFake.backward(leafGradientReady: gradientReady.flatMap { $0(optimizerD) })  // D's gradients are final after it
    beforeUpdate?(optimizerD)
    optimizerD.step()

    // (2) G step with D frozen.
    optimizerG.zeroGrad()
    let dParams = discriminator.parameters
    let dRequired = dParams.map(\.requiresGrad)  // a --freeze'd parameter stays frozen after this step
    for p in dParams { p.requiresGrad = false }
    let outG = discriminate(fake)
    let errG = binaryCrossEntropyWithLogits(outG, targets: ones)
    errG.backward(leafGradientReady: gradientReady.flatMap { $0(optimizerG) })
    for (p, required) in zip(dParams, dRequired) { p.requiresGrad = required }
    beforeUpdate?(optimizerG)
    optimizerG.step()

    return GANStepResult(lossD: Double(errDReal.item) + Double(errDFake.item), lossG: Double(errG.item),
                         dX: meanSigmoid(outReal), dGZ1: meanSigmoid(outFake), dGZ2: meanSigmoid(outG))
}

/// The step's DiffAugment when the config asks for it (its seed is drawn from `rng` first, so a run
/// without it draws exactly as before), else nil.
func diffAugment(for config: DCGANConfig, rng: inout RandomGenerator) -> DiffAugment? {
    config.diffAugment ? DiffAugment(policy: DiffAugmentPolicy(), seed: rng.next()) : nil
}

/// mean(σ(logits)) in Double.
func meanSigmoid(_ logits: Tensor) -> Double {
    var s = 0.0
    for v in logits.buffer { s += 1 / (1 + Foundation.exp(-Double(v))) }
    return s / Double(max(1, logits.count))
}

// MARK: - data parallel

/// This rank's part of a data-parallel DCGAN or WaveGAN step (see DataParallel.swift): its rows of every global
/// batch, the draws that keep it in step with one process, the gradient averaging and the averaged
/// scalars. Each player's loss is a mean over the batch and every rank holds an equal share of it,
/// so the mean of the ranks' gradients is the global batch's gradient.
public struct GANDataParallelPart {
    /// The ranks of the job.
    public let group: DataParallelGroup
    /// Images or clips per step over all ranks (the config's `batchSize`).
    public let globalBatch: Int
    /// This rank's rows of each global batch.
    public let rows: Range<Int>
    /// Each player's reducer (by its optimizer) when gradients are averaged while backward runs
    /// (`overlapReduction`); empty when they are averaged after backward.
    private var reducers: [ObjectIdentifier: OverlappedGradientReducer] = [:]

    /// Throws `DataParallelError.batchNotDivisible` when `globalBatch` does not split evenly over the ranks.
    public init(group: DataParallelGroup, globalBatch: Int) throws {
        self.group = group
        self.globalBatch = globalBatch
        rows = try group.shard(ofBatch: globalBatch)
    }

    /// The global batch's latent vectors, drawn by `draw(count)` (the model's `noise`) as one process
    /// draws them, cut to this rank's rows.
    func noise(_ draw: (Int) -> Tensor) -> Tensor {
        draw(globalBatch).slice(axis: 0, rows)
    }

    /// This rank's rows of the global batch, for per-example draws made over the whole batch.
    var shard: BatchShard { BatchShard(rows: rows, batch: globalBatch) }

    /// `augment` on this rank's rows as one process applies it to those rows of the global batch: the
    /// rows are placed among zero rows of the global batch's size (the augmentation draws per image, in
    /// batch order, so the generator moves as one process's does), and cut out again after it.
    func augmenting(_ augment: DiffAugment) -> (Tensor) -> Tensor {
        let (rows, globalBatch) = (self.rows, self.globalBatch)
        return { x in
            let rest = Array(x.shape.dropFirst())
            var pieces: [Tensor] = []
            if rows.lowerBound > 0 { pieces.append(Tensor.zeros([rows.lowerBound] + rest)) }
            pieces.append(x)
            if rows.upperBound < globalBatch { pieces.append(Tensor.zeros([globalBatch - rows.upperBound] + rest)) }
            return augment(Tensor.concat(pieces, axis: 0)).slice(axis: 0, rows)
        }
    }

    /// Averages each player's gradients while the last backward before its update runs (PyTorch DDP's
    /// overlap; `OverlappedGradientReducer`), instead of after it. Each element is summed once over
    /// the ranks either way, so with 2 ranks the two give the same bits.
    mutating func overlapReduction(of optimizers: GANOptimizers) {
        for optimizer in [optimizers.discriminator, optimizers.generator] {
            reducers[ObjectIdentifier(optimizer)] = OverlappedGradientReducer(group: group, parameters: optimizer.parameters)
        }
    }

    /// Whether gradients are averaged while backward runs (`overlapReduction`).
    var overlapsReduction: Bool { !reducers.isEmpty }

    /// The leaf hook to pass to the last backward before `optimizer`'s update, or nil when reducing after backward.
    func gradientReady(for optimizer: Adam) -> ((Tensor) -> Void)? {
        reducers[ObjectIdentifier(optimizer)]?.gradientReady
    }

    /// Replaces the gradients of `optimizer`'s parameters by their mean over the ranks (with overlap:
    /// waits for the reductions backward started and runs the rest); an MPI failure leaves the ranks
    /// out of step, so it ends the whole job.
    func averageGradients(of optimizer: Adam) {
        do {
            if let reducer = reducers[ObjectIdentifier(optimizer)] { return try reducer.finish() }
            try group.averageGradients(optimizer.parameters)
        } catch {
            FileHandle.standardError.write(Data("forge: error: rank \(group.rank): \(error)\n".utf8))
            group.abort(code: 1)
        }
    }

    /// The step's scalars averaged over the ranks: means over equal shards, so the global batch's
    /// (the losses and mean D outputs), the same on every rank.
    func averaged(_ r: GANStepResult) throws -> GANStepResult {
        let sums = try group.allreduceSum([r.lossD, r.lossG, r.dX, r.dGZ1, r.dGZ2].map { Float($0) })
        let n = Double(group.size)
        return GANStepResult(lossD: Double(sums[0]) / n, lossG: Double(sums[1]) / n, dX: Double(sums[2]) / n,
                             dGZ1: Double(sums[3]) / n, dGZ2: Double(sums[4]) / n)
    }

    /// Makes every BatchNorm layer of `modules` (the trained G and D, never the EMA, which rank 0 alone
    /// runs) sum its batch statistics over the ranks: SyncBatchNorm, the global batch's statistics.
    func synchronizeBatchNorm(in modules: [any Module]) {
        let group = self.group
        for module in modules {
            for case let bn as BatchNorm2d in module.namedModules().map(\.1) {
                bn.statisticsReducer = { values, count in
                    do {
                        try group.allreduceSum(values, count: count)
                    } catch {
                        FileHandle.standardError.write(Data("forge: error: rank \(group.rank): \(error)\n".utf8))
                        group.abort(code: 1)
                    }
                }
            }
        }
    }
}
