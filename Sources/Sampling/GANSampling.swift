import Foundation
import TensorCore
import DataIO
import Models
import Figures

/// Errors of the sampling commands (bad class name, bad count, …).
public struct SamplingError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A trained DCGAN generator loaded from a checkpoint, ready to draw images.
/// Sampling runs BatchNorm in evaluation mode without a graph, so an image depends only on its
/// own seed-derived z and label, not on the batch it is drawn with.
public final class GANSampler {
    public let gan: DCGAN
    /// Class names stored in the checkpoint (empty when unconditional).
    public let classNames: [String]
    /// The training state the checkpoint was written at.
    public let state: TrainingState

    /// Loads the generator (the discriminator and optimizers in the file are ignored).
    public init(checkpoint path: String) throws {
        let saved = try Checkpoint.load(path, expectedKind: "gan")
        let config = try saved.config(as: DCGANConfig.self)
        if let problem = config.problem { throw CheckpointError(path: path, message: "invalid configuration: \(problem)") }
        gan = DCGAN(config)
        // A recipe with an EMA samples from the averaged generator (its BatchNorm statistics were
        // recomputed before the checkpoint was written), loaded into the generator slot.
        let hasAverage = config.emaDecay > 0 && saved.tensors.keys.contains { $0.hasPrefix("generator_ema.average.") }
        if hasAverage {
            try saved.restore(modules: [("generator_ema.average", gan.generator)])
        } else {
            try saved.restore(modules: [("generator", gan.generator)])
        }
        classNames = try saved.stringArray("forge.classes")
        if config.isConditional && classNames.count != config.classCount {
            throw CheckpointError(path: path, message: "forge.classes lists \(classNames.count) names for \(config.classCount) classes")
        }
        state = saved.state
    }

    public var config: DCGANConfig { gan.config }

    /// The class id of `name` (a class name or a number); errors list the known classes.
    public func classIndex(_ name: String) throws -> Int {
        guard config.isConditional else { throw SamplingError("this checkpoint is unconditional: it has no classes") }
        if let i = classNames.firstIndex(of: name) { return i }
        if let i = classNames.firstIndex(where: { $0.lowercased() == name.lowercased() }) { return i }
        if let i = Int(name), i >= 0, i < config.classCount { return i }
        throw SamplingError("unknown class \"\(name)\"; the classes are: \(classNames.joined(separator: ", "))")
    }

    /// Labels for `count` images: all `classIndex`, or (conditional, no class) cycling through the
    /// classes in blocks so that a grid with `columns` columns shows one class per row.
    public func labels(count: Int, classIndex: Int?, columns: Int = 8) -> [Int] {
        guard config.isConditional else { return [Int](repeating: 0, count: count) }
        if let classIndex { return [Int](repeating: classIndex, count: count) }
        return (0..<count).map { ($0 / columns) % config.classCount }
    }

    /// The class name beside each row of a `columns`-wide grid of `count` images sampled with
    /// `classIndex` (as `labels(count:classIndex:columns:)` lays them out); empty when unconditional.
    public func rowLabels(count: Int, classIndex: Int?, columns: Int = 8) -> [String] {
        guard config.isConditional, !classNames.isEmpty, count > 0, columns > 0 else { return [] }
        let perRow = min(columns, count)
        let ids = labels(count: count, classIndex: classIndex, columns: columns)
        return stride(from: 0, to: count, by: perRow).map { classNames[ids[$0] % classNames.count] }
    }

    /// `count` images (count, C, S, S) in [-1, 1] from latent vectors drawn with `seed`.
    public func sample(count: Int, seed: UInt64, classIndex: Int? = nil, columns: Int = 8) throws -> Tensor {
        guard count > 0 else { throw SamplingError("count must be positive, got \(count)") }
        var rng = RandomGenerator(seed: seed)
        let z = gan.noise(count, generator: &rng)
        return gan.generate(z, labels: labels(count: count, classIndex: classIndex, columns: columns))
    }

    /// A latent interpolation: `steps` images from z_A (seed `a`) to z_B (seed `b`) along the great
    /// circle (slerp keeps the norm typical of N(0, I) samples, where a straight line would pass
    /// through low-norm z that G rarely saw), all with the same label.
    public func interpolate(seedA a: UInt64, seedB b: UInt64, steps: Int, classIndex: Int? = nil) throws -> Tensor {
        guard steps >= 2 else { throw SamplingError("--steps must be at least 2, got \(steps)") }
        var ga = RandomGenerator(seed: a), gb = RandomGenerator(seed: b)
        let za = gan.noise(1, generator: &ga).scalars, zb = gan.noise(1, generator: &gb).scalars
        let nz = config.nz
        let dot = zip(za, zb).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let na = za.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let nb = zb.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let omega = Foundation.acos(Swift.max(-1, Swift.min(1, dot / (na * nb))))
        var values: [Float] = []
        values.reserveCapacity(steps * nz)
        for i in 0..<steps {
            let t = Double(i) / Double(steps - 1)
            let (wa, wb): (Double, Double) = omega < 1e-6
                ? (1 - t, t)
                : (Foundation.sin((1 - t) * omega) / Foundation.sin(omega), Foundation.sin(t * omega) / Foundation.sin(omega))
            for j in 0..<nz { values.append(Float(wa * Double(za[j]) + wb * Double(zb[j]))) }
        }
        let label = classIndex ?? 0
        return gan.generate(Tensor(shape: [steps, nz], data: values), labels: [Int](repeating: label, count: steps))
    }

    /// Writes `images` as one grid PNG with `columns` columns, `rowLabels` (class names) in a left margin when given.
    public static func writeGrid(_ images: Tensor, columns: Int = 8, rowLabels: [String] = [], to path: String) throws {
        try createParent(of: path)
        try LabelledGrid.write(images: images, rowLabels: rowLabels, columns: columns, to: path)
    }

    /// Writes each image as its own PNG `directory/NNNN.png`; returns the paths.
    @discardableResult
    public static func writeImages(_ images: Tensor, to directory: String, prefix: String = "") throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var paths: [String] = []
        for i in 0..<images.shape[0] {
            let path = directory + "/" + prefix + String(format: "%04d.png", i)
            try ImageCodec.writePNG(images[i], range: .minusOneToOne, to: path)
            paths.append(path)
        }
        return paths
    }

    static func createParent(of path: String) throws {
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }
}
