import Foundation
import TensorCore
import DataIO
import Models
import Figures

/// A trained VAE loaded from a `forge train vae` checkpoint, ready to decode prior draws.
/// Images come out as pixels in [0, 1] (the decoder's mean), without a graph.
public final class VAESampler {
    public let vae: VAE
    /// Class names stored in the checkpoint (empty when unconditional).
    public let classNames: [String]
    /// The training state the checkpoint was written at.
    public let state: TrainingState

    /// Loads the model (the optimizer state in the file is ignored).
    public init(checkpoint path: String) throws {
        let saved = try Checkpoint.load(path, expectedKind: "vae")
        let config = try saved.config(as: VAEConfig.self)
        if let problem = config.problem { throw CheckpointError(path: path, message: "invalid configuration: \(problem)") }
        vae = VAE(config)
        try saved.restore(modules: [("vae", vae)])
        vae.eval()
        classNames = try saved.stringArray("forge.classes")
        if config.isConditional && classNames.count != config.classCount {
            throw CheckpointError(path: path, message: "forge.classes lists \(classNames.count) names for \(config.classCount) classes")
        }
        state = saved.state
    }

    public var config: VAEConfig { vae.config }

    /// The class id of `name` (a class name or a number); errors list the known classes.
    public func classIndex(_ name: String) throws -> Int {
        guard config.isConditional else { throw SamplingError("this checkpoint is unconditional: it has no classes") }
        if let i = classNames.firstIndex(where: { $0.lowercased() == name.lowercased() }) { return i }
        if let i = Int(name), i >= 0, i < config.classCount { return i }
        throw SamplingError("unknown class \"\(name)\"; the classes are: \(classNames.joined(separator: ", "))")
    }

    /// Labels for `count` images: all `classIndex`, or (conditional, no class) one class per grid row; nil when unconditional.
    public func labels(count: Int, classIndex: Int?, columns: Int = 8) -> [Int]? {
        guard config.isConditional else { return nil }
        if let classIndex { return [Int](repeating: classIndex, count: count) }
        return (0..<count).map { ($0 / columns) % config.classCount }
    }

    /// The class name beside each row of a `columns`-wide grid of `count` images sampled with
    /// `classIndex` (as `labels(count:classIndex:columns:)` lays them out); empty when unconditional.
    public func rowLabels(count: Int, classIndex: Int?, columns: Int = 8) -> [String] {
        guard config.isConditional, !classNames.isEmpty, count > 0, columns > 0 else { return [] }
        let perRow = min(columns, count)
        let ids = labels(count: count, classIndex: classIndex, columns: columns) ?? []
        guard ids.count == count else { return [] }
        return stride(from: 0, to: count, by: perRow).map { classNames[ids[$0] % classNames.count] }
    }

    /// `count` decoded draws z ~ N(0, I) from a generator seeded with `seed`: (count, C, S, S) in [0, 1].
    public func sample(count: Int, seed: UInt64, classIndex: Int? = nil, columns: Int = 8) throws -> Tensor {
        guard count > 0 else { throw SamplingError("count must be positive, got \(count)") }
        var rng = RandomGenerator(seed: seed)
        return vae.sample(count: count, labels: labels(count: count, classIndex: classIndex, columns: columns), rng: &rng)
    }

    /// `steps` images decoded along the great circle from z_A (seed `a`) to z_B (seed `b`): slerp keeps
    /// the norm typical of N(0, I) draws, where a straight line passes through low-norm z the decoder rarely saw.
    public func interpolate(seedA a: UInt64, seedB b: UInt64, steps: Int, classIndex: Int? = nil) throws -> Tensor {
        guard steps >= 2 else { throw SamplingError("--steps must be at least 2, got \(steps)") }
        let l = config.latent
        var ga = RandomGenerator(seed: a), gb = RandomGenerator(seed: b)
        let za = Tensor.randn([1, l], generator: &ga).scalars, zb = Tensor.randn([1, l], generator: &gb).scalars
        let dot = zip(za, zb).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
        let na = za.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let nb = zb.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
        let omega = Foundation.acos(Swift.max(-1, Swift.min(1, dot / (na * nb))))
        var values: [Float] = []
        values.reserveCapacity(steps * l)
        for i in 0..<steps {
            let t = Double(i) / Double(steps - 1)
            let (wa, wb): (Double, Double) = omega < 1e-6
                ? (1 - t, t)
                : (Foundation.sin((1 - t) * omega) / Foundation.sin(omega), Foundation.sin(t * omega) / Foundation.sin(omega))
            for j in 0..<l { values.append(Float(wa * Double(za[j]) + wb * Double(zb[j]))) }
        }
        let labels = config.isConditional ? [Int](repeating: classIndex ?? 0, count: steps) : nil
        return vae.generate(Tensor(shape: [steps, l], data: values), labels: labels)
    }

    /// Writes `images` (pixels in [0, 1]) as one grid PNG with `columns` columns, `rowLabels` (class
    /// names) in a left margin when given, creating the folder.
    public static func writeGrid(_ images: Tensor, columns: Int = 8, rowLabels: [String] = [], to path: String) throws {
        try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().path,
                                                withIntermediateDirectories: true)
        try LabelledGrid.write(images: images, rowLabels: rowLabels, columns: columns, range: .zeroToOne, to: path)
    }

    /// Writes each image as `directory/NNNN.png`; returns the paths.
    @discardableResult
    public static func writeImages(_ images: Tensor, to directory: String) throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return try (0..<images.shape[0]).map { i in
            let path = directory + "/" + String(format: "%04d.png", i)
            let image = images.slice(axis: 0, i..<(i + 1)).reshaped(Array(images.shape.dropFirst()))
            try ImageCodec.writePNG(image, range: .zeroToOne, to: path)
            return path
        }
    }
}
