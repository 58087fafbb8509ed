import Foundation

// Spectral normalisation (Miyato et al. 2018), as `torch.nn.utils.parametrizations.spectral_norm`:
// a weight W, seen as the matrix (dim 0, everything else), is used as W / σ(W), where σ is estimated
// by power iteration with persistent vectors u (rows) and v (columns). In training each forward runs
// one power iteration, updating u and v in place (no graph), then σ = uᵀ W v with u and v held
// constant, so the gradient flows through σ: dL/dW = G/σ − (⟨G, W⟩/σ²)·u vᵀ. In evaluation the stored
// u, v are used as they are. Buffer names follow torch's parametrization state_dict
// (`parametrizations.weight.original`, `…weight.0._u`, `…weight.0._v`).

/// The persistent power-iteration state of one spectrally normalised weight.
public final class SpectralNormState {
    /// Left singular vector estimate (rows of the matrix), unit norm.
    public let u: Tensor
    /// Right singular vector estimate (columns), unit norm.
    public let v: Tensor
    /// The floor on a vector's norm when u and v are normalised (torch's default 1e-12), so a zero
    /// product W v or Wᵀu gives a zero vector instead of NaN.
    public let eps: Float

    /// u, v drawn N(0, 1) and normalised, then `initialIterations` power iterations on `weight`
    /// (torch runs 15 at registration).
    public init(weight: Tensor, initialIterations: Int = 15, eps: Float = 1e-12, generator: inout RandomGenerator) {
        let rows = weight.shape[0], cols = weight.count / rows
        u = Tensor.randn([rows], generator: &generator)
        v = Tensor.randn([cols], generator: &generator)
        self.eps = eps
        normalize(u)
        normalize(v)
        for _ in 0..<initialIterations { powerIteration(weight) }
    }

    private func normalize(_ t: Tensor) {
        var s = 0.0
        for x in t.buffer { s += Double(x) * Double(x) }
        let scale = Float(1 / Swift.max(s.squareRoot(), Double(eps)))
        for i in 0..<t.count { t.mutablePointer[i] *= scale }
    }

    /// u ← normalize(W v), then v ← normalize(Wᵀu) (torch's order), in place, in Double.
    public func powerIteration(_ weight: Tensor) {
        let rows = u.count, cols = v.count
        forgePrecondition(weight.count == rows * cols, "SpectralNormState: weight \(weight.shape) does not match u (\(rows)) and v (\(cols))")
        let w = weight.pointer
        var nu = [Double](repeating: 0, count: rows)
        for r in 0..<rows {
            var s = 0.0
            for c in 0..<cols { s += Double(w[r * cols + c]) * Double(v.pointer[c]) }
            nu[r] = s
        }
        let un = Swift.max(nu.reduce(0) { $0 + $1 * $1 }.squareRoot(), Double(eps))
        for r in 0..<rows { u.mutablePointer[r] = Float(nu[r] / un) }
        var nv = [Double](repeating: 0, count: cols)
        for r in 0..<rows {
            let ur = Double(u.pointer[r])
            for c in 0..<cols { nv[c] += Double(w[r * cols + c]) * ur }
        }
        let vn = Swift.max(nv.reduce(0) { $0 + $1 * $1 }.squareRoot(), Double(eps))
        for c in 0..<cols { v.mutablePointer[c] = Float(nv[c] / vn) }
    }

    /// W / σ with σ = uᵀ W v (u, v constants): differentiable in `weight`. `training` first runs one
    /// power iteration on the current weight.
    public func normalized(_ weight: Tensor, training: Bool) -> Tensor {
        if training { powerIteration(weight) }
        let rows = u.count, cols = v.count
        let matrix = weight.reshaped([rows, cols])
        let sigma = u.reshaped([1, rows]).matmul(matrix).matmul(v.reshaped([cols, 1]))  // (1, 1)
        return (matrix / sigma).reshaped(weight.shape)
    }

    /// The current estimate uᵀ W v (no graph).
    public func sigma(_ weight: Tensor) -> Float {
        let rows = u.count, cols = v.count
        var s = 0.0
        for r in 0..<rows {
            var row = 0.0
            for c in 0..<cols { row += Double(weight.pointer[r * cols + c]) * Double(v.pointer[c]) }
            s += Double(u.pointer[r]) * row
        }
        return Float(s)
    }

    var buffers: [(String, Tensor)] { [("parametrizations.weight.0._u", u), ("parametrizations.weight.0._v", v)] }
}

/// `spectral_norm(nn.Conv2d(...))`: a convolution whose weight is divided by its spectral norm.
public final class SpectralNormConv2d: Layer {
    /// True: each forward first runs one power iteration, moving u and v. False (evaluation): the stored
    /// u and v are used unchanged, so repeated forwards give the same output.
    public var isTraining = true
    /// The unnormalised weight (out, in, kh, kw) that the optimizer updates.
    public let weight: Tensor
    /// The bias, (out), or nil; not normalised (torch's spectral_norm touches only the weight).
    public let bias: Tensor?
    /// Step and zero padding (height, width) of the convolution, as `nn.Conv2d`'s.
    public let stride: (Int, Int), padding: (Int, Int)
    /// u (out) and v (in·kh·kw) for the weight seen as the matrix (out, in·kh·kw).
    public let state: SpectralNormState

    /// Wraps `weight` (out, in, kh, kw) and `bias` (out), which become trainable, and runs torch's 15
    /// initial power iterations from u, v drawn from `generator`. Traps unless `weight` has rank 4.
    public init(weight: Tensor, bias: Tensor?, stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0),
                generator: inout RandomGenerator) {
        forgePrecondition(weight.rank == 4, "SpectralNormConv2d: weight must be (out, in, kh, kw), got \(weight.shape)")
        weight.requiresGrad = true
        bias?.requiresGrad = true
        self.weight = weight
        self.bias = bias
        self.stride = stride
        self.padding = padding
        state = SpectralNormState(weight: weight, generator: &generator)
    }

    /// `bias` (when there is one), then the unnormalised weight under torch's parametrization name, so
    /// a state dict loads into `spectral_norm(nn.Conv2d(...))` and back.
    public var localParameters: [(String, Tensor)] {
        (bias.map { [("bias", $0)] } ?? []) + [("parametrizations.weight.original", weight)]
    }
    /// u and v as `parametrizations.weight.0._u` / `._v`: saved so a resumed run and evaluation use the
    /// converged estimate instead of restarting the power iteration.
    public var localBuffers: [(String, Tensor)] { state.buffers }

    /// x (B, in, H, W) → (B, out, OH, OW): `conv2d` with weight W / σ(W). Gradients reach the
    /// unnormalised weight through σ (see the file comment) and the bias.
    public func forward(_ x: Tensor) -> Tensor {
        conv2d(x, weight: state.normalized(weight, training: isTraining), bias: bias, stride: stride, padding: padding)
    }
}

/// `spectral_norm(nn.Embedding(...))`: a lookup table divided by its spectral norm (the projection
/// discriminator's class embedding in SNGAN).
public final class SpectralNormEmbedding: Module {
    /// True: each lookup first runs one power iteration on the table; false: u and v stay fixed.
    public var isTraining = true
    /// The unnormalised table (count, dim).
    public let weight: Tensor
    /// u (count) and v (dim) for the table as a (count, dim) matrix.
    public let state: SpectralNormState

    /// Wraps `weight` (count, dim), which becomes trainable, and runs 15 initial power iterations from
    /// u, v drawn from `generator`. Traps unless `weight` has rank 2.
    public init(weight: Tensor, generator: inout RandomGenerator) {
        forgePrecondition(weight.rank == 2, "SpectralNormEmbedding: weight must be (count, dim), got \(weight.shape)")
        weight.requiresGrad = true
        self.weight = weight
        state = SpectralNormState(weight: weight, generator: &generator)
    }

    /// The unnormalised table under torch's parametrization name (`parametrizations.weight.original`).
    public var localParameters: [(String, Tensor)] { [("parametrizations.weight.original", weight)] }
    /// u and v as `parametrizations.weight.0._u` / `._v`, as torch saves them.
    public var localBuffers: [(String, Tensor)] { state.buffers }

    /// Rows of the normalised table for `indices`, shaped `shape + [dim]`. Traps when an index is outside
    /// 0..<count or `indices.count` is not the product of `shape` (the `embedding` op's checks).
    public func forward(_ indices: [Int32], shape: [Int]) -> Tensor {
        embedding(state.normalized(weight, training: isTraining), indices, shape: shape)
    }
    /// `table(indices, shape: shape)` reads like torch's `module(indices)`; the same as `forward`.
    public func callAsFunction(_ indices: [Int32], shape: [Int]) -> Tensor { forward(indices, shape: shape) }
}
