import Foundation
import TensorCore

// DCGAN (Radford, Metz & Chintala 2015), laid out like pytorch/examples `dcgan/main.py`:
// a generator of transposed convolutions + BatchNorm + ReLU ending in Tanh, a discriminator of
// strided convolutions + LeakyReLU(0.2) with BatchNorm on every layer but the first, weights
// N(0, 0.02) and BatchNorm weights N(1, 0.02). Parameter names follow the PyTorch example
// (`main.0.weight`, `main.1.running_mean`, …) so its state_dicts map one to one.
//
// Class-conditional mode:
// * generator: a label embedding concatenated to z, (B, nz + embed, 1, 1) into the first layer;
// * discriminator: a *projection* discriminator (Miyato & Koyama 2018):
//       logit(x, y) = ψ(φ(x)) + ⟨E[y], Σ_hw φ(x)⟩
//   where φ(x) is the last feature map and ψ the final 4×4 conv. Chosen over label channels because
//   it conditions where the decision is made (not only through the first layer), costs one
//   (classes × features) embedding instead of `classes` extra input channels at full resolution,
//   and is the standard choice for conditional GANs with BCE/hinge losses.

/// Hyper-parameters of a DCGAN and its training, stored in checkpoints as JSON.
public struct DCGANConfig: Codable, Equatable, Sendable {
    /// Image side: 32 or 64.
    public var imageSize: Int = 32
    /// Image channels: 1 or 3.
    public var channels: Int = 3
    /// Latent size.
    public var nz: Int = 100
    /// Generator / discriminator width.
    public var ngf: Int = 64
    public var ndf: Int = 64
    /// Number of classes; 0 = unconditional.
    public var classCount: Int = 0
    /// Size of the generator's label embedding (conditional only).
    public var embedDim: Int = 50
    public var learningRate: Float = 2e-4
    public var beta1: Float = 0.5
    public var beta2: Float = 0.999
    public var batchSize: Int = 64
    /// Seed of the initial weights, the data order and the training noise.
    public var seed: UInt64 = 1

    public init() {}

    public var isConditional: Bool { classCount > 0 }

    /// Stride-2 up/down-samplings after the 4×4 stage: 3 for 32, 4 for 64.
    public var stages: Int { imageSize == 64 ? 4 : 3 }

    /// A description of what is wrong, or nil.
    public var problem: String? {
        if imageSize != 32 && imageSize != 64 { return "image size must be 32 or 64, got \(imageSize)" }
        if channels != 1 && channels != 3 { return "channels must be 1 or 3, got \(channels)" }
        if nz < 1 || ngf < 1 || ndf < 1 { return "nz, ngf and ndf must be positive" }
        if classCount < 0 || classCount == 1 { return "a conditional model needs at least 2 classes, got \(classCount)" }
        if batchSize < 2 { return "batch size must be at least 2 (BatchNorm needs batch statistics)" }
        if !(learningRate > 0) { return "learning rate must be positive" }
        return nil
    }
}



// MARK: - generator

/// z (B, nz) [+ labels] → images (B, channels, size, size) in [-1, 1].
public final class DCGANGenerator: Module {
    public var isTraining = true
    public let config: DCGANConfig
    /// ConvTranspose/BatchNorm/ReLU stages ending in Tanh, named like the PyTorch example.
    public let main: Sequential
    /// Class embedding concatenated to z (conditional only).
    public let labelEmbedding: Embedding?

    public init(_ config: DCGANConfig, generator g: inout RandomGenerator) {
        self.config = config
        let input = config.nz + (config.isConditional ? config.embedDim : 0)
        var mult = 1 << (config.stages - 1)  // 32: ngf·4, 64: ngf·8 channels at 4×4
        var layers: [any Layer] = [
            ConvTranspose2d(weight: dcganNormal([input, config.ngf * mult, 4, 4], &g), bias: nil, stride: (1, 1), padding: (0, 0)),
            dcganBatchNorm(config.ngf * mult, &g), ReLU(),
        ]
        for _ in 0..<(config.stages - 1) {  // 4×4 → 8×8 → … → size/2
            layers += [ConvTranspose2d(weight: dcganNormal([config.ngf * mult, config.ngf * mult / 2, 4, 4], &g), bias: nil,
                                       stride: (2, 2), padding: (1, 1)),
                       dcganBatchNorm(config.ngf * mult / 2, &g), ReLU()]
            mult /= 2
        }
        layers += [ConvTranspose2d(weight: dcganNormal([config.ngf, config.channels, 4, 4], &g), bias: nil, stride: (2, 2), padding: (1, 1)),
                   Tanh()]
        main = Sequential(layers)
        labelEmbedding = config.isConditional ? Embedding(config.classCount, config.embedDim, generator: &g) : nil
    }

    public var namedChildren: [(String, any Module)] {
        [("main", main)] + (labelEmbedding.map { [("label_embedding", $0)] } ?? [])
    }

    /// z: (B, nz); labels: B class ids when conditional (ignored otherwise).
    public func forward(_ z: Tensor, labels: [Int]) -> Tensor {
        let b = z.shape[0]
        var input = z
        if let labelEmbedding {
            precondition(labels.count == b, "DCGANGenerator: \(labels.count) labels for \(b) latent vectors")
            let e = labelEmbedding(labels.map { Int32($0) }, shape: [b])  // (B, embed)
            input = Tensor.concat([z, e], axis: 1)                          // (B, nz + embed)
        }
        return main(input.reshaped([b, input.shape[1], 1, 1]))
    }
}

// MARK: - discriminator

/// images (B, channels, size, size) [+ labels] → one logit per image (B).
public final class DCGANDiscriminator: Module {
    public var isTraining = true
    public let config: DCGANConfig
    /// Strided conv stages; the last layer is the 4×4 conv to one logit (no Sigmoid: the loss takes logits).
    public let main: Sequential
    /// Projection embedding E (classes, features) (conditional only).
    public let projection: Embedding?

    public init(_ config: DCGANConfig, generator g: inout RandomGenerator) {
        self.config = config
        var layers: [any Layer] = [
            Conv2d(weight: dcganNormal([config.ndf, config.channels, 4, 4], &g), bias: nil, stride: (2, 2), padding: (1, 1)),
            LeakyReLU(0.2),
        ]
        var mult = 1
        for _ in 0..<(config.stages - 1) {  // size/2 → … → 4×4
            layers += [Conv2d(weight: dcganNormal([config.ndf * mult * 2, config.ndf * mult, 4, 4], &g), bias: nil,
                              stride: (2, 2), padding: (1, 1)),
                       dcganBatchNorm(config.ndf * mult * 2, &g), LeakyReLU(0.2)]
            mult *= 2
        }
        layers.append(Conv2d(weight: dcganNormal([1, config.ndf * mult, 4, 4], &g), bias: nil))
        main = Sequential(layers)
        if config.isConditional {
            // Same N(0, 0.02) scale as the final conv, so neither term dominates at the start.
            let e = Embedding(config.classCount, config.ndf * mult, generator: &g)
            e.weight.mutablePointer.update(from: dcganNormal(e.weight.shape, &g).pointer, count: e.weight.count)
            projection = e
        } else {
            projection = nil
        }
    }

    public var namedChildren: [(String, any Module)] {
        [("main", main)] + (projection.map { [("projection", $0)] } ?? [])
    }

    /// x: (B, C, S, S) → logits (B).
    public func forward(_ x: Tensor, labels: [Int]) -> Tensor {
        let b = x.shape[0]
        let features = main.layers.dropLast().reduce(x) { $1.forward($0) }  // φ(x): (B, F, 4, 4)
        var logits = main.layers.last!.forward(features).reshaped([b])       // ψ(φ(x)): (B)
        if let projection {
            precondition(labels.count == b, "DCGANDiscriminator: \(labels.count) labels for \(b) images")
            let pooled = features.sum(axes: [2, 3])                           // (B, F)
            let e = projection(labels.map { Int32($0) }, shape: [b])          // (B, F)
            logits = logits + (pooled * e).sum(axis: 1)                       // + ⟨E[y], Σφ⟩
        }
        return logits
    }
}

// MARK: - the GAN and its training step

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
    public var dGZ2: Double
}

/// Generator, discriminator and their Adam optimizers.
public final class DCGAN {
    public let config: DCGANConfig
    public let generator: DCGANGenerator
    public let discriminator: DCGANDiscriminator
    public let optimizerG: Adam
    public let optimizerD: Adam

    /// Builds both networks with weights drawn from `RandomGenerator(seed: config.seed)`.
    public init(_ config: DCGANConfig) {
        precondition(config.problem == nil, "DCGAN: \(config.problem ?? "")")
        self.config = config
        var g = RandomGenerator(seed: config.seed)
        generator = DCGANGenerator(config, generator: &g)
        discriminator = DCGANDiscriminator(config, generator: &g)
        optimizerG = Adam(generator.parameters, learningRate: config.learningRate, betas: (config.beta1, config.beta2))
        optimizerD = Adam(discriminator.parameters, learningRate: config.learningRate, betas: (config.beta1, config.beta2))
    }

    /// Latent vectors (count, nz) ~ N(0, 1).
    public func noise(_ count: Int, generator g: inout RandomGenerator) -> Tensor {
        Tensor.randn([count, config.nz], generator: &g)
    }

    /// One DCGAN step on a real batch (B, C, S, S) in [-1, 1] with its labels, drawing z from `rng`:
    /// (1) update D to maximise log D(x) + log(1 − D(G(z))); (2) update G to maximise log D(G(z)).
    public func trainStep(real: Tensor, labels: [Int], rng: inout RandomGenerator) -> GANStepResult {
        let b = real.shape[0]
        generator.train()
        discriminator.train()
        return nonSaturatingGANStep(
            real: real, discriminator: discriminator, optimizerD: optimizerD, optimizerG: optimizerG,
            discriminate: { discriminator.forward($0, labels: labels) },
            makeFake: { generator.forward(noise(b, generator: &rng), labels: labels) })  // the real batch's class mix
    }

    /// Images for the given latent vectors and labels, with BatchNorm in evaluation mode and no graph
    /// (each image depends only on its own z and label, not on the rest of the batch).
    public func generate(_ z: Tensor, labels: [Int]) -> Tensor {
        let wasTraining = generator.isTraining
        generator.eval()
        defer { generator.train(wasTraining) }
        return withNoGrad { generator.forward(z, labels: labels) }
    }
}

