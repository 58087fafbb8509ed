import Foundation
import CKernels

extension Tensor {
    /// Views the shape as (outer, reduced, inner) for a contiguous run of reduced axes.
    private func split(around axes: [Int]) -> (outer: Int, reduced: Int, inner: Int) {
        let lo = axes.min()!, hi = axes.max()!
        let outer = shape[..<lo].reduce(1, *)
        let reduced = shape[lo...hi].reduce(1, *)
        let inner = shape[(hi + 1)...].reduce(1, *)
        return (outer, reduced, inner)
    }

    private func reducedShape(_ axes: Set<Int>, keepDims: Bool) -> [Int] {
        var s: [Int] = []
        for (i, d) in shape.enumerated() {
            if axes.contains(i) { if keepDims { s.append(1) } } else { s.append(d) }
        }
        return s
    }

    private func normalizedAxes(_ axes: [Int]?, op: String) -> [Int] {
        guard let axes else { return Array(0..<rank) }
        let n = Set(axes.map { normalizeAxis($0, rank, op: op) }).sorted()
        return n
    }

    /// Sum of all elements (Double accumulation, deterministic chunking).
    public func sum() -> Tensor { sum(axes: nil, keepDims: false) }
    /// Mean of all elements as a scalar (shape `[]`); an empty tensor gives 0, not NaN.
    /// Gradient: g / count to every element.
    public func mean() -> Tensor { mean(axes: nil, keepDims: false) }

    /// Sum over one axis (negative counts from the end); `keepDims` leaves it as size 1 so the result
    /// broadcasts against `self`, e.g. (B, T, C) → (B, T, 1). Gradient: g broadcast back over the axis.
    public func sum(axis: Int, keepDims: Bool = false) -> Tensor { sum(axes: [axis], keepDims: keepDims) }
    /// Mean over one axis, as `sum(axis:keepDims:)` divided by its size.
    public func mean(axis: Int, keepDims: Bool = false) -> Tensor { mean(axes: [axis], keepDims: keepDims) }

    /// Sum over `axes` (all when nil).
    public func sum(axes: [Int]?, keepDims: Bool = false) -> Tensor {
        let ax = normalizedAxes(axes, op: "sum")
        let outShape = reducedShape(Set(ax), keepDims: keepDims)
        let out: Tensor
        if rank == 0 || ax.isEmpty {
            out = detachedCopy().reshapedNoGrad(outShape)
        } else if ax.count == rank {
            let p = SendablePointer(pointer)
            let parts = parallelChunks(count, grain: 65_536) { s, e in fk_sum(p.p + s, e - s) }
            out = Tensor(shape: outShape, repeating: Float(parts.reduce(0, +)))
        } else if ax == Array(ax.first!...ax.last!) {
            out = Tensor.reduceContiguous(self, split(around: ax), outShape: outShape)
        } else {
            // Non-contiguous axes: reduce one axis at a time (highest first keeps indices valid).
            var r = self.detachedSharingStorage()
            for a in ax.reversed() { r = withNoGrad { r.sum(axes: [a], keepDims: true) } }
            out = keepDims ? r : r.reshapedNoGrad(outShape)
        }
        let inShape = shape
        return Tensor.record(out, "sum", [self]) { g in
            // broadcast g back over the reduced axes
            var kept = inShape
            for a in ax { kept[a] = 1 }
            return [Tensor.expand(g.reshapedNoGrad(kept), to: inShape)]
        }
    }

    /// Mean over `axes` (all when nil; repeated axes count once): `sum(axes:)` times 1 / (the product
    /// of their sizes), so an empty reduction gives 0 rather than PyTorch's NaN. Traps on an axis
    /// out of range.
    public func mean(axes: [Int]?, keepDims: Bool = false) -> Tensor {
        let ax = normalizedAxes(axes, op: "mean")
        let n = ax.reduce(1) { $0 * shape[$1] }
        return sum(axes: ax, keepDims: keepDims) * (1 / Float(Swift.max(n, 1)))
    }

    /// (outer, reduced, inner) -> (outer, inner), Double accumulators.
    static func reduceContiguous(_ x: Tensor, _ dims: (outer: Int, reduced: Int, inner: Int), outShape: [Int]) -> Tensor {
        let (outer, reduced, inner) = dims
        let out = Tensor(uninitializedShape: outShape)
        let px = SendablePointer(x.pointer), po = SendablePointer(out.mutablePointer)
        if inner == 1 {
            parallelFor(outer, grain: Swift.max(1, 65_536 / Swift.max(reduced, 1))) { s, e in
                for o in s..<e { po.p[o] = Float(fk_sum(px.p + o * reduced, reduced)) }
            }
        } else {
            // Walk the reduced rows in order, adding whole contiguous rows of `inner` into Double
            // accumulators (cache-friendly); parallel over blocks of columns, so the order per output is fixed.
            let block = 256
            let blocks = (inner + block - 1) / block
            parallelFor(outer * blocks, grain: Swift.max(1, 65_536 / Swift.max(reduced * block, 1))) { s, e in
                var acc = [Double](repeating: 0, count: block)
                for item in s..<e {
                    let o = item / blocks, c0 = (item % blocks) * block, width = Swift.min(block, inner - c0)
                    for j in 0..<width { acc[j] = 0 }
                    var row = px.p + o * reduced * inner + c0
                    for _ in 0..<reduced {
                        for j in 0..<width { acc[j] += Double(row[j]) }
                        row += inner
                    }
                    let dst = po.p + o * inner + c0
                    for j in 0..<width { dst[j] = Float(acc[j]) }
                }
            }
        }
        return out
    }

    /// Repeats `x` (whose shape broadcasts to `shape`) up to `shape`. No graph.
    static func expand(_ x: Tensor, to target: [Int]) -> Tensor {
        if x.shape == target { return x }
        return gather(x, shape: target, sourceStrides: broadcastStrides(x.shape, to: target))
    }

    /// Broadcasts this tensor to `shape` (differentiable: the gradient sums back).
    public func expanded(to target: [Int]) -> Tensor {
        forgePrecondition(broadcastShape(shape, target, op: "expand") == target, "expanded(to:): \(shape) does not broadcast to \(target)")
        let out = Tensor.expand(self, to: target)
        let s = shape
        return Tensor.record(out, "expand", [self]) { g in [g.sum(toShape: s)] }
    }

    /// Maximum over `axis`.
    public func max(axis: Int, keepDims: Bool = false) -> Tensor {
        let (values, indices) = maxWithIndices(axis: axis, keepDims: keepDims)
        let inShape = shape, a = normalizeAxis(axis, rank, op: "max")
        return Tensor.record(values, "max", [self]) { g in
            let dx = Tensor.zeros(inShape)
            let inner = inShape[(a + 1)...].reduce(1, *), red = inShape[a]
            for (k, idx) in indices.enumerated() {
                let o = k / inner, i = k % inner
                dx.mutablePointer[(o * red + idx) * inner + i] += g.pointer[k]
            }
            return [dx]
        }
    }

    /// Maximum over all elements.
    public func max() -> Tensor { reshaped([count]).max(axis: 0) }

    /// Index of the maximum along `axis` (first one on ties), as Ints.
    public func argmax(axis: Int) -> [Int] { maxWithIndices(axis: axis, keepDims: false).1 }

    func maxWithIndices(axis: Int, keepDims: Bool) -> (Tensor, [Int]) {
        let a = normalizeAxis(axis, rank, op: "max")
        let outer = shape[..<a].reduce(1, *), red = shape[a], inner = shape[(a + 1)...].reduce(1, *)
        forgePrecondition(red > 0, "max: axis \(axis) of shape \(shape) is empty")
        var outShape = shape
        if keepDims { outShape[a] = 1 } else { outShape.remove(at: a) }
        let out = Tensor(uninitializedShape: outShape)
        var idx = [Int](repeating: 0, count: outer * inner)
        for o in 0..<outer {
            for i in 0..<inner {
                var best = pointer[o * red * inner + i], bi = 0
                if !best.isNaN {
                    for r in 1..<red {
                        let v = pointer[(o * red + r) * inner + i]
                        if v > best || v.isNaN { best = v; bi = r; if v.isNaN { break } }  // NaN wins, like torch
                    }
                }
                out.mutablePointer[o * inner + i] = best
                idx[o * inner + i] = bi
            }
        }
        return (out, idx)
    }
}
