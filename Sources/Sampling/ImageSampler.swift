import Foundation
import TensorCore
import DataIO
import Models
import Figures

/// Errors of sampling and generation (bad class name, bad count, …). An error about one setting
/// names it by its library `field` (e.g. `perClass`), so a front end can say which of its own
/// options it was.
public struct SamplingError: Error, CustomStringConvertible {
    /// The whole message, ready to show (for a `field` error: "`field` `problem`").
    public let description: String
    /// The setting the error is about (an API name such as `perClass`), or nil.
    public let field: String?
    /// What is wrong with `field`, without its name (e.g. "must be positive, got 0").
    public let problem: String?

    /// An error not tied to one setting (`field` and `problem` nil).
    public init(_ description: String) { (self.description, field, problem) = (description, nil, nil) }

    /// An error about one setting: "`field` `problem`".
    public init(field: String, _ problem: String) {
        (self.description, self.field, self.problem) = ("\(field) \(problem)", field, problem)
    }
}

/// A trained image model loaded from a checkpoint, ready to draw images: the one implementation of
/// class lookup, label layout, prior draws, latent interpolation and image writing that the GAN
/// (`GANSampler`) and the VAE (`VAESampler`) share. A subclass only loads its network and says how
/// latent vectors become images.
///
/// Decoding runs in evaluation mode without a graph (BatchNorm on running statistics), so an image
/// depends only on its own z and label, never on the batch it is drawn with.
public class ImageSampler: SyntheticImageSource {
    /// The checkpoint kind ("gan", "vae").
    public let modelKind: String
    /// Class names stored in the checkpoint (empty when unconditional).
    public let classNames: [String]
    /// The training state the checkpoint was written at.
    public let state: TrainingState
    /// Latent size (G's nz, the VAE's latent).
    public let latentSize: Int
    /// Image channels: 1 (gray) or 3 (RGB).
    public let channels: Int
    /// Image side in pixels (square images).
    public let imageSize: Int
    /// Classes of a conditional model; 0 when unconditional.
    public let classCount: Int
    /// How the decoded values map to intensities.
    public let valueRange: ImageValueRange
    private let decodeLatents: (Tensor, [Int]?) -> Tensor

    /// `decode` maps latent vectors (B, latentSize) and, for a conditional model, one label per row,
    /// to images (B, C, S, S) in `valueRange`, without a graph.
    public init(modelKind: String, classNames: [String], state: TrainingState, latentSize: Int, channels: Int,
                imageSize: Int, classCount: Int, valueRange: ImageValueRange, checkpoint path: String,
                decode: @escaping (Tensor, [Int]?) -> Tensor) throws {
        if classCount > 0 && classNames.count != classCount {
            throw CheckpointError(path: path, message: "forge.classes lists \(classNames.count) names for \(classCount) classes")
        }
        (self.modelKind, self.classNames, self.state, self.latentSize) = (modelKind, classNames, state, latentSize)
        (self.channels, self.imageSize, self.classCount, self.valueRange) = (channels, imageSize, classCount, valueRange)
        decodeLatents = decode
    }

    /// Whether the model takes class labels: `classCount > 0`.
    public var isConditional: Bool { classCount > 0 }

    /// Opens a `gan` or `vae` checkpoint by its stored kind.
    public static func open(checkpoint path: String) throws -> ImageSampler {
        let kind = try Checkpoint.load(path).kind
        switch kind {
        case "gan": return try GANSampler(checkpoint: path)
        case "vae": return try VAESampler(checkpoint: path)
        default: throw SamplingError("\(path) is a \(kind) checkpoint, not an image model (gan or vae)")
        }
    }

    /// The class id of `name`: a class name (exact, then ignoring case) or a number; errors list the known classes.
    public func classIndex(_ name: String) throws -> Int {
        guard isConditional else { throw SamplingError("this checkpoint is unconditional: it has no classes") }
        if let i = classNames.firstIndex(of: name) { return i }
        if let i = classNames.firstIndex(where: { $0.lowercased() == name.lowercased() }) { return i }
        if let i = Int(name), i >= 0, i < classCount { return i }
        throw SamplingError("unknown class \"\(name)\"; the classes are: \(classNames.joined(separator: ", "))")
    }

    /// Labels for `count` images: all `classIndex`, or (conditional, no class) cycling through the
    /// classes in blocks so that a grid with `columns` columns shows one class per row; zeros when
    /// unconditional.
    public func labels(count: Int, classIndex: Int?, columns: Int = 8) -> [Int] {
        guard isConditional else { return [Int](repeating: 0, count: count) }
        if let classIndex { return [Int](repeating: classIndex, count: count) }
        return (0..<count).map { ($0 / max(columns, 1)) % classCount }
    }

    /// The class name beside each row of a `columns`-wide grid of `count` images sampled with
    /// `classIndex` (as `labels(count:classIndex:columns:)` lays them out); empty when unconditional.
    public func rowLabels(count: Int, classIndex: Int?, columns: Int = 8) -> [String] {
        guard isConditional, !classNames.isEmpty, count > 0, columns > 0 else { return [] }
        let perRow = min(columns, count)
        let ids = labels(count: count, classIndex: classIndex, columns: columns)
        return stride(from: 0, to: count, by: perRow).map { classNames[ids[$0] % classNames.count] }
    }

    /// Images for latent vectors (B, latentSize) and their labels (ignored when unconditional).
    public func decode(_ z: Tensor, labels: [Int]) -> Tensor {
        decodeLatents(z, isConditional ? labels : nil)
    }

    /// `count` images (count, C, S, S) from z ~ N(0, I) drawn with `seed`.
    public func sample(count: Int, seed: UInt64, classIndex: Int? = nil, columns: Int = 8) throws -> Tensor {
        guard count > 0 else { throw SamplingError("count must be positive, got \(count)") }
        var rng = RandomGenerator(seed: seed)
        let z = Tensor.randn([count, latentSize], generator: &rng)
        return decode(z, labels: labels(count: count, classIndex: classIndex, columns: columns))
    }

    /// A latent interpolation: `steps` images from z_A (seed `a`) to z_B (seed `b`) along the great
    /// circle (slerp keeps the norm typical of N(0, I) draws, where a straight line would pass
    /// through low-norm z that the model rarely saw), all with the same label.
    public func interpolate(seedA a: UInt64, seedB b: UInt64, steps: Int, classIndex: Int? = nil) throws -> Tensor {
        guard steps >= 2 else { throw SamplingError(field: "steps", "must be at least 2, got \(steps)") }
        let l = latentSize
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
        return decode(Tensor(shape: [steps, l], data: values), labels: [Int](repeating: classIndex ?? 0, count: steps))
    }

    /// Dataset generation: each z row comes from the item's own generator, so rows do not interact.
    public func images(seeds: [UInt64], labels: [Int]) -> Tensor {
        let l = latentSize
        let z = Tensor(shape: [seeds.count, l]) { out in
            for (row, seed) in seeds.enumerated() {
                var g = RandomGenerator(seed: seed)
                g.fillNormal(UnsafeMutableBufferPointer(rebasing: out[(row * l)..<((row + 1) * l)]))
            }
        }
        return decode(z, labels: labels)
    }

    /// Writes `images` (values in this model's `valueRange`) as one grid PNG with `columns` columns,
    /// `rowLabels` (class names) in a left margin when given, creating the folder.
    public func writeGrid(_ images: Tensor, columns: Int = 8, rowLabels: [String] = [], to path: String) throws {
        try Self.writeGrid(images, range: valueRange, columns: columns, rowLabels: rowLabels, to: path)
    }

    /// Writes each image as its own PNG `directory/NNNN.png`; returns the paths.
    @discardableResult
    public func writeImages(_ images: Tensor, to directory: String) throws -> [String] {
        try Self.writeImages(images, range: valueRange, to: directory)
    }

    /// Writes `images` with values in `range` as one grid PNG (see the instance method).
    public static func writeGrid(_ images: Tensor, range: ImageValueRange, columns: Int = 8, rowLabels: [String] = [],
                                 to path: String) throws {
        try createParent(of: path)
        try LabelledGrid.write(images: images, rowLabels: rowLabels, columns: columns, range: range, to: path)
    }

    /// Writes each image (values in `range`) as `directory/prefixNNNN.png`; returns the paths.
    @discardableResult
    public static func writeImages(_ images: Tensor, range: ImageValueRange, to directory: String, prefix: String = "") throws -> [String] {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return try (0..<images.shape[0]).map { i in
            let path = directory + "/" + prefix + String(format: "%04d.png", i)
            try ImageCodec.writePNG(images[i], range: range, to: path)
            return path
        }
    }

    static func createParent(of path: String) throws {
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }
}

/// A trained DCGAN generator loaded from a `gan` checkpoint (the discriminator and optimizers in the
/// file are ignored). Images come out in [-1, 1].
public final class GANSampler: ImageSampler {
    /// The DCGAN whose generator holds the checkpoint's weights (the EMA average when the recipe kept one); its
    /// discriminator is unused.
    public let gan: DCGAN
    /// The configuration the checkpoint was trained with.
    public var config: DCGANConfig { gan.config }

    /// Loads a `gan` checkpoint's generator (the averaged one when `emaDecay > 0` and the file has it); throws
    /// on an invalid configuration or class list.
    public init(checkpoint path: String) throws {
        let saved = try Checkpoint.load(path, expectedKind: "gan")
        let config = try saved.config(as: DCGANConfig.self)
        if let problem = config.problem { throw CheckpointError(path: path, message: "invalid configuration: \(problem)") }
        let gan = DCGAN(config)
        // A recipe with an EMA samples from the averaged generator (its BatchNorm statistics were
        // recomputed before the checkpoint was written), loaded into the generator slot.
        let hasAverage = config.emaDecay > 0 && saved.tensors.keys.contains { $0.hasPrefix("generator_ema.average.") }
        try saved.restore(modules: [(hasAverage ? "generator_ema.average" : "generator", gan.generator)])
        self.gan = gan
        let count = config.isConditional ? config.classCount : 0
        try super.init(modelKind: "gan", classNames: try saved.stringArray("forge.classes"), state: saved.state,
                       latentSize: config.nz, channels: config.channels, imageSize: config.imageSize, classCount: count,
                       valueRange: .minusOneToOne, checkpoint: path,
                       decode: { z, labels in gan.generate(z, labels: labels ?? [Int](repeating: 0, count: z.shape[0])) })
    }
}

/// A trained VAE loaded from a `vae` checkpoint (the optimizer state in the file is ignored).
/// Images are the decoder's mean pixels in [0, 1].
public final class VAESampler: ImageSampler {
    /// The VAE with the checkpoint's weights, in evaluation mode.
    public let vae: VAE
    /// The configuration the checkpoint was trained with.
    public var config: VAEConfig { vae.config }

    /// Loads a `vae` checkpoint; throws on an invalid configuration or class list.
    public init(checkpoint path: String) throws {
        let saved = try Checkpoint.load(path, expectedKind: "vae")
        let config = try saved.config(as: VAEConfig.self)
        if let problem = config.problem { throw CheckpointError(path: path, message: "invalid configuration: \(problem)") }
        let vae = VAE(config)
        try saved.restore(modules: [("vae", vae)])
        vae.eval()
        self.vae = vae
        try super.init(modelKind: "vae", classNames: try saved.stringArray("forge.classes"), state: saved.state,
                       latentSize: config.latent, channels: config.channels, imageSize: config.imageSize,
                       classCount: config.isConditional ? config.classCount : 0, valueRange: .zeroToOne, checkpoint: path,
                       decode: { z, labels in vae.generate(z, labels: labels) })
    }
}
