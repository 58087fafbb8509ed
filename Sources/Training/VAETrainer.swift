import Foundation
import Figures
import TensorCore
import DataIO
import Models

// VAE training as a `TrainingTask` (the loop, checkpoints, metrics and Ctrl-C come from
// TrainingLoop), and the evaluation of a trained VAE on a set of images (−ELBO and IWAE, in nats
// per image). Epoch output follows pytorch/examples vae/main.py:
//     ====> Epoch: 3 Average loss: 245.1234
//     ====> Test set loss: 244.5678
// plus `reconstruction_E.png` (8 held-out originals over their reconstructions) and `sample_E.png`
// (64 prior draws, the same z every epoch) in the samples folder, and `epochs.csv` beside metrics.csv.

/// Data handling shared by the VAE commands.
public enum VAEData {
    /// The same images with pixels mapped from DataIO's [-1, 1] to the [0, 1] the VAE models.
    public static func unitRange(_ set: ImageSet) -> ImageSet {
        ImageSet(images: VAE.unitRange(set.images), labels: set.labels, classNames: set.classNames)
    }

    /// Splits off a held-out fraction (a seeded random subset) of `set`: (training, held-out).
    public static func split(_ set: ImageSet, heldOutFraction: Double, seed: UInt64) throws -> (ImageSet, ImageSet) {
        guard heldOutFraction > 0 && heldOutFraction < 1 else {
            throw TrainingError.invalidValue(field: "heldOutFraction", value: "\(heldOutFraction)", requirement: "between 0 and 1")
        }
        let heldOut = Int((Double(set.count) * heldOutFraction).rounded())
        guard heldOut >= 1 && heldOut < set.count else {
            throw TrainingError.invalidConfiguration("\(set.count) images are too few to hold out \(heldOutFraction)")
        }
        var g = RandomGenerator(seed: seed ^ 0x5EED_0F_5E7)
        let order = g.permutation(set.count)
        func subset(_ idx: ArraySlice<Int>) -> ImageSet {
            let indices = Array(idx).sorted()
            return ImageSet(images: set.images.indexSelect(indices), labels: set.isLabelled ? indices.map { set.labels[$0] } : [],
                            classNames: set.classNames)
        }
        return (subset(order[heldOut...]), subset(order[..<heldOut]))
    }
}

/// The negative ELBO (and optionally the IWAE bound) of a VAE over a set of images, in nats per image.
public enum VAEEvaluator {
    /// Result of `evaluate`.
    public struct Result: Sendable {
        /// Images evaluated.
        public var count: Int
        /// Mean negative ELBO (reconstruction + KL, one z per image) in nats per image.
        public var negativeELBO: Double
        /// Mean reconstruction term −log p(x|z).
        public var reconstruction: Double
        /// Mean KL term.
        public var kl: Double
        /// Mean IWAE estimate of −log p(x) with `samples` importance samples (nil when not asked).
        public var iwae: Double?
        /// Importance samples per image behind `iwae` (0 when it was not asked).
        public var samples: Int
    }

    /// The example's test loop: batches in order, no graph, one reparameterised z per image.
    /// `set` holds pixels in [0, 1]. With `importanceSamples` k ≥ 1 also the IWAE bound.
    public static func evaluate(_ vae: VAE, on set: ImageSet, batchSize: Int = 128, importanceSamples: Int? = nil,
                                rng: inout RandomGenerator, progress: ((Int) -> Void)? = nil) -> Result {
        vae.eval()
        defer { vae.train() }
        var total = 0.0, recon = 0.0, kl = 0.0, iwae = 0.0
        let labelled = vae.config.isConditional
        for start in stride(from: 0, to: set.count, by: batchSize) {
            let end = min(set.count, start + batchSize)
            let x = set.images.slice(axis: 0, start..<end).detachedCopy()
            let labels = labelled ? Array(set.labels[start..<end]) : nil
            if let k = importanceSamples {
                let r = vae.elboAndIWAE(x, labels: labels, samples: k, rng: &rng)
                total += r.negativeELBO.reduce(0, +)
                iwae += r.iwae.reduce(0, +)
            } else {
                let r = vae.evaluate(x, labels: labels, rng: &rng)
                (total, recon, kl) = (total + r.total, recon + r.reconstruction, kl + r.kl)
            }
            progress?(end)
        }
        let n = Double(max(set.count, 1))
        return Result(count: set.count, negativeELBO: total / n, reconstruction: recon / n, kl: kl / n,
                      iwae: importanceSamples == nil ? nil : iwae / n, samples: importanceSamples ?? 0)
    }
}

/// One epoch's figures, as printed and written to `epochs.csv`.
public struct VAEEpochResult: Sendable, Equatable {
    /// 1-based epoch.
    public var epoch: Int
    /// Mean −ELBO over the training images of this epoch, with the weights as they were at each step.
    public var trainNegativeELBO: Double
    /// Mean −ELBO on the held-out images after the epoch (nil without a held-out set).
    public var testNegativeELBO: Double?
    /// Seconds of the epoch's training steps.
    public var trainSeconds: Double
}

/// VAE training on `ImageSet`s (pixels in [0, 1], see `VAEData.unitRange`) as a `TrainingTask`.
public final class VAETrainingTask: DataParallelTrainingTask {
    /// The image VAE being trained (its config gives the image shape, batch size, seed and conditioning).
    public let vae: VAE
    /// Adam over the model's parameters (`VAE.makeOptimizer`, pytorch/examples' choice).
    public let optimizer: Adam
    /// The training images, (N, C, S, S) pixels in [0, 1], labelled when the model is conditional.
    public let data: ImageSet
    /// Images whose −ELBO is reported after each epoch and whose first 8 are reconstructed; nil = none.
    public let heldOut: ImageSet?
    /// Folder of the per-epoch `reconstruction_E.png`, `sample_E.png` and `epochs.csv`.
    public let samplesDirectory: String
    /// Where the epoch lines go (stdout by default).
    public var log: (String) -> Void = { StandardOutput.line($0) }   // unbuffered: keeps its place among progress lines
    /// Every completed epoch of this invocation.
    public private(set) var history: [VAEEpochResult] = []

    private var noiseRNG: RandomGenerator
    private var evalRNG: RandomGenerator
    private let fixedNoise: Tensor
    private let fixedLabels: [Int]?
    private let originals: Tensor
    private let originalLabels: [Int]?
    private var batches: ImageBatches?
    private var epochLoss = 0.0, epochImages = 0, epochSeconds = 0.0
    /// Set by `joinDataParallel`: this process is one rank of a data-parallel job.
    private var dataParallel: DataParallelGroup?
    private var reducer: OverlappedGradientReducer?

    /// Checks that `data` (and `heldOut`) match the model's channels, size and classes; throws `TrainingError` if not.
    public init(vae: VAE, data: ImageSet, heldOut: ImageSet?, samplesDirectory: String) throws {
        let c = vae.config
        for (set, what) in [(data, "training data")] + (heldOut.map { [($0, "held-out data")] } ?? []) {
            guard set.channels == c.channels, set.size == c.imageSize else {
                throw TrainingError.invalidConfiguration("the \(what) is \(set.channels)×\(set.size)×\(set.size) but the model wants \(c.channels)×\(c.imageSize)×\(c.imageSize)")
            }
            if c.isConditional && (!set.isLabelled || set.classNames.count != c.classCount) {
                throw TrainingError.invalidConfiguration("a conditional model of \(c.classCount) classes needs labelled \(what) with that many classes")
            }
        }
        guard data.count >= 1 else { throw TrainingError.invalidConfiguration("no training images") }
        self.vae = vae
        optimizer = vae.makeOptimizer()
        self.data = data
        self.heldOut = heldOut
        self.samplesDirectory = samplesDirectory
        noiseRNG = RandomGenerator(seed: c.seed &+ 1)
        evalRNG = RandomGenerator(seed: c.seed &+ 3)
        // Grid inputs are fixed for the whole run (own generator, so they never shift the training noise).
        var fixed = RandomGenerator(seed: c.seed &+ 2)
        fixedNoise = Tensor.randn([64, c.latent], generator: &fixed)
        fixedLabels = c.isConditional ? (0..<64).map { ($0 / 8) % c.classCount } : nil   // a class per row
        let source = heldOut ?? data
        let n = min(8, source.count)
        originals = source.images.slice(axis: 0, 0..<n).detachedCopy()
        originalLabels = c.isConditional ? Array(source.labels[0..<n]) : nil
    }

    /// Checkpoint kind "vae".
    public var kind: String { "vae" }
    /// The `VAEConfig` as JSON.
    public var configJSON: String { (try? Checkpoint.jsonString(vae.config)) ?? "{}" }
    /// The VAE, saved under the name "vae".
    public var modules: [(name: String, module: any Module)] { [("vae", vae)] }
    /// The Adam optimizer, saved under the name "vae".
    public var optimizers: [(name: String, optimizer: any Optimizer)] { [("vae", optimizer)] }
    /// "noise" (the reparameterisation ε of training) and "eval" (that of the held-out evaluation).
    public var generators: [String: RandomGenerator] {
        get { ["noise": noiseRNG, "eval": evalRNG] }
        set {
            if let g = newValue["noise"] { noiseRNG = g }
            if let g = newValue["eval"] { evalRNG = g }
        }
    }
    /// The class names as `forge.classes` for a conditional model; nothing otherwise.
    public var extraMetadata: [String: String] {
        vae.config.isConditional ? ["forge.classes": (try? Checkpoint.jsonString(data.classNames)) ?? "[]"] : [:]
    }

    /// Every image once per epoch, the last batch partial (as the example's DataLoader).
    public var stepsPerEpoch: Int { (data.count + vae.config.batchSize - 1) / vae.config.batchSize }
    /// Images per batch (`VAEConfig.batchSize`; the epoch's last batch may be smaller).
    public var itemsPerStep: Int { vae.config.batchSize }
    /// Per image of the batch: −ELBO, its reconstruction term and its KL term, in nats.
    public var metricNames: [String] { ["loss", "reconstruction", "kl"] }
    /// Only the −ELBO per image in `loss.png`.
    public var plottedMetrics: [String] { ["loss"] }

    /// Starts the (seed, epoch) shuffle of the images, skips the steps a resumed run already did, zeroes the epoch sums.
    public func beginEpoch(_ epoch: Int, skippingSteps: Int) {
        var it = data.batches(size: vae.config.batchSize, seed: vae.config.seed, epoch: epoch)
        for _ in 0..<skippingSteps { _ = it.next() }
        batches = it
        (epochLoss, epochImages, epochSeconds) = (0, 0, 0)
    }

    /// One Adam step on the next batch (`vaeTrainingStep`, or its data-parallel form); returns the terms per image.
    public func step() -> [Double] {
        guard let (images, batchLabels) = batches?.next() else { preconditionFailure("VAETrainingTask: epoch ran out of batches") }
        let t0 = DispatchTime.now().uptimeNanoseconds
        let labels = vae.config.isConditional ? batchLabels : nil
        let r = vaeStep(vae, optimizer: optimizer, batch: images, labels: labels, rng: &noiseRNG, group: dataParallel, reducer: reducer)
        epochSeconds += Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
        let n = Double(images.shape[0])
        epochLoss += r.total
        epochImages += images.shape[0]
        return [r.total / n, r.reconstruction / n, r.kl / n]
    }

    /// Every rank computes its rows of each global batch (`--batch`, which must split evenly; an
    /// epoch's short last batch is split as evenly as it goes), and the summed gradients are the
    /// global batch's, so N ranks train what one process trains.
    public func joinDataParallel(_ group: DataParallelGroup) throws {
        _ = try group.shard(ofBatch: vae.config.batchSize)  // throws when the batch does not divide
        dataParallel = group
        reducer = group.overlapsReduction ? OverlappedGradientReducer(group: group, parameters: vae.parameters, summed: true) : nil
    }

    /// True when the gradient buckets are summed on their own thread while backward runs (see `joinDataParallel`).
    public var reducesWhileBackwardRuns: Bool { reducer != nil }

    /// The progress grids: 8 originals over their reconstructions, and decoded fixed prior draws.
    public func grids() -> (reconstruction: Tensor, samples: Tensor) {
        let recon = vae.reconstruct(originals, labels: originalLabels)
        return (Tensor.concat([originals, recon], axis: 0), vae.generate(fixedNoise, labels: fixedLabels))
    }

    /// After a completed epoch only: logs train/test −ELBO, writes the two grids and the `epochs.csv` row.
    public func epochEnded(epoch: Int, step: Int, completed: Bool) throws {
        guard completed else { return }   // the figures of a partial epoch would not compare
        let e = epoch + 1
        let trainAvg = epochLoss / Double(max(epochImages, 1))
        log(String(format: "====> Epoch: %d Average loss: %.4f", e, trainAvg))
        var testAvg: Double? = nil
        if let heldOut {
            testAvg = VAEEvaluator.evaluate(vae, on: heldOut, batchSize: vae.config.batchSize, rng: &evalRNG).negativeELBO
            log(String(format: "====> Test set loss: %.4f", testAvg!))
        }
        let result = VAEEpochResult(epoch: e, trainNegativeELBO: trainAvg, testNegativeELBO: testAvg, trainSeconds: epochSeconds)
        history.append(result)
        try FileManager.default.createDirectory(atPath: samplesDirectory, withIntermediateDirectories: true)
        let (recon, samples) = grids()
        try ImageCodec.writeGrid(recon, range: .zeroToOne, columns: recon.shape[0] / 2, to: samplesDirectory + "/reconstruction_\(e).png")
        // Conditional: row r is class fixedLabels[8r]; its name goes in the left margin.
        let rowLabels = fixedLabels.map { ids in stride(from: 0, to: ids.count, by: 8).map { ids[$0] < data.classNames.count ? data.classNames[ids[$0]] : "" } } ?? []
        try LabelledGrid.write(images: samples, rowLabels: rowLabels, columns: 8, range: .zeroToOne, to: samplesDirectory + "/sample_\(e).png")
        try tensorBoard?.addImageFile("samples/reconstructions", path: samplesDirectory + "/reconstruction_\(e).png", step: step)
        try tensorBoard?.addImageFile("samples/generated", path: samplesDirectory + "/sample_\(e).png", step: step)
        try appendEpochRow(result)
    }

    /// `epochs.csv`: epoch, train and test −ELBO per image, seconds of training steps. A resumed run
    /// drops rows of epochs it is about to redo.
    private func appendEpochRow(_ r: VAEEpochResult) throws {
        let path = samplesDirectory + "/epochs.csv"
        let header = "epoch,train_neg_elbo,test_neg_elbo,train_s"
        var lines = ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        if lines.first != header { lines = [header] }
        lines = [header] + lines.dropFirst().filter { Int($0.split(separator: ",").first ?? "") ?? .max < r.epoch }
        lines.append(String(format: "%d,%.4f,%@,%.2f", r.epoch, r.trainNegativeELBO,
                            r.testNegativeELBO.map { String(format: "%.4f", $0) } ?? "", r.trainSeconds))
        try FileIO.writeAtomically(Array((lines.joined(separator: "\n") + "\n").utf8), to: path)
    }
}

// MARK: - data parallel

/// One VAE step of either task (images or sound): `dataParallelVAETrainingStep` as a rank of `group`,
/// else `vaeTrainingStep`. An MPI failure mid-step leaves the ranks out of step, so it ends the whole job.
func vaeStep(_ vae: VAE, optimizer: Adam, batch: Tensor, labels: [Int]?, rng: inout RandomGenerator,
             group: DataParallelGroup?, reducer: OverlappedGradientReducer?) -> (total: Double, reconstruction: Double, kl: Double) {
    guard let group else { return vaeTrainingStep(vae, optimizer: optimizer, batch: batch, labels: labels, rng: &rng) }
    do {
        return try dataParallelVAETrainingStep(vae, optimizer: optimizer, batch: batch, labels: labels, rng: &rng, group: group, reducer: reducer)
    } catch {
        FileHandle.standardError.write(Data("forge: error: rank \(group.rank): \(error)\n".utf8))
        group.abort(code: 1)
    }
}

/// One Adam step of the VAE as rank `group.rank` of a data-parallel job. Every rank holds the whole
/// global batch `x` (B, …) and draws the whole batch's noise ε (B, latent) from `rng`, exactly as one
/// process draws it; it computes the loss of its rows only. The loss is a sum over the batch, so the
/// summed gradients (`DataParallelGroup.sumGradients`) and the summed loss terms are the global
/// batch's. Returns the global batch's summed terms, the same on every rank. With a `reducer` the
/// buckets are summed while backward runs, unless some rank has no rows this step (a last batch
/// smaller than the ranks): that rank runs no backward, so every rank sums after backward instead,
/// and the ranks' MPI calls stay in the same order.
public func dataParallelVAETrainingStep(_ vae: VAE, optimizer: Adam, batch x: Tensor, labels: [Int]?,
                                        rng: inout RandomGenerator, group: DataParallelGroup,
                                        reducer: OverlappedGradientReducer? = nil) throws -> (total: Double, reconstruction: Double, kl: Double) {
    let b = x.shape[0]
    let eps = Tensor.randn([b, vae.config.latent], generator: &rng)  // (B, latent): the global batch's draw
    let rows = group.unevenShard(ofBatch: b)
    vae.train()
    optimizer.zeroGrad()
    var local: [Float] = [0, 0, 0]
    let overlapped = b >= group.size ? reducer : nil   // every rank has rows: every rank runs backward
    if !rows.isEmpty {
        let terms = vae.loss(x.slice(axis: 0, rows), labels: labels.map { Array($0[rows]) }, noise: eps.slice(axis: 0, rows))
        if let overlapped {
            terms.total.backward(leafGradientReady: overlapped.gradientReady)
        } else {
            terms.total.backward()
        }
        local = [terms.total.item, terms.reconstruction.item, terms.kl.item]
    } else {
        // a rank without rows this step (a last batch smaller than the ranks) adds zero gradients
        for p in vae.parameters where p.requiresGrad {
            if p.grad == nil { p.grad = Tensor.zeros(p.shape) }
        }
    }
    if let overlapped { try overlapped.finish() } else { try group.sumGradients(vae.parameters) }
    optimizer.step()
    let global = try group.allreduceSum(local)
    return (Double(global[0]), Double(global[1]), Double(global[2]))
}
