import Foundation

// Layers with PyTorch's parameter names, shapes and default initialisations, so a model built from
// them loads a PyTorch state_dict directly and starts from the same distribution.

// MARK: - initialisation

/// PyTorch's default initialisations, drawing from a caller's generator.
public enum Init {
    /// `kaiming_uniform_(w, a=√5)`, the default for Linear and Conv weights: gain √(2/(1+a²)) = √(1/3)
    /// times √3/√fan_in gives the bound 1/√fan_in.
    public static func kaimingUniformDefault(_ shape: [Int], fanIn: Int, generator: inout RandomGenerator) -> Tensor {
        let bound = fanIn > 0 ? 1 / Float(fanIn).squareRoot() : 0
        return Tensor.uniform(shape, low: -bound, high: bound, generator: &generator)
    }

    /// The default bias of Linear and Conv layers: uniform(±1/√fan_in), zero when fan_in is 0.
    public static func defaultBias(_ count: Int, fanIn: Int, generator: inout RandomGenerator) -> Tensor {
        kaimingUniformDefault([count], fanIn: fanIn, generator: &generator)
    }

    /// fan_in as `torch.nn.init._calculate_fan_in_and_fan_out` computes it: dim 1 × the receptive field
    /// (for a ConvTranspose weight (in, out, k…) that is out × k…, not in).
    public static func fanIn(ofWeightShape shape: [Int]) -> Int {
        forgePrecondition(shape.count >= 2, "fanIn: weight needs rank >= 2, got \(shape)")
        return shape[1] * shape.dropFirst(2).reduce(1, *)
    }
}

/// Makes a leaf that collects gradients.
@inline(__always)
private func parameter(_ t: Tensor) -> Tensor {
    t.requiresGrad = true
    return t
}

// MARK: - Linear

/// y = x·Wᵀ + b over the last axis, like `torch.nn.Linear`. weight is (out, in).
public final class Linear: Layer {
    /// Stored for `Module`; a Linear layer acts the same in training and evaluation.
    public var isTraining = true
    /// The weight W, (out, in), as `nn.Linear` stores it (the forward multiplies by Wᵀ).
    public let weight: Tensor
    /// The bias b, (out), or nil for a layer made with `bias: false`.
    public let bias: Tensor?
    /// The size of the input's last axis and of the output's, read from `weight`.
    public let inFeatures: Int, outFeatures: Int

    /// Weight kaiming-uniform(a=√5) (bound 1/√in), bias uniform(±1/√in), both from `generator`.
    public convenience init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true, generator: inout RandomGenerator) {
        let w = Init.kaimingUniformDefault([outFeatures, inFeatures], fanIn: inFeatures, generator: &generator)
        let b = bias ? Init.defaultBias(outFeatures, fanIn: inFeatures, generator: &generator) : nil
        self.init(weight: w, bias: b)
    }

    /// As `init(_:_:bias:generator:)`, drawing from `DefaultRNG`.
    public convenience init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        let (w, b) = DefaultRNG.with { g in
            (Init.kaimingUniformDefault([outFeatures, inFeatures], fanIn: inFeatures, generator: &g),
             bias ? Init.defaultBias(outFeatures, fanIn: inFeatures, generator: &g) : nil)
        }
        self.init(weight: w, bias: b)
    }

    /// Wraps given tensors (weight (out, in), bias (out)), which become trainable.
    public init(weight: Tensor, bias: Tensor?) {
        forgePrecondition(weight.rank == 2 && (bias == nil || bias!.shape == [weight.shape[0]]),
                     "Linear: weight \(weight.shape) must be (out, in) and bias \(bias?.shape ?? []) (out)")
        outFeatures = weight.shape[0]
        inFeatures = weight.shape[1]
        self.weight = parameter(weight)
        self.bias = bias.map(parameter)
    }

    /// `weight`, then `bias` when there is one (PyTorch's names and order).
    public var localParameters: [(String, Tensor)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// x: (…, in) → (…, out).
    public func forward(_ x: Tensor) -> Tensor {
        forgePrecondition(x.rank >= 1 && x.shape[x.rank - 1] == inFeatures,
                     "Linear(\(inFeatures), \(outFeatures)): input shape \(x.shape) does not end in \(inFeatures)")
        // matmul wants rank ≥ 2; a single vector goes through as one row.
        let x2 = x.rank == 1 ? x.reshaped([1, inFeatures]) : x
        var y = x2.matmul(weight, transposeB: true)
        if let bias { y = y + bias }
        return x.rank == 1 ? y.reshaped([outFeatures]) : y
    }
}

// MARK: - normalisation, embedding, dropout

/// Layer normalisation over the last axis, like `torch.nn.LayerNorm(dim, bias=…)`: weight 1, bias 0.
public final class LayerNorm: Layer {
    /// Stored for `Module`; LayerNorm uses each row's own statistics in training and evaluation alike.
    public var isTraining = true
    /// The per-feature scale γ, (dim), initially 1.
    public let weight: Tensor
    /// The per-feature shift β, (dim), initially 0; nil with `bias: false` (GPT-2 variants without biases).
    public let bias: Tensor?
    /// Added to the variance before its inverse square root.
    public let eps: Float

    /// A LayerNorm over a last axis of size `dim` (γ = 1, β = 0, as `nn.LayerNorm`).
    public init(_ dim: Int, eps: Float = 1e-5, bias: Bool = true) {
        weight = parameter(Tensor.ones([dim]))
        self.bias = bias ? parameter(Tensor.zeros([dim])) : nil
        self.eps = eps
    }

    /// `weight`, then `bias` when there is one (PyTorch's names and order).
    public var localParameters: [(String, Tensor)] {
        [("weight", weight)] + (bias.map { [("bias", $0)] } ?? [])
    }

    /// x (…, dim) → (…, dim): each row over the last axis normalised to mean 0 and variance 1 (biased
    /// variance, as PyTorch), then y = x̂ · γ + β. Traps when the last axis is not `dim`.
    public func forward(_ x: Tensor) -> Tensor { layerNorm(x, weight: weight, bias: bias, eps: eps) }
}

/// A lookup table of `count` vectors of size `dim`, like `torch.nn.Embedding`: weight N(0, 1).
public final class Embedding: Module {
    /// Stored for `Module`; a lookup acts the same in training and evaluation.
    public var isTraining = true
    /// The table, (count, dim): row i is the vector of index i.
    public let weight: Tensor

    /// A table of `count` rows of `dim` values drawn N(0, 1) from `generator` (`nn.Embedding`'s init).
    public init(_ count: Int, _ dim: Int, generator: inout RandomGenerator) {
        weight = parameter(Tensor.randn([count, dim], generator: &generator))
    }

    /// As `init(_:_:generator:)`, drawing from `DefaultRNG`.
    public init(_ count: Int, _ dim: Int) {
        weight = parameter(Tensor.randn([count, dim]))
    }

    /// `weight` alone.
    public var localParameters: [(String, Tensor)] { [("weight", weight)] }

    /// The rows for `indices` laid out as `shape` + [dim].
    public func forward(_ indices: [Int32], shape: [Int]) -> Tensor { embedding(weight, indices, shape: shape) }
    /// `table(indices, shape: s)` is `forward(indices, shape: s)`: the rows for `indices` laid out as
    /// `s` + [dim]. Traps on an index outside 0..<count or when `s` does not hold `indices.count` items.
    public func callAsFunction(_ indices: [Int32], shape: [Int]) -> Tensor { forward(indices, shape: shape) }
}

/// Zeroes elements with probability `p` while training and scales the rest by 1/(1-p), like
/// `torch.nn.Dropout`; the identity in evaluation mode. Draws from `DefaultRNG`.
public final class Dropout: Layer {
    /// When true `forward` drops elements; when false it returns its input unchanged.
    public var isTraining = true
    /// The probability of zeroing each element.
    public let p: Float

    /// A dropout layer with drop probability `p`, 0 ≤ p ≤ 1 (traps otherwise); p = 1 zeroes every
    /// element in training, as `torch.nn.Dropout(1.0)` does.
    public init(_ p: Float = 0.5) {
        forgePrecondition(p >= 0 && p <= 1, "Dropout: p must be in [0, 1], got \(p)")
        self.p = p
    }

    /// `x` with each element zeroed with probability `p` and the rest scaled by 1/(1 − p) in training
    /// (the mask seeded by one draw from `DefaultRNG`); `x` itself in evaluation. Gradient: the same mask
    /// and scale applied to g.
    public func forward(_ x: Tensor) -> Tensor { dropout(x, p: p, training: isTraining) }

    /// Same, drawing the mask from `generator` (reproducible independently of `DefaultRNG`).
    public func forward(_ x: Tensor, generator: inout RandomGenerator) -> Tensor {
        dropout(x, p: p, training: isTraining, generator: &generator)
    }
}

// MARK: - activations and reshaping

/// `torch.nn.ReLU`.
public final class ReLU: Layer {
    /// Stored for `Module`; ReLU acts the same in training and evaluation.
    public var isTraining = true
    /// A ReLU layer (no parameters).
    public init() {}
    /// Elementwise max(x, 0); see `Tensor.relu()`.
    public func forward(_ x: Tensor) -> Tensor { x.relu() }
}

/// `torch.nn.LeakyReLU(negative_slope)`.
public final class LeakyReLU: Layer {
    /// Stored for `Module`; LeakyReLU acts the same in training and evaluation.
    public var isTraining = true
    /// The factor applied to negative inputs (PyTorch's default 0.01; DCGAN discriminators use 0.2).
    public let negativeSlope: Float
    /// A LeakyReLU layer with `negativeSlope` for x ≤ 0.
    public init(_ negativeSlope: Float = 0.01) { self.negativeSlope = negativeSlope }
    /// Elementwise x for x > 0, else negativeSlope · x; see `Tensor.leakyRelu(_:)`.
    public func forward(_ x: Tensor) -> Tensor { x.leakyRelu(negativeSlope) }
}

/// `torch.nn.Tanh`.
public final class Tanh: Layer {
    /// Stored for `Module`; Tanh acts the same in training and evaluation.
    public var isTraining = true
    /// A tanh layer (no parameters), e.g. a generator's last layer mapping into [−1, 1].
    public init() {}
    /// Elementwise tanh; see `Tensor.tanh()`.
    public func forward(_ x: Tensor) -> Tensor { x.tanh() }
}

/// `torch.nn.Sigmoid`.
public final class Sigmoid: Layer {
    /// Stored for `Module`; Sigmoid acts the same in training and evaluation.
    public var isTraining = true
    /// A logistic-sigmoid layer (no parameters).
    public init() {}
    /// Elementwise 1 / (1 + e⁻ˣ); see `Tensor.sigmoid()`.
    public func forward(_ x: Tensor) -> Tensor { x.sigmoid() }
}

/// `torch.nn.GELU`; `approximate: true` is `approximate="tanh"` (GPT-2's form).
public final class GELU: Layer {
    /// Stored for `Module`; GELU acts the same in training and evaluation.
    public var isTraining = true
    /// True: the tanh approximation 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))); false: the exact
    /// x·Φ(x) with the erf form.
    public let approximate: Bool
    /// A GELU layer, exact by default as `nn.GELU()`.
    public init(approximate: Bool = false) { self.approximate = approximate }
    /// Elementwise GELU in the chosen form; see `Tensor.gelu(approximate:)`.
    public func forward(_ x: Tensor) -> Tensor { x.gelu(approximate: approximate) }
}

/// `torch.nn.Identity`.
public final class Identity: Layer {
    /// Stored for `Module`; Identity has no behaviour to switch.
    public var isTraining = true
    /// A layer that returns its input (a placeholder where a model's structure needs a layer).
    public init() {}
    /// `x` itself (the same tensor, not a copy).
    public func forward(_ x: Tensor) -> Tensor { x }
}

/// Flattens axes from `startAxis` on, like `torch.nn.Flatten(start_dim=1)`.
public final class Flatten: Layer {
    /// Stored for `Module`; Flatten acts the same in training and evaluation.
    public var isTraining = true
    /// The first axis folded into the last one (negative counts from the end).
    public let startAxis: Int
    /// A Flatten from `startAxis` on; the default 1 keeps the batch axis: (B, C, H, W) → (B, C·H·W).
    public init(startAxis: Int = 1) { self.startAxis = startAxis }
    /// `x` with axes `startAxis`… merged into one; traps when `startAxis` is out of range for `x`.
    public func forward(_ x: Tensor) -> Tensor { x.flattened(from: startAxis) }
}

/// Splits axis `axis` into `sizes`, like `torch.nn.Unflatten(dim, sizes)` (e.g. (B, 1024) → (B, 64, 4, 4)).
public final class Unflatten: Layer {
    /// Stored for `Module`; Unflatten acts the same in training and evaluation.
    public var isTraining = true
    /// The axis split (negative counts from the end).
    public let axis: Int
    /// The sizes that axis is split into; their product must be its size.
    public let sizes: [Int]
    /// An Unflatten of `axis` into `sizes` (checked against the input at `forward`).
    public init(axis: Int, sizes: [Int]) { self.axis = axis; self.sizes = sizes }
    /// `x` with `axis` replaced by `sizes`; traps when the axis is out of range or the sizes' product
    /// is not its size.
    public func forward(_ x: Tensor) -> Tensor {
        let a = axis < 0 ? axis + x.rank : axis
        forgePrecondition(a >= 0 && a < x.rank && sizes.reduce(1, *) == x.shape[a],
                     "Unflatten: cannot split axis \(axis) of \(x.shape) into \(sizes)")
        return x.reshaped(Array(x.shape[..<a]) + sizes + Array(x.shape[(a + 1)...]))
    }
}

// MARK: - convolutions

/// 2-D convolution like `torch.nn.Conv2d` (no dilation or groups). weight (out, in, kh, kw),
/// kaiming-uniform(a=√5) with fan_in = in·kh·kw; bias uniform(±1/√fan_in).
public final class Conv2d: Layer {
    /// Stored for `Module`; a convolution acts the same in training and evaluation.
    public var isTraining = true
    /// The kernels, (out, in, kh, kw).
    public let weight: Tensor
    /// One bias per output channel, (out), or nil with `bias: false` (e.g. before a BatchNorm).
    public let bias: Tensor?
    /// Stride and zero padding as (vertical, horizontal); checked (stride ≥ 1, padding ≥ 0) at `forward`.
    public let stride: (Int, Int), padding: (Int, Int)

    /// Wraps given tensors (weight (out, in, kh, kw), bias (out)), which become trainable.
    public init(weight: Tensor, bias: Tensor?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)) {
        forgePrecondition(weight.rank == 4 && (bias == nil || bias!.shape == [weight.shape[0]]),
                     "Conv2d: weight \(weight.shape) must be (out, in, kh, kw) and bias \(bias?.shape ?? []) (out)")
        self.weight = parameter(weight)
        self.bias = bias.map(parameter)
        self.stride = stride
        self.padding = padding
    }

    /// A convolution from `inChannels` to `outChannels` with a (kh, kw) kernel, initialised as
    /// `nn.Conv2d` (kaiming-uniform(a=√5) weight, uniform(±1/√fan_in) bias) from `generator`.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                            padding: (Int, Int) = (0, 0), bias: Bool = true, generator: inout RandomGenerator) {
        let (w, b) = initialConvParameters([outChannels, inChannels, kernelSize.0, kernelSize.1], biasCount: outChannels,
                                           bias: bias, generator: &generator)
        self.init(weight: w, bias: b, stride: stride, padding: padding)
    }

    /// As the tuple form, with a square kernel and the same stride and padding on both axes.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            bias: Bool = true, generator: inout RandomGenerator) {
        self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                  padding: (padding, padding), bias: bias, generator: &generator)
    }

    /// As the generator form, drawing from `DefaultRNG`.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                            padding: (Int, Int) = (0, 0), bias: Bool = true) {
        let (w, b) = DefaultRNG.with {
            initialConvParameters([outChannels, inChannels, kernelSize.0, kernelSize.1], biasCount: outChannels,
                                  bias: bias, generator: &$0)
        }
        self.init(weight: w, bias: b, stride: stride, padding: padding)
    }

    /// As the generator form, drawing from `DefaultRNG`.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            bias: Bool = true) {
        self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                  padding: (padding, padding), bias: bias)
    }

    /// `weight`, then `bias` when there is one (PyTorch's names and order).
    public var localParameters: [(String, Tensor)] { [("weight", weight)] + (bias.map { [("bias", $0)] } ?? []) }

    /// x: (B, in, H, W) → (B, out, OH, OW).
    public func forward(_ x: Tensor) -> Tensor { conv2d(x, weight: weight, bias: bias, stride: stride, padding: padding) }
}

/// 2-D transposed convolution like `torch.nn.ConvTranspose2d` (no dilation or groups). weight
/// (in, out, kh, kw); its default init uses torch's fan_in = out·kh·kw (weight dim 1 × kernel).
public final class ConvTranspose2d: Layer {
    /// Stored for `Module`; a convolution acts the same in training and evaluation.
    public var isTraining = true
    /// The kernels, (in, out, kh, kw): note in before out, as `nn.ConvTranspose2d` stores them.
    public let weight: Tensor
    /// One bias per output channel, (out), or nil with `bias: false`.
    public let bias: Tensor?
    /// Stride, padding (cropped from the output) and output padding (added to one side of the output,
    /// 0 ..< stride) as (vertical, horizontal); checked at `forward`.
    public let stride: (Int, Int), padding: (Int, Int), outputPadding: (Int, Int)

    /// Wraps given tensors (weight (in, out, kh, kw), bias (out)), which become trainable.
    public init(weight: Tensor, bias: Tensor?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                outputPadding: (Int, Int) = (0, 0)) {
        forgePrecondition(weight.rank == 4 && (bias == nil || bias!.shape == [weight.shape[1]]),
                     "ConvTranspose2d: weight \(weight.shape) must be (in, out, kh, kw) and bias \(bias?.shape ?? []) (out)")
        self.weight = parameter(weight)
        self.bias = bias.map(parameter)
        self.stride = stride
        self.padding = padding
        self.outputPadding = outputPadding
    }

    /// A transposed convolution from `inChannels` to `outChannels` with a (kh, kw) kernel, initialised
    /// as `nn.ConvTranspose2d` (fan_in = out·kh·kw) from `generator`.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                            padding: (Int, Int) = (0, 0), outputPadding: (Int, Int) = (0, 0), bias: Bool = true,
                            generator: inout RandomGenerator) {
        let (w, b) = initialConvParameters([inChannels, outChannels, kernelSize.0, kernelSize.1], biasCount: outChannels,
                                           bias: bias, generator: &generator)
        self.init(weight: w, bias: b, stride: stride, padding: padding, outputPadding: outputPadding)
    }

    /// As the tuple form, with a square kernel and the same stride, padding and output padding on both axes.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            outputPadding: Int = 0, bias: Bool = true, generator: inout RandomGenerator) {
        self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                  padding: (padding, padding), outputPadding: (outputPadding, outputPadding), bias: bias, generator: &generator)
    }

    /// As the generator form, drawing from `DefaultRNG`.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                            padding: (Int, Int) = (0, 0), outputPadding: (Int, Int) = (0, 0), bias: Bool = true) {
        let (w, b) = DefaultRNG.with {
            initialConvParameters([inChannels, outChannels, kernelSize.0, kernelSize.1], biasCount: outChannels,
                                  bias: bias, generator: &$0)
        }
        self.init(weight: w, bias: b, stride: stride, padding: padding, outputPadding: outputPadding)
    }

    /// As the generator form, drawing from `DefaultRNG`.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            outputPadding: Int = 0, bias: Bool = true) {
        self.init(inChannels, outChannels, kernelSize: (kernelSize, kernelSize), stride: (stride, stride),
                  padding: (padding, padding), outputPadding: (outputPadding, outputPadding), bias: bias)
    }

    /// `weight`, then `bias` when there is one (PyTorch's names and order).
    public var localParameters: [(String, Tensor)] { [("weight", weight)] + (bias.map { [("bias", $0)] } ?? []) }

    /// x: (B, in, H, W) → (B, out, (H − 1)·stride − 2·padding + kh + outputPadding, …).
    public func forward(_ x: Tensor) -> Tensor {
        convTranspose2d(x, weight: weight, bias: bias, stride: stride, padding: padding, outputPadding: outputPadding)
    }
}

/// 1-D convolution like `torch.nn.Conv1d`. weight (out, in, k), fan_in = in·k.
public final class Conv1d: Layer {
    /// Stored for `Module`; a convolution acts the same in training and evaluation.
    public var isTraining = true
    /// The kernels, (out, in, k).
    public let weight: Tensor
    /// One bias per output channel, (out), or nil with `bias: false`.
    public let bias: Tensor?
    /// Stride and zero padding along the length; checked at `forward`.
    public let stride: Int, padding: Int

    /// Wraps given tensors (weight (out, in, k), bias (out)), which become trainable.
    public init(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0) {
        forgePrecondition(weight.rank == 3 && (bias == nil || bias!.shape == [weight.shape[0]]),
                     "Conv1d: weight \(weight.shape) must be (out, in, k) and bias \(bias?.shape ?? []) (out)")
        self.weight = parameter(weight)
        self.bias = bias.map(parameter)
        self.stride = stride
        self.padding = padding
    }

    /// A convolution from `inChannels` to `outChannels` with a kernel of `kernelSize`, initialised as
    /// `nn.Conv1d` (fan_in = in·k) from `generator`.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            bias: Bool = true, generator: inout RandomGenerator) {
        let (w, b) = initialConvParameters([outChannels, inChannels, kernelSize], biasCount: outChannels,
                                           bias: bias, generator: &generator)
        self.init(weight: w, bias: b, stride: stride, padding: padding)
    }

    /// As the generator form, drawing from `DefaultRNG`.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            bias: Bool = true) {
        let (w, b) = DefaultRNG.with {
            initialConvParameters([outChannels, inChannels, kernelSize], biasCount: outChannels, bias: bias, generator: &$0)
        }
        self.init(weight: w, bias: b, stride: stride, padding: padding)
    }

    /// `weight`, then `bias` when there is one (PyTorch's names and order).
    public var localParameters: [(String, Tensor)] { [("weight", weight)] + (bias.map { [("bias", $0)] } ?? []) }

    /// x: (B, in, L) → (B, out, (L + 2·padding − k) / stride + 1).
    public func forward(_ x: Tensor) -> Tensor { conv1d(x, weight: weight, bias: bias, stride: stride, padding: padding) }
}

/// 1-D transposed convolution like `torch.nn.ConvTranspose1d`. weight (in, out, k), fan_in = out·k.
public final class ConvTranspose1d: Layer {
    /// Stored for `Module`; a convolution acts the same in training and evaluation.
    public var isTraining = true
    /// The kernels, (in, out, k): in before out, as `nn.ConvTranspose1d` stores them.
    public let weight: Tensor
    /// One bias per output channel, (out), or nil with `bias: false`.
    public let bias: Tensor?
    /// Stride, padding (cropped from the output) and output padding (added at the end, 0 ..< stride);
    /// checked at `forward`.
    public let stride: Int, padding: Int, outputPadding: Int

    /// Wraps given tensors (weight (in, out, k), bias (out)), which become trainable.
    public init(weight: Tensor, bias: Tensor?, stride: Int = 1, padding: Int = 0, outputPadding: Int = 0) {
        forgePrecondition(weight.rank == 3 && (bias == nil || bias!.shape == [weight.shape[1]]),
                     "ConvTranspose1d: weight \(weight.shape) must be (in, out, k) and bias \(bias?.shape ?? []) (out)")
        self.weight = parameter(weight)
        self.bias = bias.map(parameter)
        self.stride = stride
        self.padding = padding
        self.outputPadding = outputPadding
    }

    /// A transposed convolution from `inChannels` to `outChannels` with a kernel of `kernelSize`,
    /// initialised as `nn.ConvTranspose1d` (fan_in = out·k) from `generator`.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            outputPadding: Int = 0, bias: Bool = true, generator: inout RandomGenerator) {
        let (w, b) = initialConvParameters([inChannels, outChannels, kernelSize], biasCount: outChannels,
                                           bias: bias, generator: &generator)
        self.init(weight: w, bias: b, stride: stride, padding: padding, outputPadding: outputPadding)
    }

    /// As the generator form, drawing from `DefaultRNG`.
    public convenience init(_ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Int = 0,
                            outputPadding: Int = 0, bias: Bool = true) {
        let (w, b) = DefaultRNG.with {
            initialConvParameters([inChannels, outChannels, kernelSize], biasCount: outChannels, bias: bias, generator: &$0)
        }
        self.init(weight: w, bias: b, stride: stride, padding: padding, outputPadding: outputPadding)
    }

    /// `weight`, then `bias` when there is one (PyTorch's names and order).
    public var localParameters: [(String, Tensor)] { [("weight", weight)] + (bias.map { [("bias", $0)] } ?? []) }

    /// x: (B, in, L) → (B, out, (L − 1)·stride − 2·padding + k + outputPadding).
    public func forward(_ x: Tensor) -> Tensor {
        convTranspose1d(x, weight: weight, bias: bias, stride: stride, padding: padding, outputPadding: outputPadding)
    }
}

/// torch's `reset_parameters` for the conv family: weight kaiming-uniform(a=√5) and bias
/// uniform(±1/√fan_in), with fan_in from the weight's dim 1 × kernel (so transposed convs use out·k).
private func initialConvParameters(_ weightShape: [Int], biasCount: Int, bias: Bool,
                                   generator: inout RandomGenerator) -> (Tensor, Tensor?) {
    let fanIn = Init.fanIn(ofWeightShape: weightShape)
    let w = Init.kaimingUniformDefault(weightShape, fanIn: fanIn, generator: &generator)
    let b = bias ? Init.defaultBias(biasCount, fanIn: fanIn, generator: &generator) : nil
    return (w, b)
}

// MARK: - batch normalisation

/// Batch normalisation over axis 1 like `torch.nn.BatchNorm2d`; it takes (B, C) and (B, C, L) input
/// too, so it also serves as BatchNorm1d. weight 1, bias 0; buffers `running_mean` (0), `running_var` (1)
/// and `num_batches_tracked` (a scalar count, Float here where torch stores int64).
public final class BatchNorm2d: Layer {
    /// Training: normalise with the batch's statistics and update the running ones; evaluation:
    /// normalise with the running statistics (the batch's when the layer tracks none).
    public var isTraining = true
    /// The per-channel scale γ (initially 1) and shift β (initially 0), each (C); nil with `affine: false`.
    public let weight: Tensor?, bias: Tensor?
    /// The running mean (C) and unbiased running variance (C), and the count of training batches seen
    /// (a scalar), updated in place by training `forward`s; nil with `trackRunningStats: false`.
    public let runningMean: Tensor?, runningVar: Tensor?, numBatchesTracked: Tensor?
    /// Added to the variance before its inverse square root.
    public let eps: Float
    /// Weight of the newest batch in the running averages; nil is torch's `momentum=None`
    /// (a cumulative average, 1/num_batches_tracked).
    public let momentum: Float?
    /// In training, sums the batch statistics over the processes that each hold a part of the batch
    /// (data-parallel SyncBatchNorm, set by the training layer); nil, the default: this batch's own
    /// statistics. Evaluation mode never calls it.
    public var statisticsReducer: BatchNormStatisticsReducer?

    /// A BatchNorm over `numFeatures` channels with `nn.BatchNorm2d`'s defaults and initial values.
    public init(_ numFeatures: Int, eps: Float = 1e-5, momentum: Float? = 0.1, affine: Bool = true,
                trackRunningStats: Bool = true) {
        weight = affine ? parameter(Tensor.ones([numFeatures])) : nil
        bias = affine ? parameter(Tensor.zeros([numFeatures])) : nil
        runningMean = trackRunningStats ? Tensor.zeros([numFeatures]) : nil
        runningVar = trackRunningStats ? Tensor.ones([numFeatures]) : nil
        numBatchesTracked = trackRunningStats ? Tensor(0) : nil
        self.eps = eps
        self.momentum = momentum
    }

    /// `weight` and `bias`, or none without affine parameters.
    public var localParameters: [(String, Tensor)] {
        guard let weight, let bias else { return [] }
        return [("weight", weight), ("bias", bias)]
    }

    /// `running_mean`, `running_var` and `num_batches_tracked` (PyTorch's names), or none when the
    /// layer tracks no running statistics.
    public var localBuffers: [(String, Tensor)] {
        guard let runningMean, let runningVar, let numBatchesTracked else { return [] }
        return [("running_mean", runningMean), ("running_var", runningVar), ("num_batches_tracked", numBatchesTracked)]
    }

    /// Training: normalises with the batch statistics and updates the running ones; evaluation:
    /// normalises with the running statistics.
    public func forward(_ x: Tensor) -> Tensor {
        batchNorm(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                  training: isTraining, momentum: countBatchAndGetMomentum(), eps: eps, statisticsReducer: isTraining ? statisticsReducer : nil)
    }

    /// `forward(x)` followed by a scale and shift per sample and channel, scale and shift (B, C):
    /// y[b, c] = forward(x)[b, c]·scale[b, c] + shift[b, c] (conditional BatchNorm). One fused op
    /// (`batchNormWithSampleAffine`) for a layer with no affine parameters of its own and no
    /// statistics reducer; otherwise the composed ops, with the same values.
    public func forward(_ x: Tensor, scale: Tensor, shift: Tensor) -> Tensor {
        let perSample = [x.shape[0], x.shape[1]] + [Int](repeating: 1, count: Swift.max(x.rank - 2, 0))
        guard weight == nil, bias == nil, !(isTraining && statisticsReducer != nil) else {
            return forward(x) * scale.reshaped(perSample) + shift.reshaped(perSample)
        }
        return batchNormWithSampleAffine(x, scale: scale, shift: shift, runningMean: runningMean, runningVar: runningVar,
                                         training: isTraining, momentum: countBatchAndGetMomentum(), eps: eps)
    }

    /// In training, counts the batch in `num_batches_tracked`; returns the weight of this batch in the
    /// running averages (`momentum`, or 1/count for a cumulative average).
    private func countBatchAndGetMomentum() -> Float {
        var factor = momentum ?? 0
        if isTraining, let counter = numBatchesTracked {
            counter.mutablePointer[0] += 1
            if momentum == nil { factor = 1 / counter.mutablePointer[0] }
        }
        return factor
    }
}

/// `torch.nn.BatchNorm1d` for (B, C) or (B, C, L) input: the same module.
public typealias BatchNorm1d = BatchNorm2d
