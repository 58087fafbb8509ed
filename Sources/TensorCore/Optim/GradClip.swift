import Foundation
import CKernels

/// Rescales the gradients of `parameters` in place so their combined 2-norm is at most `maxNorm`,
/// exactly like `torch.nn.utils.clip_grad_norm_`: the norm is taken over every gradient as one vector
/// (sums of squares in Double, per-chunk partials combined in a fixed order), and when
/// maxNorm / (norm + 1e-6) < 1 every gradient is multiplied by that factor. Parameters without a
/// gradient are ignored. Returns the norm before clipping (training loops log it).
@discardableResult
public func clipGradNorm(_ parameters: [Tensor], maxNorm: Float) -> Float {
    let grads = parameters.compactMap(\.grad)
    var sumSquares = 0.0
    for g in grads {
        let p = SendablePointer(g.pointer)
        sumSquares += parallelChunks(g.count, grain: 65_536) { s, e in fk_sum_squares(p.p + s, e - s) }.reduce(0, +)
    }
    let norm = sumSquares.squareRoot()
    // torch clamps the coefficient at 1 and multiplies always; multiplying by 1 changes nothing.
    let coefficient = Double(maxNorm) / (norm + 1e-6)
    if coefficient < 1 {
        let c = Float(coefficient)
        for g in grads {
            let p = SendablePointer(g.mutablePointer)
            parallelFor(g.count) { s, e in for i in s..<e { p.p[i] *= c } }
        }
    }
    return Float(norm)
}
