import Foundation
import TensorCore

// Variational autoencoder (Kingma & Welling 2013), laid out like pytorch/examples `vae/main.py`:
//
//   encode:  x ─fc1─ReLU─┬─fc21─▶ μ            (784 → 400 → 20)
//                        └─fc22─▶ log σ²
//   reparameterize: z = μ + ε·exp(½ log σ²),  ε ~ N(0, I)
//   decode:  z ─fc3─ReLU─fc4─▶ logits          (20 → 400 → 784)
//   loss = −log p(x|z) summed over pixels + KL(q(z|x) ‖ N(0, I)) analytically = the negative ELBO
//
// The MLP's parameters carry the PyTorch example's names (`fc1.weight`, `fc21.bias`, …) so its
// state_dict loads directly. Differences from the example, each for a reason:
// * the decoder returns logits and the Bernoulli term is `binary_cross_entropy_with_logits`, not
//   sigmoid + `binary_cross_entropy`: one fused kernel, and no log(0) clamp at −100 that could
//   under-count the loss of a saturated pixel (the values agree wherever the clamp is inactive);
// * `--arch conv`: strided 4×4 convolutions halving the image down to ≤ 7×7 (or 4×4), mirrored by
//   transposed convolutions, for larger RGB images;
// * Gaussian likelihoods for RGB data: fixed σ, or one learned log σ per channel (the "σ-VAE" of
//   Rybkin et al. 2021, which balances reconstruction against KL without a hand-tuned β);
// * class-conditional mode (CVAE, Sohn et al. 2015): a one-hot label is concatenated to the
//   encoder's features before (μ, log σ²) and to z before the decoder;
// * `conv1d`, the 1-D case for sound: short mono waveforms with the WaveGAN geometry (five strided
//   Conv1d k25 s4 layers down to L/1024, mirrored by transposed convolutions ending in Tanh) and the
//   learned-σ Gaussian likelihood (one σ, initially 0.1: a fixed σ would need hand-tuning of the
//   reconstruction/KL balance, which for ≈ 8000 samples per clip against a 64-d latent decides
//   between posterior collapse and no usable prior). No BatchNorm anywhere: a per-item ELBO should
//   not depend on the rest of the batch.
//
// Data convention: images are pixels in [0, 1] (a Bernoulli likelihood needs targets there;
// `unitRange(_:)` maps DataIO's [-1, 1] images); sound is samples in [-1, 1], the range of the
// Tanh mean. One loss convention for both: `loss` is the negative ELBO summed over the batch in
// nats (the example's `reduction="sum"`); the tasks report it per item (÷ B).

/// Encoder/decoder family.
public enum VAEArchitecture: String, Codable, Sendable, CaseIterable {
    /// pytorch/examples: fully connected 784 → hidden → latent and back.
    case mlp
    /// Strided convolutions down, transposed convolutions up.
    case conv
    /// Sound: strided 1-D convolutions over a waveform (B, 1, length), the WaveGAN geometry.
    case conv1d
}

/// p(x|z), the decoder's output distribution over pixels in [0, 1].
public enum VAELikelihood: String, Codable, Sendable, CaseIterable {
    /// Bernoulli with logits: −log p = BCE summed over pixels (pytorch/examples).
    case bernoulli
    /// Gaussian with mean = decoder output and the fixed standard deviation `VAEConfig.gaussianStd`.
    case gaussian
    /// Gaussian with a learned standard deviation per channel (`log_scale`, initial log σ = 0).
    case gaussianLearned = "gaussian-learned"
}

/// Hyper-parameters of a VAE and its training, stored in checkpoints as JSON.
public struct VAEConfig: Codable, Equatable, Sendable {
    /// Encoder/decoder family: `mlp` (pytorch/examples), `conv` (images) or `conv1d` (sound).
    public var arch: VAEArchitecture = .mlp
    /// Image side (square images).
    public var imageSize: Int = 28
    /// Image channels: 1 or 3.
    public var channels: Int = 1
    /// Latent size (pytorch/examples: 20).
    public var latent: Int = 20
    /// MLP: hidden width (400). Conv: channels of the first convolution (doubled per stage).
    public var hidden: Int = 400
    /// p(x|z): Bernoulli for [0, 1] pixels, or Gaussian with a fixed or learned σ.
    public var likelihood: VAELikelihood = .bernoulli
    /// σ of the `.gaussian` likelihood, in [0, 1] pixel units.
    public var gaussianStd: Float = 0.1
    /// Number of classes; 0 = unconditional.
    public var classCount: Int = 0
    /// Adam learning rate.
    public var learningRate: Float = 1e-3
    /// Items per training batch.
    public var batchSize: Int = 128
    /// Seed of the initial weights, the data order and the reparameterisation noise.
    public var seed: UInt64 = 1
    /// `conv1d`: clip length in samples, 4096, 8192 or 16384.
    public var length: Int = 4096
    /// `conv1d`: sample rate of the training clips (Hz), kept so samples play at the right speed.
    public var sampleRate: Int = 16000
    /// `conv1d`: kernel size of every (transposed) convolution (odd: padding (k − 3)/2 makes stride 4 exact).
    public var kernelSize: Int = 25

    /// The pytorch/examples MNIST model: MLP 784 → 400 → 20, Bernoulli, unconditional, Adam 1e-3, batch 128.
    public init() {}

    /// The sound defaults: `conv1d` on 4096-sample clips, width 16, latent 64, batch 16, learned σ.
    public static func audio() -> VAEConfig {
        var c = VAEConfig()
        (c.arch, c.channels, c.imageSize, c.hidden, c.latent, c.batchSize) = (.conv1d, 1, 0, 16, 64, 16)
        c.likelihood = .gaussianLearned
        return c
    }

    /// Whether the model takes class labels (CVAE): `classCount > 0`.
    public var isConditional: Bool { classCount > 0 }
    /// Whether the model is the 1-D (sound) case.
    public var isAudio: Bool { arch == .conv1d }
    /// Scalars per item (C·H·W, or the clip length).
    public var inputFeatures: Int { isAudio ? length : channels * imageSize * imageSize }
    /// The ×4 stages of the 1-D architecture.
    public static let audioStages = 5
    /// `conv1d`: length of the innermost feature map.
    public var innerLength: Int { length >> (2 * Self.audioStages) }
    /// `conv1d`: padding for exact ÷4 / ×4.
    public var padding: Int { (kernelSize - 3) / 2 }
    /// log σ of the learned Gaussian likelihood at initialisation: σ = 1 for pixels, 0.1 for sound.
    public var initialLogScale: Float { isAudio ? Float(Foundation.log(0.1)) : 0 }

    /// Stride-2 stages of the conv architecture: halve while the side stays even and above 7
    /// (28 → 14 → 7, 32 → 16 → 8 → 4, 64 → … → 4).
    public var convStages: Int {
        var side = imageSize, n = 0
        while side % 2 == 0 && side > 7 { side /= 2; n += 1 }
        return n
    }

    /// A description of what is wrong, or nil.
    public var problem: String? {
        if isAudio {
            if ![4096, 8192, 16384].contains(length) { return "clip length must be 4096, 8192 or 16384 samples, got \(length)" }
            if sampleRate < 1 { return "sample rate must be positive, got \(sampleRate)" }
            if kernelSize < 5 || kernelSize % 2 == 0 { return "kernel size must be odd and at least 5, got \(kernelSize)" }
            if channels != 1 { return "the sound VAE models mono clips (channels 1), got \(channels)" }
            if likelihood != .gaussianLearned { return "the sound VAE uses the learned-σ Gaussian likelihood, got \(likelihood.rawValue)" }
            if classCount != 0 { return "the sound VAE is unconditional" }
            if latent < 1 || hidden < 1 { return "latent size and width must be positive" }
            if batchSize < 1 { return "batch size must be positive" }
            if !(learningRate > 0) { return "learning rate must be positive" }
            return nil
        }
        if imageSize < 1 { return "image size must be positive, got \(imageSize)" }
        if channels != 1 && channels != 3 { return "channels must be 1 or 3, got \(channels)" }
        if latent < 1 || hidden < 1 { return "latent and hidden sizes must be positive" }
        if arch == .conv && convStages == 0 { return "the conv architecture needs an even image side above 7, got \(imageSize)" }
        if classCount < 0 || classCount == 1 { return "a conditional model needs at least 2 classes, got \(classCount)" }
        if !(gaussianStd > 0) { return "the Gaussian σ must be positive" }
        if batchSize < 1 { return "batch size must be positive" }
        if !(learningRate > 0) { return "learning rate must be positive" }
        return nil
    }
}

extension VAEConfig {
    private enum CodingKeys: String, CodingKey {
        case arch, imageSize, channels, latent, hidden, likelihood, gaussianStd, classCount, learningRate, batchSize, seed
        case length, sampleRate, kernelSize
        case width   // the audio VAE's width before it became `conv1d` (its `hidden`)
    }

    /// Missing keys take their defaults, so configurations written before a field existed still load.
    /// A configuration of the separate audio VAE that preceded `conv1d` (it has `width` and no `arch`)
    /// loads as the 1-D case with the same layers.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let legacyAudio = !c.contains(.arch) && c.contains(.width)
        let d: VAEConfig = legacyAudio ? .audio() : VAEConfig()
        arch = try c.decodeIfPresent(VAEArchitecture.self, forKey: .arch) ?? d.arch
        imageSize = try c.decodeIfPresent(Int.self, forKey: .imageSize) ?? d.imageSize
        channels = try c.decodeIfPresent(Int.self, forKey: .channels) ?? d.channels
        latent = try c.decodeIfPresent(Int.self, forKey: .latent) ?? d.latent
        hidden = try c.decodeIfPresent(Int.self, forKey: .hidden) ?? c.decodeIfPresent(Int.self, forKey: .width) ?? d.hidden
        likelihood = try c.decodeIfPresent(VAELikelihood.self, forKey: .likelihood) ?? d.likelihood
        gaussianStd = try c.decodeIfPresent(Float.self, forKey: .gaussianStd) ?? d.gaussianStd
        classCount = try c.decodeIfPresent(Int.self, forKey: .classCount) ?? d.classCount
        learningRate = try c.decodeIfPresent(Float.self, forKey: .learningRate) ?? d.learningRate
        batchSize = try c.decodeIfPresent(Int.self, forKey: .batchSize) ?? d.batchSize
        seed = try c.decodeIfPresent(UInt64.self, forKey: .seed) ?? d.seed
        length = try c.decodeIfPresent(Int.self, forKey: .length) ?? d.length
        sampleRate = try c.decodeIfPresent(Int.self, forKey: .sampleRate) ?? d.sampleRate
        kernelSize = try c.decodeIfPresent(Int.self, forKey: .kernelSize) ?? d.kernelSize
    }

    /// Writes every field, the `conv1d`-only ones (`length`, `sampleRate`, `kernelSize`) only when `isAudio`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(arch, forKey: .arch)
        try c.encode(imageSize, forKey: .imageSize)
        try c.encode(channels, forKey: .channels)
        try c.encode(latent, forKey: .latent)
        try c.encode(hidden, forKey: .hidden)
        try c.encode(likelihood, forKey: .likelihood)
        try c.encode(gaussianStd, forKey: .gaussianStd)
        try c.encode(classCount, forKey: .classCount)
        try c.encode(learningRate, forKey: .learningRate)
        try c.encode(batchSize, forKey: .batchSize)
        try c.encode(seed, forKey: .seed)
        if isAudio {
            try c.encode(length, forKey: .length)
            try c.encode(sampleRate, forKey: .sampleRate)
            try c.encode(kernelSize, forKey: .kernelSize)
        }
    }
}

/// The three terms of one forward pass, each summed over the batch (like the example's
/// `reduction="sum"`): `total = reconstruction + kl` is the negative ELBO of the batch in nats.
public struct VAELossTerms {
    /// reconstruction + kl: the batch's negative ELBO in nats, a scalar.
    public let total: Tensor
    /// −log p(x|z) summed over the batch's pixels or samples, a scalar in nats.
    public let reconstruction: Tensor
    /// KL(q(z|x) ‖ N(0, I)) summed over the batch, a scalar in nats.
    public let kl: Tensor
}

// MARK: - the networks

/// What the MLP and conv variants share: x → (μ, log σ²) and z → decoder output.
protocol VAENetwork: Module {
    /// x (B, C, H, W) in [0, 1], optional one-hot labels (B, K) → μ, log σ² (B, latent).
    func encode(_ x: Tensor, _ onehot: Tensor?) -> (mu: Tensor, logvar: Tensor)
    /// z (B, latent), optional one-hot labels → decoder output (B, C, H, W): logits or Gaussian means.
    func decode(_ z: Tensor, _ onehot: Tensor?) -> Tensor
}

/// Appends the one-hot label columns to a (B, F) tensor.
private func withLabels(_ t: Tensor, _ onehot: Tensor?) -> Tensor {
    guard let onehot else { return t }
    return Tensor.concat([t, onehot], axis: 1)
}

/// pytorch/examples' network: fc1, fc21, fc22 (encoder), fc3, fc4 (decoder).
final class MLPVAENetwork: VAENetwork {
    var isTraining = true
    let fc1, fc21, fc22, fc3, fc4: Linear
    let imageShape: [Int]

    init(_ c: VAEConfig, _ g: inout RandomGenerator) {
        let d = c.inputFeatures, k = c.classCount
        fc1 = Linear(d + k, c.hidden, generator: &g)
        fc21 = Linear(c.hidden, c.latent, generator: &g)
        fc22 = Linear(c.hidden, c.latent, generator: &g)
        fc3 = Linear(c.latent + k, c.hidden, generator: &g)
        fc4 = Linear(c.hidden, d, generator: &g)
        imageShape = [c.channels, c.imageSize, c.imageSize]
    }


    func encode(_ x: Tensor, _ onehot: Tensor?) -> (mu: Tensor, logvar: Tensor) {
        let h1 = fc1(withLabels(x.flattened(from: 1), onehot)).relu()    // (B, hidden)
        return (fc21(h1), fc22(h1))
    }

    func decode(_ z: Tensor, _ onehot: Tensor?) -> Tensor {
        let h3 = fc3(withLabels(z, onehot)).relu()
        return fc4(h3).reshaped([z.shape[0]] + imageShape)               // (B, C, H, W)
    }
}

/// Strided 4×4 convolutions (ReLU) down to a small map, a linear layer to (μ, log σ²); the decoder
/// mirrors it with a linear layer and 4×4 transposed convolutions.
final class ConvVAENetwork: VAENetwork {
    var isTraining = true
    let encoder: Sequential
    let fc21, fc22, fc3: Linear
    let decoder: Sequential
    /// (channels, side, side) of the smallest feature map.
    let featureShape: [Int]

    init(_ c: VAEConfig, _ g: inout RandomGenerator) {
        let stages = c.convStages
        let widths = (0..<stages).map { c.hidden << $0 }                // 32, 64, 128, …
        var down: [any Layer] = []
        var cin = c.channels
        for w in widths {
            down += [Conv2d(cin, w, kernelSize: 4, stride: 2, padding: 1, generator: &g), ReLU()]
            cin = w
        }
        down.append(Flatten())
        encoder = Sequential(down)
        let side = c.imageSize >> stages
        featureShape = [widths.last!, side, side]
        let features = featureShape.reduce(1, *)
        fc21 = Linear(features + c.classCount, c.latent, generator: &g)
        fc22 = Linear(features + c.classCount, c.latent, generator: &g)
        fc3 = Linear(c.latent + c.classCount, features, generator: &g)
        var up: [any Layer] = [ReLU(), Unflatten(axis: 1, sizes: featureShape)]
        for (i, w) in widths.enumerated().reversed() {
            let out = i == 0 ? c.channels : widths[i - 1]
            up.append(ConvTranspose2d(w, out, kernelSize: 4, stride: 2, padding: 1, generator: &g))
            if i > 0 { up.append(ReLU()) }
        }
        decoder = Sequential(up)
    }

    var namedChildren: [(String, any Module)] {
        [("encoder", encoder), ("fc21", fc21), ("fc22", fc22), ("fc3", fc3), ("decoder", decoder)]
    }

    func encode(_ x: Tensor, _ onehot: Tensor?) -> (mu: Tensor, logvar: Tensor) {
        let h = withLabels(encoder(x), onehot)                           // (B, features [+ K])
        return (fc21(h), fc22(h))
    }

    func decode(_ z: Tensor, _ onehot: Tensor?) -> Tensor {
        decoder(fc3(withLabels(z, onehot)))                              // (B, C, H, W)
    }
}

/// The sound case: five strided 1-D convolutions (k25 s4, LeakyReLU 0.2) from (B, 1, L) to
/// (B, 16d, L/1024), linear layers to (μ, log σ²); the decoder mirrors it with transposed
/// convolutions (ReLU between) ending in Tanh, the Gaussian mean in [-1, 1].
final class Conv1dVAENetwork: VAENetwork {
    var isTraining = true
    let encoder: Sequential
    let fcMu, fcLogvar, fcDecode: Linear
    let decoder: Sequential
    let width: Int, innerLength: Int

    init(_ c: VAEConfig, _ g: inout RandomGenerator) {
        let d = c.hidden, k = c.kernelSize, p = c.padding
        var layers: [any Layer] = []
        var channels = 1
        for stage in 0..<VAEConfig.audioStages {
            let out = d << stage
            layers += [Conv1d(channels, out, kernelSize: k, stride: 4, padding: p, generator: &g), LeakyReLU(0.2)]
            channels = out
        }
        encoder = Sequential(layers)
        let features = channels * c.innerLength
        fcMu = Linear(features, c.latent, generator: &g)
        fcLogvar = Linear(features, c.latent, generator: &g)
        fcDecode = Linear(c.latent, features, generator: &g)
        layers = [ReLU()]
        for stage in 0..<VAEConfig.audioStages {
            let last = stage == VAEConfig.audioStages - 1
            let out = last ? 1 : channels / 2
            layers.append(ConvTranspose1d(channels, out, kernelSize: k, stride: 4, padding: p, outputPadding: 1, generator: &g))
            layers.append(last ? Tanh() : ReLU())
            channels = out
        }
        decoder = Sequential(layers)
        (width, innerLength) = (d, c.innerLength)
    }

    // The names of the audio VAE before it became this case, so its checkpoints load.
    var namedChildren: [(String, any Module)] {
        [("encoder", encoder), ("fc_mu", fcMu), ("fc_logvar", fcLogvar), ("fc_decode", fcDecode), ("decoder", decoder)]
    }

    func encode(_ x: Tensor, _ onehot: Tensor?) -> (mu: Tensor, logvar: Tensor) {
        let h = encoder(x).reshaped([x.shape[0], -1])                     // (B, 16d · L/1024)
        return (fcMu(h), fcLogvar(h))
    }

    func decode(_ z: Tensor, _ onehot: Tensor?) -> Tensor {
        decoder(fcDecode(z).reshaped([z.shape[0], 16 * width, innerLength])) // (B, 1, L)
    }
}

// MARK: - VAE

/// A VAE: `encode`, `reparameterize`, `decode` and `loss` read like pytorch/examples' `VAE` and `loss_function`; `elboAndIWAE` evaluates −log p(x). Its optimizer
/// and training step live in Training (`vaeTrainingStep`).
///
/// Checkpoint names are the network's (`fc1.weight`, … for the MLP; `encoder.0.weight`, … for conv)
/// plus `log_scale` (C) for the learned-variance Gaussian.
public final class VAE: Module {
    /// `Module`'s mode flag; no VAE layer reads it (no BatchNorm or dropout), so both modes compute the same.
    public var isTraining = true
    /// The configuration the networks were built from.
    public let config: VAEConfig
    let network: any VAENetwork
    /// log σ per channel of the learned Gaussian likelihood, else nil.
    public let logScale: Tensor?

    /// Builds the networks with PyTorch's default initialisation drawn from `config.seed`.
    public init(_ config: VAEConfig) {
        precondition(config.problem == nil, "VAE: \(config.problem!)")
        self.config = config
        var g = RandomGenerator(seed: config.seed)
        switch config.arch {
        case .mlp: network = MLPVAENetwork(config, &g)
        case .conv: network = ConvVAENetwork(config, &g)
        case .conv1d: network = Conv1dVAENetwork(config, &g)
        }
        if config.likelihood == .gaussianLearned {
            let s = Tensor.full([config.channels], config.initialLogScale)
            s.requiresGrad = true
            logScale = s
        } else {
            logScale = nil
        }
    }

    /// `log_scale` (C) when the likelihood is `gaussianLearned`; nothing otherwise.
    public var localParameters: [(String, Tensor)] { logScale.map { [("log_scale", $0)] } ?? [] }
    /// The network's children, at the top level so the MLP's names are the example's (`fc1.weight`, …).
    public var namedChildren: [(String, any Module)] { network.namedChildren }

    /// Maps DataIO images in [-1, 1] to the [0, 1] pixels the model works on.
    public static func unitRange(_ images: Tensor) -> Tensor { withNoGrad { images * 0.5 + 0.5 } }

    /// (B, K) one-hot rows for a conditional model; nil for an unconditional one.
    public func onehot(_ labels: [Int]?) -> Tensor? {
        guard config.isConditional else { return nil }
        guard let labels else { preconditionFailure("VAE: a conditional model needs labels") }
        let k = config.classCount
        return Tensor(shape: [labels.count, k]) { out in
            out.initialize(repeating: 0)
            for (i, y) in labels.enumerated() {
                precondition(y >= 0 && y < k, "VAE: label \(y) outside 0..<\(k)")
                out[i * k + y] = 1
            }
        }
    }

    /// x (B, C, H, W) in [0, 1] → μ, log σ² (B, latent).
    public func encode(_ x: Tensor, labels: [Int]? = nil) -> (mu: Tensor, logvar: Tensor) {
        network.encode(x, onehot(labels))
    }

    /// z (B, latent) → the decoder's raw output (B, C, H, W): Bernoulli logits or Gaussian means.
    public func decode(_ z: Tensor, labels: [Int]? = nil) -> Tensor { network.decode(z, onehot(labels)) }

    /// The reparameterisation trick: z = μ + ε·exp(½ log σ²) with ε ~ N(0, I) from `rng`, so z is a
    /// differentiable function of (μ, log σ²) and the noise is an input.
    public func reparameterize(mu: Tensor, logvar: Tensor, rng: inout RandomGenerator) -> Tensor {
        let eps = Tensor.randn(mu.shape, generator: &rng)
        return mu + eps * (logvar * 0.5).exp()
    }

    /// The decoder's output as data values: E[x|z] as pixels in [0, 1] (sigmoid of the logits, or the
    /// clamped Gaussian mean), or for sound the Tanh mean in [-1, 1] itself — what reconstructions
    /// and samples show.
    public func pixels(_ output: Tensor) -> Tensor {
        if config.isAudio { return output }
        return withNoGrad { config.likelihood == .bernoulli ? output.sigmoid() : output.clamped(min: 0, max: 1) }
    }

    /// σ of the learned Gaussian likelihood (its first channel's), or nil for a fixed likelihood.
    public var sigma: Double? { logScale.map { Foundation.exp(Double($0.pointer[0])) } }

    /// −log p(x|z) in nats for decoder output `output` and targets `x` in [0, 1]: summed over everything
    /// (`perImage` false, a scalar) or per image (`perImage` true, shape (B)).
    public func reconstructionNLL(_ output: Tensor, _ x: Tensor, perImage: Bool = false) -> Tensor {
        let b = x.shape[0]
        let halfLog2π = Float(0.5 * Foundation.log(2 * Double.pi))
        func reduce(_ t: Tensor) -> Tensor { perImage ? t.reshaped([b, t.count / b]).sum(axis: 1) : t.sum() }
        switch config.likelihood {
        case .bernoulli:
            if !perImage { return binaryCrossEntropyWithLogits(output, targets: x, reduction: .sum) }
            return reduce(binaryCrossEntropyWithLogits(output, targets: x, reduction: .none))
        case .gaussian:
            // ½((x − μ)/σ)² + log σ + ½ log 2π per pixel.
            let sigma = config.gaussianStd
            let constant = Float(Foundation.log(Double(sigma))) + halfLog2π
            let pixelsPerImage = Float(x.count / b)
            if !perImage { return mseLoss(output, x, reduction: .sum) * (0.5 / (sigma * sigma)) + constant * pixelsPerImage * Float(b) }
            return reduce(mseLoss(output, x, reduction: .none)) * (0.5 / (sigma * sigma)) + constant * pixelsPerImage
        case .gaussianLearned:
            let c = config.channels
            let logSigma = logScale!.reshaped([c] + [Int](repeating: 1, count: x.rank - 2))  // broadcasts over (B, C, H, W) or (B, C, L)
            let invVar = (logSigma * -2).exp()
            let perPixel = mseLoss(output, x, reduction: .none) * invVar * 0.5 + logSigma + halfLog2π
            return reduce(perPixel)
        }
    }

    /// One forward pass of a batch x (B, C, H, W) in [0, 1]: the example's
    /// `recon, mu, logvar = model(x); loss_function(recon, x, mu, logvar)`, summed over the batch.
    public func loss(_ x: Tensor, labels: [Int]? = nil, rng: inout RandomGenerator) -> VAELossTerms {
        loss(x, labels: labels, noise: Tensor.randn([x.shape[0], config.latent], generator: &rng))
    }

    /// The same loss with the reparameterisation noise ε (B, latent) given: z = μ + ε·exp(logvar/2).
    /// Data-parallel ranks pass their rows of the global batch's ε, drawn as one process draws it.
    public func loss(_ x: Tensor, labels: [Int]? = nil, noise eps: Tensor) -> VAELossTerms {
        let y = onehot(labels)
        let (mu, logvar) = network.encode(x, y)
        precondition(eps.shape == mu.shape, "VAE.loss: noise \(eps.shape) for a posterior of shape \(mu.shape)")
        let z = mu + eps * (logvar * 0.5).exp()
        let recon = reconstructionNLL(network.decode(z, y), x)
        let kl = gaussianKL(mu: mu, logvar: logvar, reduction: .sum)
        return VAELossTerms(total: recon + kl, reconstruction: recon, kl: kl)
    }

    /// The batch's summed negative ELBO with one z per image and no graph (the example's test loop).
    public func evaluate(_ x: Tensor, labels: [Int]? = nil, rng: inout RandomGenerator) -> (total: Double, reconstruction: Double, kl: Double) {
        withNoGrad {
            let t = loss(x, labels: labels, rng: &rng)
            return (Double(t.total.item), Double(t.reconstruction.item), Double(t.kl.item))
        }
    }

    /// Per image of x (B, C, H, W) in [0, 1]: the negative ELBO with one sample, and the
    /// importance-weighted bound with `samples` = k draws from q(z|x) (Burda et al. 2015):
    ///
    ///     −log p(x) ≤ −log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x) ≤ −ELBO
    ///
    /// computed as a log-sum-exp in Double. k = 1 gives the ELBO itself; the bound tightens as k grows.
    /// `chunk` bounds how many (image, sample) pairs are decoded at once.
    public func elboAndIWAE(_ x: Tensor, labels: [Int]? = nil, samples k: Int, rng: inout RandomGenerator,
                            chunk: Int = 4096) -> (negativeELBO: [Double], iwae: [Double]) {
        precondition(k >= 1, "elboAndIWAE: need at least one sample")
        return withNoGrad {
            let b = x.shape[0], l = config.latent
            let y = onehot(labels)
            let (mu, logvar) = network.encode(x, y)
            let std = (logvar * 0.5).exp()
            let klPerImage = gaussianKL(mu: mu, logvar: logvar, reduction: .none).sum(axis: 1).scalars
            let logvarSum = logvar.sum(axis: 1).scalars                          // Σ log σ² per image
            let imageLength = x.count / b
            var negativeELBO = [Double](repeating: 0, count: b)
            var iwae = [Double](repeating: 0, count: b)
            let perImage = Swift.max(1, Swift.min(k, chunk))
            let imagesPerChunk = Swift.max(1, chunk / perImage)
            let muP = mu.pointer, stdP = std.pointer
            for first in stride(from: 0, to: b, by: imagesPerChunk) {
                let n = Swift.min(imagesPerChunk, b - first)
                // log w_i = log p(x|z_i) + log p(z_i) − log q(z_i|x); the ½ log 2π terms of p(z) and q cancel.
                var logW = [[Double]](repeating: [], count: n)
                var done = 0
                while done < k {
                    let m = Swift.min(perImage, k - done)
                    let eps = Tensor.randn([n * m, l], generator: &rng)          // rows: image-major, m per image
                    let z = Tensor(shape: [n * m, l]) { out in
                        let e = eps.pointer
                        for r in 0..<(n * m) {
                            let img = first + r / m
                            for j in 0..<l { out[r * l + j] = muP[img * l + j] + stdP[img * l + j] * e[r * l + j] }
                        }
                    }
                    let targets = Tensor(shape: [n * m] + Array(x.shape.dropFirst())) { out in
                        for r in 0..<(n * m) {
                            (out.baseAddress! + r * imageLength).update(from: x.pointer + (first + r / m) * imageLength, count: imageLength)
                        }
                    }
                    var labelRows: Tensor? = nil
                    if let y {
                        labelRows = y.indexSelect((0..<(n * m)).map { first + $0 / m })
                    }
                    let nll = reconstructionNLL(network.decode(z, labelRows), targets, perImage: true).scalars
                    let e = eps.pointer, zp = z.pointer
                    for r in 0..<(n * m) {
                        let img = first + r / m
                        var zz = 0.0, ee = 0.0
                        for j in 0..<l { let zj = Double(zp[r * l + j]), ej = Double(e[r * l + j]); zz += zj * zj; ee += ej * ej }
                        let logPz = -0.5 * zz
                        let logQ = -0.5 * (ee + Double(logvarSum[img]))
                        logW[r / m].append(-Double(nll[r]) + logPz - logQ)
                        if done == 0 && r % m == 0 { negativeELBO[img] = Double(nll[r]) + Double(klPerImage[img]) }
                    }
                    done += m
                }
                for i in 0..<n {
                    let top = logW[i].max()!
                    let s = logW[i].reduce(0.0) { $0 + Foundation.exp($1 - top) }
                    iwae[first + i] = -(top + Foundation.log(s) - Foundation.log(Double(k)))
                }
            }
            return (negativeELBO, iwae)
        }
    }

    /// `count` draws from the prior decoded to pixels in [0, 1] (B, C, H, W); a conditional model
    /// needs one label per draw.
    public func sample(count: Int, labels: [Int]? = nil, rng: inout RandomGenerator) -> Tensor {
        let z = Tensor.randn([count, config.latent], generator: &rng)
        return generate(z, labels: labels)
    }

    /// Decodes given latent vectors (B, latent) to pixels in [0, 1].
    public func generate(_ z: Tensor, labels: [Int]? = nil) -> Tensor {
        withNoGrad { pixels(decode(z, labels: labels)) }
    }

    /// Reconstructions of x in [0, 1] through the posterior mean μ (no sampling), as pixels.
    public func reconstruct(_ x: Tensor, labels: [Int]? = nil) -> Tensor {
        withNoGrad { generate(encode(x, labels: labels).mu, labels: labels) }
    }
}
