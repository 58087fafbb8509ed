import Foundation
import CKernels

// MARK: - broadcasting

/// The broadcast result shape of `a` and `b` (NumPy/PyTorch rules), or a precondition failure naming both.
public func broadcastShape(_ a: [Int], _ b: [Int], op: String) -> [Int] {
    let n = max(a.count, b.count)
    var out = [Int](repeating: 1, count: n)
    for i in 0..<n {
        let da = i < n - a.count ? 1 : a[i - (n - a.count)]
        let db = i < n - b.count ? 1 : b[i - (n - b.count)]
        forgePrecondition(da == db || da == 1 || db == 1, "\(op): shapes \(a) and \(b) do not broadcast")
        out[i] = da == 1 ? db : da
    }
    return out
}

/// Strides of `shape` seen as `target` (broadcast axes get stride 0).
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let s = Tensor.strides(shape)
    let pad = target.count - shape.count
    return (0..<target.count).map { i in i < pad || shape[i - pad] == 1 ? 0 : s[i - pad] }
}

extension Tensor {
    /// Sums `self` down to `shape` (the inverse of broadcasting), for the backward pass of broadcasting ops.
    public func sum(toShape target: [Int]) -> Tensor {
        if shape == target { return self }
        let pad = shape.count - target.count
        forgePrecondition(pad >= 0, "sum(toShape:): cannot reduce \(shape) to \(target)")
        var axes: [Int] = Array(0..<pad)
        for i in 0..<target.count where target[i] == 1 && shape[i + pad] != 1 { axes.append(i + pad) }
        var r = axes.isEmpty ? self : sum(axes: axes, keepDims: true)
        if r.shape != target { r = r.reshaped(target) }
        return r
    }
}

/// Applies `f` elementwise over the broadcast of `a` and `b` into a new tensor (no graph).
@inline(__always)
func broadcastMap(_ a: Tensor, _ b: Tensor, op: String, _ f: @escaping (Float, Float) -> Float) -> Tensor {
    let outShape = a.shape == b.shape ? a.shape : broadcastShape(a.shape, b.shape, op: op)
    let out = Tensor(uninitializedShape: outShape)
    let n = out.count
    let pa = SendablePointer(a.pointer), pb = SendablePointer(b.pointer), po = SendablePointer(out.mutablePointer)
    if a.shape == b.shape {
        parallelFor(n) { s, e in for i in s..<e { po.p[i] = f(pa.p[i], pb.p[i]) } }
    } else if b.count == 1 {
        let bv = b.pointer[0]
        parallelFor(n) { s, e in for i in s..<e { po.p[i] = f(pa.p[i], bv) } }
    } else if a.count == 1 {
        let av = a.pointer[0]
        parallelFor(n) { s, e in for i in s..<e { po.p[i] = f(av, pb.p[i]) } }
    } else if outShape == a.shape, let inner = trailingBlock(b.shape, of: outShape) {
        // b repeats along leading axes (a bias over (…, C)): rows of `inner` contiguous elements
        let rows = n / inner
        parallelFor(rows, grain: Swift.max(1, 32_768 / inner)) { s, e in
            for r in s..<e {
                let o = po.p + r * inner, x = pa.p + r * inner
                for j in 0..<inner { o[j] = f(x[j], pb.p[j]) }
            }
        }
    } else if outShape == b.shape, let inner = trailingBlock(a.shape, of: outShape) {
        let rows = n / inner
        parallelFor(rows, grain: Swift.max(1, 32_768 / inner)) { s, e in
            for r in s..<e {
                let o = po.p + r * inner, y = pb.p + r * inner
                for j in 0..<inner { o[j] = f(pa.p[j], y[j]) }
            }
        }
    } else {
        // General case: iterate rows of the last axis with per-input strides.
        let sa = broadcastStrides(a.shape, to: outShape), sb = broadcastStrides(b.shape, to: outShape)
        let rank = outShape.count
        let inner = outShape[rank - 1]
        let ia = sa[rank - 1], ib = sb[rank - 1]
        let rows = n / max(inner, 1)
        parallelFor(rows, grain: max(1, 32_768 / max(inner, 1))) { rs, re in
            for r in rs..<re {
                var rem = r, offA = 0, offB = 0
                for d in stride(from: rank - 2, through: 0, by: -1) {
                    let idx = rem % outShape[d]
                    rem /= outShape[d]
                    offA += idx * sa[d]
                    offB += idx * sb[d]
                }
                let o = po.p + r * inner
                for j in 0..<inner { o[j] = f(pa.p[offA + j * ia], pb.p[offB + j * ib]) }
            }
        }
    }
    return out
}

/// If `small` (leading 1s aside) equals the trailing axes of `full`, the element count of that block.
@inline(__always)
func trailingBlock(_ small: [Int], of full: [Int]) -> Int? {
    var s = small[...]
    while let first = s.first, first == 1, s.count > 1 { s = s.dropFirst() }
    guard s.count <= full.count, Array(full.suffix(s.count)) == Array(s) else { return nil }
    return Swift.max(1, s.reduce(1, *))
}

/// Applies `f` elementwise into a new tensor of the same shape (no graph).
@inline(__always)
func unaryMap(_ x: Tensor, _ f: @escaping (Float) -> Float) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    let px = SendablePointer(x.pointer), po = SendablePointer(out.mutablePointer)
    parallelFor(x.count) { s, e in for i in s..<e { po.p[i] = f(px.p[i]) } }
    return out
}

/// Runs a C kernel `(src, dst, n)` elementwise in parallel chunks.
@inline(__always)
func kernelMap(_ x: Tensor, _ kernel: @escaping (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    let px = SendablePointer(x.pointer), po = SendablePointer(out.mutablePointer)
    parallelFor(x.count) { s, e in kernel(px.p + s, po.p + s, e - s) }
    return out
}

/// dx = dy * g(x, y) elementwise (y = the op's output), no graph.
@inline(__always)
func gradMap(_ dy: Tensor, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ g: @escaping (Float, Float) -> Float) -> Tensor {
    let out = Tensor(uninitializedShape: dy.shape)
    let pd = SendablePointer(dy.pointer), px = SendablePointer(x), py = SendablePointer(y), po = SendablePointer(out.mutablePointer)
    parallelFor(dy.count) { s, e in for i in s..<e { po.p[i] = pd.p[i] * g(px.p[i], py.p[i]) } }
    return out
}

/// dx = kernel(saved, dy) elementwise with a C backward kernel `(saved, dy, dx, n)`, in parallel chunks.
@inline(__always)
func gradKernelMap(_ dy: Tensor, _ saved: UnsafePointer<Float>,
                   _ kernel: @escaping (UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
    let out = Tensor(uninitializedShape: dy.shape)
    let ps = SendablePointer(saved), pd = SendablePointer(dy.pointer), po = SendablePointer(out.mutablePointer)
    parallelFor(dy.count) { s, e in kernel(ps.p + s, pd.p + s, po.p + s, e - s) }
    return out
}

// MARK: - binary arithmetic

/// Elementwise a + b, broadcasting the shapes (NumPy rules; traps naming both shapes when they do
/// not broadcast). Gradient: g to each side, summed over the axes that side was broadcast along.
public func + (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastMap(a, b, op: "add") { $0 + $1 }
    let sa = a.shape, sb = b.shape
    return Tensor.record(out, "add", [a, b]) { g in [g.sum(toShape: sa), g.sum(toShape: sb)] }
}

/// Elementwise a − b, broadcasting as `+` does. Gradient: g to `a`, −g to `b`, each summed back
/// to its own shape.
public func - (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastMap(a, b, op: "sub") { $0 - $1 }
    let sa = a.shape, sb = b.shape
    return Tensor.record(out, "sub", [a, b]) { g in [g.sum(toShape: sa), (-g).sum(toShape: sb)] }
}

/// Elementwise (Hadamard) a · b, broadcasting as `+` does; for the matrix product use `matmul`.
/// Gradient: g · b to `a` and g · a to `b`, each summed back to its own shape (computed only for
/// the sides that need it).
public func * (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastMap(a, b, op: "mul") { $0 * $1 }
    return Tensor.record(out, "mul", [a, b]) { g in
        [a.requiresGrad ? broadcastMap(g, b, op: "mul") { $0 * $1 }.sum(toShape: a.shape) : nil,
         b.requiresGrad ? broadcastMap(g, a, op: "mul") { $0 * $1 }.sum(toShape: b.shape) : nil]
    }
}

/// Elementwise a / b, broadcasting as `+` does (IEEE: x / 0 is ±inf or NaN, no trap).
/// Gradient: g / b to `a` and −g · a / b² to `b`, each summed back to its own shape.
public func / (a: Tensor, b: Tensor) -> Tensor {
    let out = broadcastMap(a, b, op: "div") { $0 / $1 }
    return Tensor.record(out, "div", [a, b]) { g in
        let ga: Tensor? = a.requiresGrad ? broadcastMap(g, b, op: "div") { $0 / $1 }.sum(toShape: a.shape) : nil
        var gb: Tensor? = nil
        if b.requiresGrad {
            // d(a/b)/db = -a / b²
            let ab = broadcastMap(a, b, op: "div") { $0 / ($1 * $1) }
            gb = broadcastMap(g, ab, op: "div") { -$0 * $1 }.sum(toShape: b.shape)
        }
        return [ga, gb]
    }
}

/// Elementwise −x. Gradient: −g.
public prefix func - (x: Tensor) -> Tensor {
    let out = unaryMap(x) { -$0 }
    return Tensor.record(out, "neg", [x]) { g in [unaryMap(g) { -$0 }] }
}

// scalar forms
/// a + s for every element (a constant, not a tensor: no gradient to `s`). Gradient: g.
public func + (a: Tensor, s: Float) -> Tensor {
    Tensor.record(unaryMap(a) { $0 + s }, "add_scalar", [a]) { g in [g] }
}
/// s + a for every element; the same as `a + s`.
public func + (s: Float, a: Tensor) -> Tensor { a + s }
/// a − s for every element (`a + (−s)`). Gradient: g.
public func - (a: Tensor, s: Float) -> Tensor { a + (-s) }
/// s − a for every element. Gradient: −g.
public func - (s: Float, a: Tensor) -> Tensor {
    Tensor.record(unaryMap(a) { s - $0 }, "rsub_scalar", [a]) { g in [unaryMap(g) { -$0 }] }
}
/// a · s for every element. Gradient: g · s.
public func * (a: Tensor, s: Float) -> Tensor {
    Tensor.record(unaryMap(a) { $0 * s }, "mul_scalar", [a]) { g in [unaryMap(g) { $0 * s }] }
}
/// s · a for every element; the same as `a * s`.
public func * (s: Float, a: Tensor) -> Tensor { a * s }
/// a / s for every element, computed as a · (1/s) (so it may differ from a true division in the last
/// bit; s = 0 gives ±inf or NaN). Gradient: g / s.
public func / (a: Tensor, s: Float) -> Tensor { a * (1 / s) }

// MARK: - unary math

extension Tensor {
    /// Elementwise eˣ (a polynomial C kernel, not libm; below x ≈ −87.3 it gives the smallest
    /// normal float, 1.2e−38, rather than 0 or a denormal). Gradient: g · eˣ (reuses the output).
    public func exp() -> Tensor {
        let out = kernelMap(self) { fk_exp($0, $1, $2) }
        let ys = out.storage
        return Tensor.record(out, "exp", [self]) { g in [gradMap(g, ys.pointer, ys.pointer) { _, y in y }] }
    }

    /// Elementwise natural logarithm (a polynomial C kernel: log 0 = −inf, log of a negative number
    /// or NaN = NaN). Gradient: g / x, so an input of 0 gives an infinite gradient.
    public func log() -> Tensor {
        let out = kernelMap(self) { fk_log($0, $1, $2) }
        return Tensor.record(out, "log", [self]) { g in [broadcastMap(g, self, op: "log") { $0 / $1 }] }
    }

    /// Elementwise √x (NaN for x < 0). Gradient: g / (2√x), infinite at x = 0.
    public func sqrt() -> Tensor {
        let out = unaryMap(self) { $0.squareRoot() }
        let ys = out.storage
        return Tensor.record(out, "sqrt", [self]) { g in [gradMap(g, ys.pointer, ys.pointer) { _, y in 0.5 / y }] }
    }

    /// Elementwise x². Gradient: 2x · g.
    public func square() -> Tensor {
        let out = unaryMap(self) { $0 * $0 }
        return Tensor.record(out, "square", [self]) { g in [gradMap(g, self.pointer, self.pointer) { x, _ in 2 * x }] }
    }

    /// Elementwise power with a constant exponent.
    public func pow(_ p: Float) -> Tensor {
        let out = unaryMap(self) { Foundation.pow($0, p) }
        return Tensor.record(out, "pow", [self]) { g in [gradMap(g, self.pointer, self.pointer) { x, _ in p * Foundation.pow(x, p - 1) }] }
    }

    /// Elementwise |x|. Gradient: sign(x) · g, with 0 at x = 0 (as PyTorch).
    public func abs() -> Tensor {
        let out = unaryMap(self) { Swift.abs($0) }
        return Tensor.record(out, "abs", [self]) { g in [gradMap(g, self.pointer, self.pointer) { x, _ in x > 0 ? 1 : (x < 0 ? -1 : 0) }] }
    }

    /// Elementwise tanh x (a C kernel: odd polynomial for |x| < 0.625, 1 − 2/(e²ˣ + 1) beyond).
    /// Gradient: (1 − tanh² x) · g, from the saved output.
    public func tanh() -> Tensor {
        let out = kernelMap(self) { fk_tanh($0, $1, $2) }
        let ys = out.storage
        return Tensor.record(out, "tanh", [self]) { g in [gradMap(g, ys.pointer, ys.pointer) { _, y in 1 - y * y }] }
    }

    /// Elementwise logistic σ(x) = 1 / (1 + e⁻ˣ). Gradient: σ(x)(1 − σ(x)) · g, from the saved output.
    /// For a loss on logits use `binaryCrossEntropyWithLogits`, stable where `sigmoid().log()` is not.
    public func sigmoid() -> Tensor {
        let out = kernelMap(self) { fk_sigmoid($0, $1, $2) }
        let ys = out.storage
        return Tensor.record(out, "sigmoid", [self]) { g in [gradMap(g, ys.pointer, ys.pointer) { _, y in y * (1 - y) }] }
    }

    /// Elementwise max(x, 0); a NaN stays NaN, as in PyTorch. Gradient: g where the output is > 0,
    /// else 0 (0 at x = 0 and at a NaN, as PyTorch).
    public func relu() -> Tensor {
        let out = kernelMap(self) { fk_relu($0, $1, $2) }
        let ys = out.storage
        return Tensor.record(out, "relu", [self]) { g in
            [gradKernelMap(g, ys.pointer) { y, dy, dx, n in fk_relu_backward(y, dy, dx, n) }]
        }
    }

    /// Elementwise x for x > 0, else slope · x (`nn.LeakyReLU(slope)`; GAN discriminators use 0.2).
    /// Gradient: g for x > 0, else slope · g.
    public func leakyRelu(_ slope: Float = 0.01) -> Tensor {
        let out = kernelMap(self) { fk_leaky_relu($0, $1, $2, slope) }
        return Tensor.record(out, "leaky_relu", [self]) { g in
            [gradKernelMap(g, self.pointer) { x, dy, dx, n in fk_leaky_relu_backward(x, dy, dx, n, slope) }]
        }
    }

    /// GELU; `approximate: true` is the tanh form (`nn.GELU(approximate="tanh")`), false the exact erf form.
    public func gelu(approximate: Bool = false) -> Tensor {
        let out = approximate ? kernelMap(self) { fk_gelu_tanh($0, $1, $2) } : kernelMap(self) { fk_gelu_erf($0, $1, $2) }
        return Tensor.record(out, "gelu", [self]) { g in
            let dx = Tensor(uninitializedShape: g.shape)
            let px = SendablePointer(self.pointer), pg = SendablePointer(g.pointer), pd = SendablePointer(dx.mutablePointer)
            parallelFor(g.count) { s, e in
                if approximate { fk_gelu_tanh_backward(px.p + s, pg.p + s, pd.p + s, e - s) }
                else { fk_gelu_erf_backward(px.p + s, pg.p + s, pd.p + s, e - s) }
            }
            return [dx]
        }
    }

    /// Clamps into [low, high]; the gradient passes where the input was inside.
    public func clamped(min low: Float = -.infinity, max high: Float = .infinity) -> Tensor {
        let out = unaryMap(self) { Swift.min(Swift.max($0, low), high) }
        return Tensor.record(out, "clamp", [self]) { g in [gradMap(g, self.pointer, self.pointer) { x, _ in (x >= low && x <= high) ? 1 : 0 }] }
    }
}
