import Foundation
import CKernels

// Elementwise losses as single fused ops: one forward kernel writes the per-element losses, one
// backward kernel per input writes its gradient, and reductions sum in Double. (Cross-entropy from
// logits lives in Ops/NN.swift.)

/// How a loss combines its per-element values (PyTorch's `reduction=`).
public enum Reduction: Sendable, Equatable {
    /// Per-element losses, same shape as the input.
    case none
    /// Sum over every element.
    case sum
    /// Sum divided by the number of elements.
    case mean
    /// Sum divided by the size of axis 0 (the batch): the per-sample loss averaged over the batch,
    /// like `kl_div(reduction="batchmean")`.
    case batchMean
}

// MARK: - public losses

/// Binary cross-entropy on logits, like `F.binary_cross_entropy_with_logits`:
/// ℓ = max(x, 0) − x·t + log(1 + e^−|x|), which never overflows. `targets` has the logits' shape;
/// both arguments are differentiable (∂ℓ/∂x = σ(x) − t, ∂ℓ/∂t = −x).
public func binaryCrossEntropyWithLogits(_ logits: Tensor, targets: Tensor, reduction: Reduction = .mean) -> Tensor {
    forgePrecondition(logits.shape == targets.shape,
                 "binaryCrossEntropyWithLogits: logits \(logits.shape) and targets \(targets.shape) differ")
    let x = SendablePointer(logits.pointer), t = SendablePointer(targets.pointer)
    return fusedLoss("binary_cross_entropy_with_logits", [logits, targets], reduction: reduction, values: { s, e, out in
        // e^−|x| and the log go through the vectorised C kernels in blocks.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 256) { tmp in
            let tp = tmp.baseAddress!
            var b = s
            while b < e {
                let n = min(256, e - b)
                for i in 0..<n { tp[i] = -Swift.abs(x.p[b + i]) }
                fk_exp(tp, out + b, n)
                for i in 0..<n { tp[i] = 1 + out[b + i] }
                fk_log(tp, out + b, n)
                for i in 0..<n {
                    let xi = x.p[b + i]
                    out[b + i] += Swift.max(xi, 0) - xi * t.p[b + i]
                }
                b += n
            }
        }
    }, gradients: [
        { s, e, up, stride, dx in
            fk_sigmoid(x.p + s, dx + s, e - s)
            for i in s..<e { dx[i] = up[i * stride] * (dx[i] - t.p[i]) }
        },
        { s, e, up, stride, dx in
            for i in s..<e { dx[i] = -up[i * stride] * x.p[i] }
        },
    ])
}

/// Binary cross-entropy on probabilities, like `F.binary_cross_entropy`:
/// ℓ = −(t·log p + (1 − t)·log(1 − p)) with each log clamped to ≥ −100, so p = 0 or 1 stays finite.
/// Probabilities must lie in [0, 1]. The gradient is PyTorch's (p − t) / max(p(1 − p), 1e-12);
/// targets are differentiable too.
public func binaryCrossEntropy(_ probs: Tensor, targets: Tensor, reduction: Reduction = .mean) -> Tensor {
    forgePrecondition(probs.shape == targets.shape,
                 "binaryCrossEntropy: probabilities \(probs.shape) and targets \(targets.shape) differ")
    let p = SendablePointer(probs.pointer), t = SendablePointer(targets.pointer)
    return fusedLoss("binary_cross_entropy", [probs, targets], reduction: reduction, values: { s, e, out in
        for i in s..<e {
            let pi = p.p[i]
            forgePrecondition(pi >= 0 && pi <= 1, "binaryCrossEntropy: probability \(pi) at element \(i) is outside [0, 1]")
            let logP = Swift.max(Foundation.log(pi), -100), log1mP = Swift.max(Foundation.log1p(-pi), -100)
            out[i] = -(t.p[i] * logP + (1 - t.p[i]) * log1mP)
        }
    }, gradients: [
        { s, e, up, stride, dx in
            for i in s..<e {
                let pi = p.p[i]
                dx[i] = up[i * stride] * (pi - t.p[i]) / Swift.max((1 - pi) * pi, 1e-12)
            }
        },
        { s, e, up, stride, dx in
            for i in s..<e {
                let pi = p.p[i]
                dx[i] = up[i * stride] * (Swift.max(Foundation.log1p(-pi), -100) - Swift.max(Foundation.log(pi), -100))
            }
        },
    ])
}

/// Mean squared error, like `F.mse_loss`: ℓ = (x − y)². Both arguments are differentiable.
public func mseLoss(_ input: Tensor, _ target: Tensor, reduction: Reduction = .mean) -> Tensor {
    forgePrecondition(input.shape == target.shape, "mseLoss: input \(input.shape) and target \(target.shape) differ")
    let x = SendablePointer(input.pointer), y = SendablePointer(target.pointer)
    return fusedLoss("mse_loss", [input, target], reduction: reduction, values: { s, e, out in
        for i in s..<e { let d = x.p[i] - y.p[i]; out[i] = d * d }
    }, gradients: [
        { s, e, up, stride, dx in for i in s..<e { dx[i] = 2 * up[i * stride] * (x.p[i] - y.p[i]) } },
        { s, e, up, stride, dx in for i in s..<e { dx[i] = -2 * up[i * stride] * (x.p[i] - y.p[i]) } },
    ])
}

/// KL divergence of N(mu, e^logvar) from N(0, 1), a VAE's latent loss:
/// −½·(1 + logvar − mu² − e^logvar) per element, reduced by `reduction` — `.sum` is the classic
/// `-0.5 * torch.sum(...)`, `.batchMean` the same per sample averaged over the batch (axis 0).
/// Both arguments are differentiable (∂/∂mu = mu, ∂/∂logvar = ½(e^logvar − 1)).
public func gaussianKL(mu: Tensor, logvar: Tensor, reduction: Reduction = .sum) -> Tensor {
    forgePrecondition(mu.shape == logvar.shape, "gaussianKL: mu \(mu.shape) and logvar \(logvar.shape) differ")
    let m = SendablePointer(mu.pointer), lv = SendablePointer(logvar.pointer)
    return fusedLoss("gaussian_kl", [mu, logvar], reduction: reduction, values: { s, e, out in
        fk_exp(lv.p + s, out + s, e - s)
        for i in s..<e { out[i] = -0.5 * (1 + lv.p[i] - m.p[i] * m.p[i] - out[i]) }
    }, gradients: [
        { s, e, up, stride, dx in for i in s..<e { dx[i] = up[i * stride] * m.p[i] } },
        { s, e, up, stride, dx in
            fk_exp(lv.p + s, dx + s, e - s)
            for i in s..<e { dx[i] = up[i * stride] * 0.5 * (dx[i] - 1) }
        },
    ])
}

// MARK: - fused elementwise-loss machinery

/// Writes per-element losses for elements start..<end at `out + i`.
typealias LossValues = (_ start: Int, _ end: Int, _ out: UnsafeMutablePointer<Float>) -> Void
/// Writes one input's gradient for start..<end at `dx + i`: upstream gradient of element i is
/// `up[i * stride]` (stride 0 when the loss was reduced: one already-scaled value for all).
typealias LossGradient = (_ start: Int, _ end: Int, _ up: UnsafePointer<Float>, _ stride: Int,
                          _ dx: UnsafeMutablePointer<Float>) -> Void

/// Runs `values` in parallel into a per-element tensor, reduces it (Double sums, fixed chunk order)
/// and records one graph node whose backward runs `gradients[k]` for each input k that needs one.
private func fusedLoss(_ name: String, _ inputs: [Tensor], reduction: Reduction,
                       values: LossValues, gradients: [LossGradient]) -> Tensor {
    let shape = inputs[0].shape
    let n = inputs[0].count
    let elements = Tensor(uninitializedShape: shape)
    let out = SendablePointer(elements.mutablePointer)
    parallelFor(n, grain: 16_384) { s, e in values(s, e, out.p) }

    let scale: Float
    switch reduction {
    case .none: scale = 1
    case .sum: scale = 1
    case .mean: scale = 1 / Float(Swift.max(n, 1))
    case .batchMean:
        forgePrecondition(!shape.isEmpty, "\(name): reduction .batchMean needs a batch axis, got a scalar")
        scale = 1 / Float(Swift.max(shape[0], 1))
    }
    let result: Tensor
    if reduction == .none {
        result = elements
    } else {
        let parts = parallelChunks(n, grain: 65_536) { s, e in fk_sum(out.p + s, e - s) }
        result = Tensor(Float(parts.reduce(0, +) * Double(scale)))
    }
    // The inputs are kept alive by the graph node, so the pointers the kernels captured stay valid.
    return Tensor.record(result, name, inputs) { g in
        let up: Tensor, stride: Int
        if reduction == .none { up = g; stride = 1 } else { up = Tensor(g.item * scale); stride = 0 }
        let u = SendablePointer(up.pointer)
        return zip(inputs, gradients).map { input, gradient in
            guard input.requiresGrad else { return nil }
            let dx = Tensor(uninitializedShape: shape)
            let d = SendablePointer(dx.mutablePointer)
            parallelFor(n, grain: 16_384) { s, e in
                withExtendedLifetime(up) { gradient(s, e, u.p, stride, d.p) }
            }
            return dx
        }
    }
}
