import Foundation
import TensorCore

// WaveGAN (Donahue, McAuley & Puckette 2019, "Adversarial Audio Synthesis"): DCGAN flattened to
// one dimension. The generator is a dense layer to (16d, length/1024) followed by five transposed
// convolutions with kernel 25 and stride 4 (each ×4: kernel 25, padding 11, output padding 1 gives
// exactly 4·L out), the discriminator five strided convolutions (kernel 25, stride 4, padding 11:
// exactly L/4 out) with *phase shuffle* between them and a dense layer to one logit.
//
// Differences from the paper, and why:
// * Loss: the non-saturating BCE loss of Forge's image DCGAN instead of WGAN-GP. It reuses the
//   tested DCGAN step and needs no second-order gradients (the gradient penalty would need a
//   double-backward TensorCore does not have).
// * BatchNorm in G (after the dense layer and every transposed conv but the last) and in D (every
//   conv but the first), as in DCGAN: with BCE, BatchNorm is what keeps DCGAN-style training stable;
//   WaveGAN could drop it because WGAN-GP forbids BatchNorm in the critic.
// * Width d is a parameter (the paper: 64). On 2 CPU cores d = 32 at 4096 samples is affordable.
//
// Tensor layout: (B, C, L), BatchNorm2d normalises per channel over (B, L).

/// Hyper-parameters of a WaveGAN and its training, stored in checkpoints as JSON.
public struct WaveGANConfig: Codable, Equatable, Sendable {
    /// Clip length in samples: 4096, 8192 or 16384 (= start length · 4⁵ with start 4, 8, 16).
    public var length: Int = 4096
    /// Sample rate of the training clips (Hz); generated WAVs are written at this rate.
    public var sampleRate: Int = 16000
    /// Latent size.
    public var nz: Int = 100
    /// Model width d: G goes 16d → 8d → 4d → 2d → d → 1 channels, D the reverse.
    public var ngf: Int = 32
    /// Discriminator width d: D goes 1 → d → 2d → 4d → 8d → 16d channels.
    public var ndf: Int = 32
    /// Kernel size of every (transposed) convolution.
    public var kernelSize: Int = 25
    /// Phase-shuffle radius n of the discriminator (0 = off).
    public var phaseShuffle: Int = 2
    /// Adam learning rate of both players.
    public var learningRate: Float = 2e-4
    /// Adam β1 (DCGAN's 0.5).
    public var beta1: Float = 0.5
    /// Adam β2.
    public var beta2: Float = 0.999
    /// Clips per training batch, at least 2 (BatchNorm needs batch statistics).
    public var batchSize: Int = 64
    /// Seed of the initial weights, the data order and the training noise.
    public var seed: UInt64 = 1

    /// The defaults: 4096-sample clips at 16 kHz, nz 100, width 32, kernel 25, phase shuffle 2, batch 64.
    public init() {}

    /// The five ×4 stages.
    public static let stages = 5
    /// Allowed clip lengths.
    public static let lengths = [4096, 8192, 16384]

    /// Length of the generator's first feature map (length / 4⁵).
    public var startLength: Int { length >> (2 * Self.stages) }

    /// Padding that makes a stride-4 conv map L to exactly L/4, and the transposed conv 4L
    /// (with output padding 1): (kernel − 3) / 2, so the kernel must be odd (25 → 11).
    public var padding: Int { (kernelSize - 3) / 2 }

    /// A description of what is wrong, or nil.
    public var problem: String? {
        if !Self.lengths.contains(length) { return "clip length must be 4096, 8192 or 16384 samples, got \(length)" }
        if sampleRate < 1 { return "sample rate must be positive, got \(sampleRate)" }
        if nz < 1 || ngf < 1 || ndf < 1 { return "nz, ngf and ndf must be positive" }
        if kernelSize < 5 || kernelSize % 2 == 0 { return "kernel size must be odd and at least 5, got \(kernelSize)" }
        if phaseShuffle < 0 || phaseShuffle >= startLength * 4 { return "phase shuffle radius \(phaseShuffle) does not fit the feature maps" }
        if batchSize < 2 { return "batch size must be at least 2 (BatchNorm needs batch statistics)" }
        if !(learningRate > 0) { return "learning rate must be positive" }
        return nil
    }
}



// MARK: - phase shuffle

/// Rows `rows` of a batch of `batch` examples: the part of a data-parallel global batch that one rank
/// computes. Per-example random draws are made for the whole batch so that they match one process's.
public struct BatchShard: Sendable, Equatable {
    /// The rows this part holds.
    public let rows: Range<Int>
    /// Examples in the whole batch.
    public let batch: Int

    /// Rows `rows` of a batch of `batch`.
    public init(rows: Range<Int>, batch: Int) { (self.rows, self.batch) = (rows, batch) }
}

/// Phase shuffle (WaveGAN §3.3): shifts each example's feature map (B, C, L) along L by its own
/// k ∈ [−radius, radius] drawn from `generator`, filling the gap by reflection (x[−1] = x[1]), so
/// the discriminator cannot tell real from fake by the periodic artefacts of transposed convs.
///
/// Built from differentiable gathers: (B, C, L) → (B·L, C) rows, `indexSelect` of the shifted row
/// of each position, and back; the gradient scatters through `indexSelect`.
///
/// `shard` (data parallel): x holds rows `shard.rows` of a batch of `shard.batch` examples. The shifts
/// are drawn for the whole batch, in order, as one process draws them, and x takes its rows' shifts, so
/// every rank's generator moves alike and each example gets the shift it gets in one process.
public func phaseShuffle(_ x: Tensor, radius: Int, generator g: inout RandomGenerator,
                         shard: BatchShard? = nil) -> Tensor {
    forgePrecondition(x.rank == 3, "phaseShuffle: input must be (B, C, L), got \(x.shape)")
    guard radius > 0 else { return x }
    let (b, c, l) = (x.shape[0], x.shape[1], x.shape[2])
    forgePrecondition(l > radius, "phaseShuffle: length \(l) must exceed the radius \(radius)")
    let shard = shard ?? BatchShard(rows: 0..<b, batch: b)
    forgePrecondition(shard.rows.count == b && shard.rows.upperBound <= shard.batch,
                      "phaseShuffle: \(b) examples cannot be rows \(shard.rows) of a batch of \(shard.batch)")
    let shifts = (0..<shard.batch).map { _ in g.nextInt(below: 2 * radius + 1) - radius }
    var rows = [Int]()
    rows.reserveCapacity(b * l)
    for i in 0..<b {
        let k = shifts[shard.rows.lowerBound + i]
        for t in 0..<l {
            var s = t - k                       // output t reads input t − k
            if s < 0 { s = -s }                 // reflect at the left edge
            if s >= l { s = 2 * (l - 1) - s }   // and at the right edge
            rows.append(i * l + s)
        }
    }
    let positions = x.permuted([0, 2, 1]).reshaped([b * l, c])         // (B·L, C)
    return positions.indexSelect(rows).reshaped([b, l, c]).permuted([0, 2, 1])  // (B, C, L)
}

// MARK: - generator

/// z (B, nz) → waveforms (B, 1, length) in [-1, 1].
public final class WaveGANGenerator: Module {
    /// True in training mode, where BatchNorm uses and updates batch statistics.
    public var isTraining = true
    /// The configuration the generator was built from.
    public let config: WaveGANConfig
    /// z → (16d · startLength): the paper's dense projection.
    public let dense: Linear
    /// BatchNorm/ReLU then five transposed convs (×4 each), ending in Tanh.
    public let main: Sequential

    /// Builds the generator with DCGAN's initialisation (weights N(0, 0.02), BatchNorm scale N(1, 0.02)) drawn
    /// from `g`.
    public init(_ config: WaveGANConfig, generator g: inout RandomGenerator) {
        self.config = config
        let d = config.ngf, k = config.kernelSize, p = config.padding
        let first = 16 * d
        dense = Linear(weight: dcganNormal([first * config.startLength, config.nz], &g), bias: Tensor.zeros([first * config.startLength]))
        var layers: [any Layer] = [dcganBatchNorm(first, &g), ReLU()]
        var channels = first
        for stage in 0..<WaveGANConfig.stages {
            let last = stage == WaveGANConfig.stages - 1
            let out = last ? 1 : channels / 2
            layers.append(ConvTranspose1d(weight: dcganNormal([channels, out, k], &g), bias: last ? Tensor.zeros([1]) : nil,
                                          stride: 4, padding: p, outputPadding: 1))
            layers += last ? [Tanh()] : [dcganBatchNorm(out, &g), ReLU()]
            channels = out
        }
        main = Sequential(layers)
    }


    /// z: (B, nz) → (B, 1, length).
    public func forward(_ z: Tensor) -> Tensor {
        let b = z.shape[0]
        let x = dense(z).reshaped([b, 16 * config.ngf, config.startLength])  // (B, 16d, L/1024)
        return main(x)
    }
}

// MARK: - discriminator

/// waveforms (B, 1, length) → one logit per clip (B).
public final class WaveGANDiscriminator: Module {
    /// True in training mode, where BatchNorm uses and updates batch statistics.
    public var isTraining = true
    /// The configuration the discriminator was built from.
    public let config: WaveGANConfig
    /// Five [Conv1d stride 4, (BatchNorm), LeakyReLU(0.2)] blocks; phase shuffle runs between them.
    public let blocks: [Sequential]
    /// (16d · startLength) → 1 logit.
    public let output: Linear

    /// Builds the discriminator with DCGAN's initialisation (weights N(0, 0.02), BatchNorm scale N(1, 0.02))
    /// drawn from `g`.
    public init(_ config: WaveGANConfig, generator g: inout RandomGenerator) {
        self.config = config
        let d = config.ndf, k = config.kernelSize, p = config.padding
        var blocks: [Sequential] = []
        var channels = 1
        for stage in 0..<WaveGANConfig.stages {
            let out = d << stage  // d, 2d, 4d, 8d, 16d
            var layers: [any Layer] = [Conv1d(weight: dcganNormal([out, channels, k], &g), bias: nil, stride: 4, padding: p)]
            if stage > 0 { layers.append(dcganBatchNorm(out, &g)) }
            layers.append(LeakyReLU(0.2))
            blocks.append(Sequential(layers))
            channels = out
        }
        self.blocks = blocks
        output = Linear(weight: dcganNormal([1, channels * config.startLength], &g), bias: Tensor.zeros([1]))
    }

    /// The checkpoint names: `block0` … `block4` and `output`.
    public var namedChildren: [(String, any Module)] {
        blocks.enumerated().map { ("block\($0.offset)", $0.element as any Module) } + [("output", output)]
    }

    /// x: (B, 1, length) → logits (B); phase shuffle after every block but the last, drawing the
    /// shifts from `generator` (pass nil to skip it, e.g. when scoring clips). `shard`: x is these
    /// rows of a larger batch, whose shifts are drawn (see `phaseShuffle`).
    public func forward(_ x: Tensor, shuffling generator: inout RandomGenerator?, shard: BatchShard? = nil) -> Tensor {
        var h = x
        for (i, block) in blocks.enumerated() {
            h = block(h)
            if i < blocks.count - 1, config.phaseShuffle > 0, var g = generator {
                h = phaseShuffle(h, radius: config.phaseShuffle, generator: &g, shard: shard)
                generator = g
            }
        }
        return output(h.reshaped([x.shape[0], -1])).reshaped([x.shape[0]])  // (B, 16d·L/1024) → (B)
    }
}

// MARK: - the GAN and its training step

/// WaveGAN generator and discriminator (their optimizers and step: Training's `GANOptimizers`,
/// `waveGANTrainingStep`).
public final class WaveGAN {
    /// The configuration both networks were built from.
    public let config: WaveGANConfig
    /// z (B, nz) → waveforms (B, 1, length) in [-1, 1].
    public let generator: WaveGANGenerator
    /// Waveforms (B, 1, length) → one real/fake logit per clip.
    public let discriminator: WaveGANDiscriminator

    /// Builds both networks with weights drawn from `RandomGenerator(seed: config.seed)`.
    public init(_ config: WaveGANConfig) {
        precondition(config.problem == nil, "WaveGAN: \(config.problem ?? "")")
        self.config = config
        var g = RandomGenerator(seed: config.seed)
        generator = WaveGANGenerator(config, generator: &g)
        discriminator = WaveGANDiscriminator(config, generator: &g)
    }

    /// Latent vectors (count, nz) ~ N(0, 1).
    public func noise(_ count: Int, generator g: inout RandomGenerator) -> Tensor {
        Tensor.randn([count, config.nz], generator: &g)
    }

    /// Waveforms (count, 1, length) for the given latent vectors, BatchNorm in evaluation mode, no graph.
    public func generate(_ z: Tensor) -> Tensor {
        let wasTraining = generator.isTraining
        generator.eval()
        defer { generator.train(wasTraining) }
        return withNoGrad { generator.forward(z) }
    }

    /// Floating-point operations of one training step (`waveGANTrainingStep`) per clip (multiply-adds
    /// × 2, convolutions and dense layers only; `ganTrainingFLOPs` says how the passes add up).
    public var trainingFLOPsPerClip: Double {
        ganTrainingFLOPs(discriminatorForward: discriminatorForwardFLOPs, generatorForward: generatorForwardFLOPs)
    }

    /// Forward FLOPs of G for one clip.
    public var generatorForwardFLOPs: Double {
        let c = config
        var flops = 2.0 * Double(c.nz * 16 * c.ngf * c.startLength)
        var channels = 16 * c.ngf, length = c.startLength
        for stage in 0..<WaveGANConfig.stages {
            let out = stage == WaveGANConfig.stages - 1 ? 1 : channels / 2
            flops += 2.0 * Double(channels * out * c.kernelSize * length)  // every input sample scatters Cout·K
            channels = out
            length *= 4
        }
        return flops
    }

    /// Forward FLOPs of D for one clip.
    public var discriminatorForwardFLOPs: Double {
        let c = config
        var flops = 0.0
        var channels = 1, length = c.length
        for stage in 0..<WaveGANConfig.stages {
            let out = c.ndf << stage
            length /= 4
            flops += 2.0 * Double(channels * out * c.kernelSize * length)
            channels = out
        }
        return flops + 2.0 * Double(channels * c.startLength)
    }
}

