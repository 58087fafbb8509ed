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
    /// Discriminator width: channels of D's first convolution, doubled per stride-2 stage (ndf·4 or ndf·8 at
    /// 4×4).
    public var ndf: Int = 64
    /// Number of classes; 0 = unconditional.
    public var classCount: Int = 0
    /// Size of the generator's label embedding (conditional only).
    public var embedDim: Int = 50
    /// Adam learning rate of G (and of D unless `learningRateD` is set).
    public var learningRate: Float = 2e-4
    /// Adam β1 (DCGAN's 0.5).
    public var beta1: Float = 0.5
    /// Adam β2.
    public var beta2: Float = 0.999
    /// Images per training batch.
    public var batchSize: Int = 64
    /// Seed of the initial weights, the data order and the training noise.
    public var seed: UInt64 = 1

    // The stable conditional recipe's switches (issue 15). Their defaults are pytorch/examples' DCGAN,
    // and a configuration saved before they existed decodes with these defaults.
    /// How the class reaches the generator: an embedding concatenated to z, or per-class BatchNorm γ, β.
    public var generatorConditioning: GeneratorConditioning = .concatenatedEmbedding
    /// Spectral normalisation on every discriminator convolution and the projection embedding
    /// (the discriminator then has no BatchNorm, as in SNGAN).
    public var spectralNorm: Bool = false
    /// The adversarial loss of both steps.
    public var loss: GANLoss = .nonSaturating
    /// The discriminator's learning rate (nil = `learningRate`): TTUR when they differ.
    public var learningRateD: Float? = nil
    /// Decay of the exponential moving average of G's weights used for sampling; 0 = no average.
    public var emaDecay: Float = 0
    /// DiffAugment (translation + cutout, Zhao et al. 2020) on every batch D sees, real and fake, in both steps.
    public var diffAugment: Bool = false
    /// A minibatch-standard-deviation channel (groups of 4) before D's last convolution (Karras et al. 2018).
    public var minibatchStd: Bool = false

    /// The pytorch/examples DCGAN: 32×32 RGB, nz 100, widths 64, unconditional, Adam 2e-4 (0.5, 0.999), batch
    /// 64, BCE, no recipe switches.
    public init() {}

    private enum CodingKeys: String, CodingKey {
        case imageSize, channels, nz, ngf, ndf, classCount, embedDim, learningRate, beta1, beta2, batchSize, seed
        case generatorConditioning, spectralNorm, loss, learningRateD, emaDecay, diffAugment, minibatchStd
    }

    /// Missing keys take their defaults (the recipe's switches included), so configurations saved before a
    /// field existed still load.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = DCGANConfig.init()
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        channels = try c.decodeIfPresent(Int.self, forKey: .channels) ?? d.channels
        nz = try c.decodeIfPresent(Int.self, forKey: .nz) ?? d.nz
        ngf = try c.decodeIfPresent(Int.self, forKey: .ngf) ?? d.ngf
        ndf = try c.decodeIfPresent(Int.self, forKey: .ndf) ?? d.ndf
        classCount = try c.decodeIfPresent(Int.self, forKey: .classCount) ?? d.classCount
        embedDim = try c.decodeIfPresent(Int.self, forKey: .embedDim) ?? d.embedDim
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
        beta1 = try c.decodeIfPresent(Float.self, forKey: .beta1) ?? d.beta1
        beta2 = try c.decodeIfPresent(Float.self, forKey: .beta2) ?? d.beta2
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        generatorConditioning = try c.decodeIfPresent(GeneratorConditioning.self, forKey: .generatorConditioning) ?? d.generatorConditioning
        spectralNorm = try c.decodeIfPresent(Bool.self, forKey: .spectralNorm) ?? d.spectralNorm
        loss = try c.decodeIfPresent(GANLoss.self, forKey: .loss) ?? d.loss
        learningRateD = try c.decodeIfPresent(Float.self, forKey: .learningRateD) ?? d.learningRateD
        emaDecay = try c.decodeIfPresent(Float.self, forKey: .emaDecay) ?? d.emaDecay
        diffAugment = try c.decodeIfPresent(Bool.self, forKey: .diffAugment) ?? d.diffAugment
        minibatchStd = try c.decodeIfPresent(Bool.self, forKey: .minibatchStd) ?? d.minibatchStd
    }

    /// Writes the recipe's fields only where they differ from the DCGAN defaults, so a DCGAN's
    /// configuration JSON is byte for byte what it was before they existed (and older checkpoints resume).
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(channels, forKey: .channels)
        try c.encode(nz, forKey: .nz)
        try c.encode(ngf, forKey: .ngf)
        try c.encode(ndf, forKey: .ndf)
        try c.encode(classCount, forKey: .classCount)
        try c.encode(embedDim, forKey: .embedDim)
        try c.encode(learningRate, forKey: .learningRate)
        try c.encode(beta1, forKey: .beta1)
        try c.encode(beta2, forKey: .beta2)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(seed, forKey: .seed)
        if generatorConditioning != .concatenatedEmbedding { try c.encode(generatorConditioning, forKey: .generatorConditioning) }
        if spectralNorm { try c.encode(spectralNorm, forKey: .spectralNorm) }
        if loss != .nonSaturating { try c.encode(loss, forKey: .loss) }
        try c.encodeIfPresent(learningRateD, forKey: .learningRateD)
        if emaDecay != 0 { try c.encode(emaDecay, forKey: .emaDecay) }
        if diffAugment { try c.encode(diffAugment, forKey: .diffAugment) }
        if minibatchStd { try c.encode(minibatchStd, forKey: .minibatchStd) }
    }

    /// The discriminator's learning rate.
    public var discriminatorLearningRate: Float { learningRateD ?? learningRate }
    /// True when the generator's class enters through conditional BatchNorm.
    public var usesConditionalBatchNorm: Bool { isConditional && generatorConditioning == .conditionalBatchNorm }

    /// Whether the model takes class labels: `classCount > 0`.
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
        if let learningRateD, !(learningRateD > 0) { return "the discriminator's learning rate must be positive" }
        if !(emaDecay >= 0 && emaDecay < 1) { return "the EMA decay must be in [0, 1), got \(emaDecay)" }
        return nil
    }
}

/// A named set of the training ingredients in `DCGANConfig`.
public enum GANRecipe: String, Codable, Sendable, CaseIterable {
    /// pytorch/examples' DCGAN: label embedding concatenated to z, BatchNorm D, BCE, Adam 2e-4 with
    /// betas (0.5, 0.999), no EMA.
    case dcgan
    /// pytorch/examples' DCGAN with the one change that stops the conditional collapse (issue 15):
    /// z alone enters G's first layer and the class enters through per-class BatchNorm γ, β.
    case dcganConditionalBatchNorm = "dcgan-cbn"
    /// `dcgan-cbn` with spectral normalisation in D (every conv and the projection; no BatchNorm in D,
    /// biases instead) and an EMA of G's weights (0.999) for sampling; BCE and Adam 2e-4 (0.5, 0.999)
    /// stay. The default for class data: on Fashion-MNIST the one recipe whose CAS passed 0.9 of real
    /// (0.977 at step 7,433, samples/synthetic/README.md).
    case conditionalSpectralNorm = "cbn-sn"
    /// The stable conditional recipe (issue 15): conditional BatchNorm in G with the projection D,
    /// spectral normalisation in D, hinge loss, TTUR (G 1e-4 / D 4e-4, betas (0, 0.9)), and an EMA of
    /// G's weights (0.999) for sampling.
    case stable
}

extension DCGANConfig {
    /// Sets every recipe field (conditioning, spectral norm, loss, learning rates, betas, EMA) to `recipe`'s.
    public mutating func apply(_ recipe: GANRecipe) {
        switch recipe {
        case .dcgan:
            (generatorConditioning, spectralNorm, loss) = (.concatenatedEmbedding, false, .nonSaturating)
            (learningRate, learningRateD, beta1, beta2, emaDecay) = (2e-4, nil, 0.5, 0.999, 0)
        case .dcganConditionalBatchNorm:
            apply(.dcgan)
            generatorConditioning = .conditionalBatchNorm
        case .conditionalSpectralNorm:
            apply(.dcganConditionalBatchNorm)
            (spectralNorm, emaDecay) = (true, 0.999)
        case .stable:
            (generatorConditioning, spectralNorm, loss) = (.conditionalBatchNorm, true, .hinge)
            (learningRate, learningRateD, beta1, beta2, emaDecay) = (1e-4, 4e-4, 0, 0.9, 0.999)
        }
    }
}

/// How a conditional generator receives its class.
public enum GeneratorConditioning: String, Codable, Sendable, CaseIterable {
    /// A learned embedding concatenated to z before the first layer (today's DCGAN conditioning).
    case concatenatedEmbedding = "concat"
    /// z alone enters the first layer; every BatchNorm has a per-class scale and shift (SNGAN, BigGAN).
    case conditionalBatchNorm = "cbn"
}

/// The adversarial loss.
public enum GANLoss: String, Codable, Sendable, CaseIterable {
    /// BCE with logits: D maximises log D(x) + log(1 − D(G(z))), G maximises log D(G(z)) (DCGAN).
    case nonSaturating = "bce"
    /// D minimises E[max(0, 1 − D(x))] + E[max(0, 1 + D(G(z)))], G minimises −E[D(G(z))] (SNGAN, BigGAN).
    case hinge
}



// MARK: - generator

/// z (B, nz) [+ labels] → images (B, channels, size, size) in [-1, 1].
public final class DCGANGenerator: Module {
    /// True in training mode, where BatchNorm (plain or per-class) uses and updates batch statistics;
    /// `train(_:)` and `eval()` set it.
    public var isTraining = true
    /// The configuration the generator was built from.
    public let config: DCGANConfig
    /// ConvTranspose/BatchNorm/ReLU stages ending in Tanh, named like the PyTorch example.
    public let main: Sequential
    /// Class embedding concatenated to z (conditional with `.concatenatedEmbedding` only).
    public let labelEmbedding: Embedding?
    /// With `.conditionalBatchNorm`: one per-class BatchNorm after each transposed convolution but the
    /// last, in order (then `main` holds no BatchNorm of its own).
    public let conditionalNorms: [ConditionalBatchNorm2d]

    /// Builds the generator with DCGAN's initialisation (weights N(0, 0.02), BatchNorm scale N(1, 0.02)) drawn
    /// from `g`.
    public init(_ config: DCGANConfig, generator g: inout RandomGenerator) {
        self.config = config
        let cbn = config.usesConditionalBatchNorm
        let input = config.nz + (config.isConditional && !cbn ? config.embedDim : 0)
        var norms: [ConditionalBatchNorm2d] = []
        // A normalisation after a transposed convolution: in `main` (DCGAN), or per class beside it.
        func norm(_ features: Int) -> [any Layer] {
            if cbn { norms.append(ConditionalBatchNorm2d(features, classes: config.classCount)); return [] }
            return [dcganBatchNorm(features, &g)]
        }
        var mult = 1 << (config.stages - 1)  // 32: ngf·4, 64: ngf·8 channels at 4×4
        var layers: [any Layer] = [ConvTranspose2d(weight: dcganNormal([input, config.ngf * mult, 4, 4], &g), bias: nil, stride: (1, 1), padding: (0, 0))]
        layers += norm(config.ngf * mult) + [ReLU()]
        for _ in 0..<(config.stages - 1) {  // 4×4 → 8×8 → … → size/2
            layers.append(ConvTranspose2d(weight: dcganNormal([config.ngf * mult, config.ngf * mult / 2, 4, 4], &g), bias: nil,
                                          stride: (2, 2), padding: (1, 1)))
            layers += norm(config.ngf * mult / 2) + [ReLU()]
            mult /= 2
        }
        layers += [ConvTranspose2d(weight: dcganNormal([config.ngf, config.channels, 4, 4], &g), bias: nil, stride: (2, 2), padding: (1, 1)),
                   Tanh()]
        main = Sequential(layers)
        conditionalNorms = norms
        labelEmbedding = config.isConditional && !cbn ? Embedding(config.classCount, config.embedDim, generator: &g) : nil
    }

    /// The checkpoint names: `main`, then `label_embedding` or `conditional_norms.0` … when conditional.
    public var namedChildren: [(String, any Module)] {
        [("main", main)] + (labelEmbedding.map { [("label_embedding", $0)] } ?? [])
            + conditionalNorms.enumerated().map { ("conditional_norms.\($0.offset)", $0.element as any Module) }
    }

    /// z: (B, nz); labels: B class ids when conditional (ignored otherwise).
    public func forward(_ z: Tensor, labels: [Int]) -> Tensor {
        let b = z.shape[0]
        var input = z
        if config.isConditional {
            precondition(labels.count == b, "DCGANGenerator: \(labels.count) labels for \(b) latent vectors")
        }
        if let labelEmbedding {
            let e = labelEmbedding(labels.map { Int32($0) }, shape: [b])  // (B, embed)
            input = Tensor.concat([z, e], axis: 1)                          // (B, nz + embed)
        }
        let x = input.reshaped([b, input.shape[1], 1, 1])
        guard !conditionalNorms.isEmpty else { return main(x) }
        // ConvT → per-class BN → ReLU for every stage but the last.
        var h = x, k = 0
        for layer in main.layers {
            h = layer.forward(h)
            if layer is ConvTranspose2d, k < conditionalNorms.count {
                h = conditionalNorms[k].forward(h, labels: labels)
                k += 1
            }
        }
        return h
    }
}

// MARK: - discriminator

/// images (B, channels, size, size) [+ labels] → one logit per image (B).
public final class DCGANDiscriminator: Module {
    /// True in training mode: BatchNorm uses batch statistics and spectral norm runs a power iteration per
    /// forward pass.
    public var isTraining = true
    /// The configuration the discriminator was built from.
    public let config: DCGANConfig
    /// Strided conv stages; the last layer is the 4×4 conv to one logit (no Sigmoid: the loss takes logits).
    public let main: Sequential
    /// Projection embedding E (classes, features) (conditional without spectral normalisation).
    public let projection: Embedding?
    /// The spectrally normalised projection embedding (conditional with `spectralNorm`).
    public let spectralProjection: SpectralNormEmbedding?
    /// The minibatch-std channel appended to φ(x) before ψ (config.minibatchStd; no parameters).
    public let minibatchStd: MinibatchStandardDeviation?

    /// Builds the discriminator with DCGAN's initialisation (weights N(0, 0.02), BatchNorm scale N(1, 0.02);
    /// the projection embedding N(0, 0.02)) drawn from `g`.
    public init(_ config: DCGANConfig, generator g: inout RandomGenerator) {
        self.config = config
        let sn = config.spectralNorm
        // A convolution, spectrally normalised when the recipe asks. Then no BatchNorm follows it, and
        // it has a bias (zero at first) as in SNGAN: without BatchNorm's shift, a bias-free D would be
        // positively homogeneous, D(0) = 0 whatever its weights, and G settles on the all-grey image.
        func conv(_ shape: [Int], stride: Int, padding: Int) -> any Layer {
            let w = dcganNormal(shape, &g)
            if sn {
                return SpectralNormConv2d(weight: w, bias: Tensor.zeros([shape[0]]), stride: (stride, stride), padding: (padding, padding), generator: &g)
            }
            return Conv2d(weight: w, bias: nil, stride: (stride, stride), padding: (padding, padding))
        }
        var layers: [any Layer] = [conv([config.ndf, config.channels, 4, 4], stride: 2, padding: 1), LeakyReLU(0.2)]
        var mult = 1
        for _ in 0..<(config.stages - 1) {  // size/2 → … → 4×4
            layers.append(conv([config.ndf * mult * 2, config.ndf * mult, 4, 4], stride: 2, padding: 1))
            if !sn { layers.append(dcganBatchNorm(config.ndf * mult * 2, &g)) }
            layers.append(LeakyReLU(0.2))
            mult *= 2
        }
        layers.append(conv([1, config.ndf * mult + (config.minibatchStd ? 1 : 0), 4, 4], stride: 1, padding: 0))
        main = Sequential(layers)
        minibatchStd = config.minibatchStd ? MinibatchStandardDeviation(groupSize: 4) : nil
        if config.isConditional {
            // Same N(0, 0.02) scale as the final conv, so neither term dominates at the start.
            let e = Embedding(config.classCount, config.ndf * mult, generator: &g)
            e.weight.mutablePointer.update(from: dcganNormal(e.weight.shape, &g).pointer, count: e.weight.count)
            if sn {
                spectralProjection = SpectralNormEmbedding(weight: e.weight.detachedCopy(), generator: &g)
                projection = nil
            } else {
                projection = e
                spectralProjection = nil
            }
        } else {
            projection = nil
            spectralProjection = nil
        }
    }

    /// The checkpoint names: `main`, and `projection` (plain or spectrally normalised) when conditional.
    public var namedChildren: [(String, any Module)] {
        [("main", main)] + (projection.map { [("projection", $0)] } ?? []) + (spectralProjection.map { [("projection", $0)] } ?? [])
    }

    /// x: (B, C, S, S) → logits (B).
    public func forward(_ x: Tensor, labels: [Int]) -> Tensor {
        let b = x.shape[0]
        let features = main.layers.dropLast().reduce(x) { $1.forward($0) }  // φ(x): (B, F, 4, 4)
        let head = minibatchStd?.forward(features) ?? features              // (B, F [+ 1], 4, 4)
        var logits = main.layers.last!.forward(head).reshaped([b])           // ψ(φ(x)): (B)
        if config.isConditional {
            precondition(labels.count == b, "DCGANDiscriminator: \(labels.count) labels for \(b) images")
            let pooled = features.sum(axes: [2, 3])                           // (B, F)
            let ids = labels.map { Int32($0) }
            let e = projection?(ids, shape: [b]) ?? spectralProjection!(ids, shape: [b])  // (B, F)
            logits = logits + (pooled * e).sum(axis: 1)                       // + ⟨E[y], Σφ⟩
        }
        return logits
    }
}

// MARK: - the GAN

/// Generator and discriminator (their optimizers and the training step live in Training:
/// `GANOptimizers`, `dcganTrainingStep`, `recipeGANStep`).
public final class DCGAN {
    /// The configuration both networks were built from.
    public let config: DCGANConfig
    /// z (B, nz) [+ labels] → images (B, channels, size, size) in [-1, 1].
    public let generator: DCGANGenerator
    /// Images [+ labels] → one real/fake logit per image.
    public let discriminator: DCGANDiscriminator

    /// Builds both networks with weights drawn from `RandomGenerator(seed: config.seed)`.
    public init(_ config: DCGANConfig) {
        precondition(config.problem == nil, "DCGAN: \(config.problem ?? "")")
        self.config = config
        var g = RandomGenerator(seed: config.seed)
        generator = DCGANGenerator(config, generator: &g)
        discriminator = DCGANDiscriminator(config, generator: &g)
    }

    /// Latent vectors (count, nz) ~ N(0, 1).
    public func noise(_ count: Int, generator g: inout RandomGenerator) -> Tensor {
        Tensor.randn([count, config.nz], generator: &g)
    }

    /// Images for the given latent vectors and labels, with BatchNorm in evaluation mode and no graph
    /// (each image depends only on its own z and label, not on the rest of the batch).
    public func generate(_ z: Tensor, labels: [Int]) -> Tensor {
        let wasTraining = generator.isTraining
        generator.eval()
        defer { generator.train(wasTraining) }
        return withNoGrad { generator.forward(z, labels: labels) }
    }

    /// Floating-point operations of one training step per image (multiply-adds × 2, convolutions and
    /// the projection only), counted from the layer shapes (`ganTrainingFLOPs` says how the passes add
    /// up). One count for the workload, so Forge's and PyTorch's rates in `make bench` compare the same work.
    public var trainingFLOPsPerImage: Double {
        ganTrainingFLOPs(discriminatorForward: discriminatorForwardFLOPs, generatorForward: generatorForwardFLOPs)
    }

    /// Forward FLOPs of G for one image: a transposed conv scatters each input pixel through Cout·4·4 taps.
    public var generatorForwardFLOPs: Double {
        let c = config
        let input = c.nz + (c.isConditional && !c.usesConditionalBatchNorm ? c.embedDim : 0)
        var mult = 1 << (c.stages - 1)
        var flops = 2.0 * Double(input * c.ngf * mult * 16)                  // 1×1 → 4×4
        var side = 4
        for _ in 0..<(c.stages - 1) {
            let (cin, cout) = (c.ngf * mult, c.ngf * mult / 2)
            flops += 2 * Double(cin * cout * 16 * side * side)
            mult /= 2
            side *= 2
        }
        return flops + 2.0 * Double(c.ngf * c.channels * 16 * side * side)  // size/2 → size
    }

    /// Forward FLOPs of D for one image: a conv computes Cin·4·4 taps per output pixel.
    public var discriminatorForwardFLOPs: Double {
        let c = config
        var side = c.imageSize / 2
        var flops = 2.0 * Double(c.ndf * c.channels * 16 * side * side)
        var mult = 1
        for _ in 0..<(c.stages - 1) {
            side /= 2
            let (cin, cout) = (c.ndf * mult, c.ndf * mult * 2)
            flops += 2 * Double(cin * cout * 16 * side * side)
            mult *= 2
        }
        let features = c.ndf * mult
        let last = 2 * Double((features + (c.minibatchStd ? 1 : 0)) * 16)   // the 4×4 conv to one logit
        let projection = c.isConditional ? 2 * Double(features) : 0         // ⟨E[y], φ(x)⟩
        return flops + last + projection
    }
}

