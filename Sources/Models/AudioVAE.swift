import Foundation
import TensorCore

// A 1-D convolutional VAE for short waveforms, with the WaveGAN geometry:
//
//   encode:  x (B, 1, L) ─5× [Conv1d k25 s4 p11, LeakyReLU 0.2]─▶ (B, 16d, L/1024) ─flatten─┬─fc_mu─────▶ μ
//                                                                                          └─fc_logvar─▶ log σ²_z
//   decode:  z ─fc_decode─ReLU─▶ (B, 16d, L/1024) ─5× [ConvTranspose1d k25 s4 p11 op1 (ReLU)]─Tanh─▶ mean (B, 1, L)
//   loss = Σ_samples [½((x − mean)/σ)² + log σ + ½ log 2π] + KL(q(z|x) ‖ N(0, I)), the negative ELBO in nats
//
// The likelihood is Gaussian with one *learned* log σ (the σ-VAE of Rybkin et al. 2021): a fixed σ
// would need hand-tuning of the reconstruction/KL balance, which for waveforms (≈ 8000 samples per
// clip against a 64-d latent) decides between posterior collapse and no usable prior. No BatchNorm:
// a VAE's per-clip ELBO should not depend on the rest of the batch.

/// Hyper-parameters of an audio VAE and its training, stored in checkpoints as JSON.
public struct AudioVAEConfig: Codable, Equatable, Sendable {
    /// Clip length in samples: 4096, 8192 or 16384.
    public var length: Int = 4096
    /// Sample rate of the training clips (Hz).
    public var sampleRate: Int = 16000
    /// Latent size.
    public var latent: Int = 64
    /// Width d: the encoder goes 1 → d → 2d → 4d → 8d → 16d channels, the decoder back.
    public var width: Int = 16
    /// Kernel size of every (transposed) convolution (odd: padding (k − 3)/2 makes stride 4 exact).
    public var kernelSize: Int = 25
    public var learningRate: Float = 1e-3
    public var batchSize: Int = 16
    /// Seed of the initial weights, the data order and the reparameterisation noise.
    public var seed: UInt64 = 1

    public init() {}

    /// The five ×4 stages.
    public static let stages = 5
    /// Length of the innermost feature map.
    public var innerLength: Int { length >> (2 * Self.stages) }
    /// Padding for exact ÷4 / ×4.
    public var padding: Int { (kernelSize - 3) / 2 }

    /// A description of what is wrong, or nil.
    public var problem: String? {
        if !WaveGANConfig.lengths.contains(length) { return "clip length must be 4096, 8192 or 16384 samples, got \(length)" }
        if sampleRate < 1 { return "sample rate must be positive, got \(sampleRate)" }
        if latent < 1 || width < 1 { return "latent size and width must be positive" }
        if kernelSize < 5 || kernelSize % 2 == 0 { return "kernel size must be odd and at least 5, got \(kernelSize)" }
        if batchSize < 1 { return "batch size must be positive" }
        if !(learningRate > 0) { return "learning rate must be positive" }
        return nil
    }
}

/// Encoder, decoder and the learned log σ of the likelihood (the step: Training's `audioVAETrainingStep`).
public final class AudioVAE: Module {
    public var isTraining = true
    public let config: AudioVAEConfig
    /// Five strided convolutions with LeakyReLU.
    public let encoder: Sequential
    public let fcMu: Linear
    public let fcLogvar: Linear
    /// z → (16d · innerLength).
    public let fcDecode: Linear
    /// Five transposed convolutions (ReLU between) ending in Tanh: the Gaussian mean in [-1, 1].
    public let decoder: Sequential
    /// log σ of the Gaussian likelihood (one scalar, initially log 0.1).
    public let logScale: Tensor

    /// Builds the networks with PyTorch's default initialisation drawn from `config.seed`.
    public init(_ config: AudioVAEConfig) {
        precondition(config.problem == nil, "AudioVAE: \(config.problem!)")
        self.config = config
        var g = RandomGenerator(seed: config.seed)
        let d = config.width, k = config.kernelSize, p = config.padding
        var layers: [any Layer] = []
        var channels = 1
        for stage in 0..<AudioVAEConfig.stages {
            let out = d << stage
            layers += [Conv1d(channels, out, kernelSize: k, stride: 4, padding: p, generator: &g), LeakyReLU(0.2)]
            channels = out
        }
        encoder = Sequential(layers)
        let features = channels * config.innerLength
        fcMu = Linear(features, config.latent, generator: &g)
        fcLogvar = Linear(features, config.latent, generator: &g)
        fcDecode = Linear(config.latent, features, generator: &g)
        layers = [ReLU()]
        for stage in 0..<AudioVAEConfig.stages {
            let last = stage == AudioVAEConfig.stages - 1
            let out = last ? 1 : channels / 2
            layers.append(ConvTranspose1d(channels, out, kernelSize: k, stride: 4, padding: p, outputPadding: 1, generator: &g))
            layers.append(last ? Tanh() : ReLU())
            channels = out
        }
        decoder = Sequential(layers)
        logScale = Tensor.full([1], Float(Foundation.log(0.1)))
        logScale.requiresGrad = true
    }

    public var localParameters: [(String, Tensor)] { [("log_scale", logScale)] }
    public var namedChildren: [(String, any Module)] {
        [("encoder", encoder), ("fc_mu", fcMu), ("fc_logvar", fcLogvar), ("fc_decode", fcDecode), ("decoder", decoder)]
    }

    /// x (B, 1, L) → μ, log σ²_z (B, latent).
    public func encode(_ x: Tensor) -> (mu: Tensor, logvar: Tensor) {
        let h = encoder(x).reshaped([x.shape[0], -1])  // (B, 16d · L/1024)
        return (fcMu(h), fcLogvar(h))
    }

    /// z (B, latent) → Gaussian mean (B, 1, L) in [-1, 1].
    public func decode(_ z: Tensor) -> Tensor {
        let b = z.shape[0]
        return decoder(fcDecode(z).reshaped([b, 16 * config.width, config.innerLength]))
    }

    /// The summed negative ELBO of a batch x (B, 1, L) in [-1, 1] and its two terms, in nats.
    public func loss(_ x: Tensor, rng: inout RandomGenerator) -> (total: Tensor, reconstruction: Tensor, kl: Tensor) {
        let (mu, logvar) = encode(x)
        let z = mu + Tensor.randn(mu.shape, generator: &rng) * (logvar * 0.5).exp()
        let mean = decode(z)
        let halfLog2π = Float(0.5 * Foundation.log(2 * Double.pi))
        let n = Float(x.count)
        // Σ ½(x − m)²/σ² + N (log σ + ½ log 2π), with σ = exp(log_scale) broadcast as a scalar.
        let squared = mseLoss(mean, x, reduction: .sum)
        let recon = squared * (logScale * -2).exp().reshaped([]) * 0.5 + logScale.reshaped([]) * n + halfLog2π * n
        let kl = gaussianKL(mu: mu, logvar: logvar, reduction: .sum)
        return (recon + kl, recon, kl)
    }

    /// σ of the likelihood.
    public var sigma: Double { Foundation.exp(Double(logScale.item)) }

    /// Decodes latent vectors (B, latent) to waveforms (B, 1, L) (the Gaussian mean), no graph.
    public func generate(_ z: Tensor) -> Tensor { withNoGrad { decode(z) } }

    /// `count` draws from the prior N(0, I), decoded.
    public func sample(count: Int, rng: inout RandomGenerator) -> Tensor {
        generate(Tensor.randn([count, config.latent], generator: &rng))
    }

    /// Reconstructions of x through the posterior mean μ.
    public func reconstruct(_ x: Tensor) -> Tensor { withNoGrad { decode(encode(x).mu) } }
}
