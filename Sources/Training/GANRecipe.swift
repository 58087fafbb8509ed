import Foundation
import TensorCore
import Models

// The stable conditional GAN recipe's training side (issue 15): the hinge loss, an exponential
// moving average of G's weights, and the step that plays either loss. The networks' switches
// (conditional BatchNorm in G, spectral normalisation in D) live in Models/GAN.swift; TTUR is the
// config's two learning rates and Adam betas.

// MARK: - hinge loss

/// The discriminator's hinge loss mean(max(0, 1 − real)) + mean(max(0, 1 + fake)) on logits (B).
public func hingeDiscriminatorLoss(real: Tensor, fake: Tensor) -> Tensor {
    (1 - real).relu().mean() + (1 + fake).relu().mean()
}

/// The generator's hinge loss −mean(D(G(z))) on logits (B).
public func hingeGeneratorLoss(fake: Tensor) -> Tensor {
    -1 * fake.mean()
}

// MARK: - EMA of the generator

/// An exponential moving average of a generator's weights, G_ema ← d·G_ema + (1 − d)·G after every
/// G step (Karras et al. 2018, Yazıcı et al. 2019), used for every sample. The decay warms up as
/// d = min(decay, (1 + n)/(10 + n)) after n updates (TensorFlow's `ExponentialMovingAverage` with
/// `num_updates`), so early averages are not dominated by the random initial weights. Its BatchNorm
/// running statistics are not averaged: `recomputeBatchNormStatistics` measures them on G_ema itself,
/// since statistics of G's activations do not describe the averaged network's.
///
/// As a module (checkpointed as `generator_ema`): `average.*` is the generator, `num_updates` the count.
public final class GeneratorEMA: Module {
    /// The module's training flag, false from the start: the average is only evaluated, never back-propagated.
    public var isTraining = false
    /// The averaged generator (the same architecture as the trained one).
    public let average: DCGANGenerator
    /// The EMA decay d in [0, 1) once warmed up: the cap of `currentDecay`.
    public let decay: Float
    /// Updates so far (a scalar; Float like BatchNorm's counter, exact to 2^24).
    public let updateCount = Tensor(0)

    /// The update count, checkpointed as `num_updates`.
    public var localBuffers: [(String, Tensor)] { [("num_updates", updateCount)] }
    /// The averaged generator, checkpointed under `average`.
    public var namedChildren: [(String, any Module)] { [("average", average)] }

    /// The decay the next update uses.
    public var currentDecay: Float {
        let n = updateCount.pointer[0]
        return Swift.min(decay, (1 + n) / (10 + n))
    }

    /// Starts as a copy of `generator`'s parameters and buffers.
    public init(of generator: DCGANGenerator, decay: Float) {
        precondition(decay >= 0 && decay < 1, "GeneratorEMA: decay must be in [0, 1), got \(decay)")
        var unused = RandomGenerator(seed: 0)
        average = DCGANGenerator(generator.config, generator: &unused)
        self.decay = decay
        for ((_, a), (_, g)) in zip(average.stateTensors(), generator.stateTensors()) {
            a.mutablePointer.update(from: g.pointer, count: g.count)
        }
        average.eval()
        for p in average.parameters { p.requiresGrad = false }
    }

    /// One averaging step toward `generator`'s current parameters.
    public func update(from generator: DCGANGenerator) {
        let d = currentDecay, rest = 1 - d
        updateCount.mutablePointer[0] += 1
        for (a, g) in zip(average.parameters, generator.parameters) {
            let pa = a.mutablePointer, pg = g.pointer
            for i in 0..<a.count { pa[i] = d * pa[i] + rest * pg[i] }
        }
    }

    /// Sets every BatchNorm's running mean and variance of the averaged generator to the mean over
    /// `batches` batches of its own batch statistics (z ~ N(0, 1) from a fixed seed, labels cycling
    /// through the classes), like torch's `momentum=None` cumulative average. Deterministic, so a
    /// resumed run recomputes the same statistics.
    public func recomputeBatchNormStatistics(batches: Int = 16, batchSize: Int = 64, seed: UInt64 = 0x5eed) {
        let config = average.config
        let norms = average.namedModules().compactMap { $0.1 as? BatchNorm2d }.filter { $0.runningMean != nil }
        guard !norms.isEmpty else { return }
        var sums = norms.map { ([Double](repeating: 0, count: $0.runningMean!.count), [Double](repeating: 0, count: $0.runningVar!.count)) }
        var rng = RandomGenerator(seed: seed)
        average.train()
        defer { average.eval() }
        for batch in 0..<batches {
            // With the running values at 0 and the counter at 0, one forward leaves momentum·(batch statistic).
            for bn in norms {
                bn.runningMean!.mutablePointer.update(repeating: 0, count: bn.runningMean!.count)
                bn.runningVar!.mutablePointer.update(repeating: 0, count: bn.runningVar!.count)
                bn.numBatchesTracked?.mutablePointer[0] = 0
            }
            let z = Tensor.randn([batchSize, config.nz], generator: &rng)
            let labels = (0..<batchSize).map { config.isConditional ? (batch * batchSize + $0) % config.classCount : 0 }
            _ = withNoGrad { average.forward(z, labels: labels) }
            for (k, bn) in norms.enumerated() {
                let m = Double(bn.momentum ?? 1)
                for i in 0..<bn.runningMean!.count {
                    sums[k].0[i] += Double(bn.runningMean!.pointer[i]) / m
                    sums[k].1[i] += Double(bn.runningVar!.pointer[i]) / m
                }
            }
        }
        for (k, bn) in norms.enumerated() {
            for i in 0..<bn.runningMean!.count {
                bn.runningMean!.mutablePointer[i] = Float(sums[k].0[i] / Double(batches))
                bn.runningVar!.mutablePointer[i] = Float(sums[k].1[i] / Double(batches))
            }
            bn.numBatchesTracked?.mutablePointer[0] = Float(batches)
        }
    }

    /// Images from the averaged generator (BatchNorm in evaluation mode, no graph).
    public func generate(_ z: Tensor, labels: [Int]) -> Tensor {
        average.eval()
        return withNoGrad { average.forward(z, labels: labels) }
    }
}

// MARK: - the recipe's step

/// One training step of a `DCGAN` under its config's recipe: the loss (`.nonSaturating` plays exactly
/// pytorch/examples' step, `dcganTrainingStep`; `.hinge` the hinge game), then the EMA update when an
/// average is kept. z is drawn from `rng` once per step, as in `dcganTrainingStep`.
/// With `part` (data parallel) it plays this rank's rows of the global batch (see `dcganTrainingStep`).
public func recipeGANStep(_ gan: DCGAN, optimizers: GANOptimizers, ema: GeneratorEMA?, real: Tensor, labels: [Int],
                          rng: inout RandomGenerator, part: GANDataParallelPart? = nil) -> GANStepResult {
    let result: GANStepResult
    switch gan.config.loss {
    case .nonSaturating:
        result = dcganTrainingStep(gan, optimizers: optimizers, real: real, labels: labels, rng: &rng, part: part)
    case .hinge:
        result = hingeGANStep(gan, optimizers: optimizers, real: real, labels: labels, rng: &rng, part: part)
    }
    ema?.update(from: gan.generator)
    return result
}

/// The hinge game: D minimises the hinge loss on the real batch and a fake batch cut from G's graph,
/// then G minimises −D(G(z)) with D's weights frozen.
private func hingeGANStep(_ gan: DCGAN, optimizers: GANOptimizers, real: Tensor, labels: [Int], rng: inout RandomGenerator,
                          part: GANDataParallelPart?) -> GANStepResult {
    let b = real.shape[0]
    let (g, d) = (gan.generator, gan.discriminator)
    g.train()
    d.train()
    let augment = diffAugment(for: gan.config, rng: &rng).map { a in part.map { $0.augmenting(a) } ?? { a($0) } }
    func discriminate(_ x: Tensor) -> Tensor { d.forward(augment.map { $0(x) } ?? x, labels: labels) }
    optimizers.discriminator.zeroGrad()
    let outReal = discriminate(real)
    let z: Tensor  // this rank's rows of the global batch's z, or the whole batch's
    if let part { z = part.noise { gan.noise($0, generator: &rng) } } else { z = gan.noise(b, generator: &rng) }
    let fake = g.forward(z, labels: labels)  // the real batch's class mix
    let outFake = discriminate(fake.detachedSharingStorage())
    let lossD = hingeDiscriminatorLoss(real: outReal, fake: outFake)
    lossD.backward(leafGradientReady: part?.gradientReady(for: optimizers.discriminator))
    part?.averageGradients(of: optimizers.discriminator)
    optimizers.discriminator.step()

    optimizers.generator.zeroGrad()
    let dParams = d.parameters
    let dRequired = dParams.map(\.requiresGrad)  // a --freeze'd parameter stays frozen after this step
    for p in dParams { p.requiresGrad = false }
    let outG = discriminate(fake)
    let lossG = hingeGeneratorLoss(fake: outG)
    lossG.backward(leafGradientReady: part?.gradientReady(for: optimizers.generator))
    for (p, required) in zip(dParams, dRequired) { p.requiresGrad = required }
    part?.averageGradients(of: optimizers.generator)
    optimizers.generator.step()
    return GANStepResult(lossD: Double(lossD.item), lossG: Double(lossG.item),
                         dX: meanSigmoid(outReal), dGZ1: meanSigmoid(outFake), dGZ2: meanSigmoid(outG))
}
