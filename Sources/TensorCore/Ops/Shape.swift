import Foundation

extension Tensor {
    /// Same elements, new shape (one dimension may be -1). Shares storage.
    public func reshaped(_ newShape: [Int]) -> Tensor {
        let s = resolveShape(newShape)
        let out = Tensor(shape: s, storage: storage)
        let old = shape
        return Tensor.record(out, "reshape", [self]) { g in [g.reshapedNoGrad(old)] }
    }

    func reshapedNoGrad(_ newShape: [Int]) -> Tensor { Tensor(shape: resolveShape(newShape), storage: storage) }

    private func resolveShape(_ newShape: [Int]) -> [Int] {
        var s = newShape
        let unknown = s.indices.filter { s[$0] == -1 }
        forgePrecondition(unknown.count <= 1, "reshape: more than one -1 in \(newShape)")
        if let u = unknown.first {
            let known = s.enumerated().filter { $0.offset != u }.reduce(1) { $0 * $1.element }
            forgePrecondition(known > 0 && count % known == 0, "reshape: cannot reshape \(shape) to \(newShape)")
            s[u] = count / known
        }
        forgePrecondition(s.allSatisfy { $0 >= 0 } && Tensor.elementCount(s) == count,
                     "reshape: cannot reshape \(shape) (\(count) elements) to \(newShape)")
        return s
    }

    /// Flattens axes from `startAxis` on into one.
    public func flattened(from startAxis: Int = 1) -> Tensor {
        let a = normalizeAxis(startAxis, rank, op: "flatten")
        return reshaped(Array(shape[..<a]) + [shape[a...].reduce(1, *)])
    }

    /// Reorders axes: result axis i is input axis `order[i]` (a copy, like `.permute(...).contiguous()`).
    public func permuted(_ order: [Int]) -> Tensor {
        forgePrecondition(order.count == rank && Set(order) == Set(0..<rank), "permute: \(order) is not a permutation of the \(rank) axes of \(shape)")
        let out = Tensor.permuteCopy(self, order)
        var inverse = [Int](repeating: 0, count: rank)
        for (i, o) in order.enumerated() { inverse[o] = i }
        return Tensor.record(out, "permute", [self]) { g in [Tensor.permuteCopy(g, inverse)] }
    }

    /// Swaps two axes (a copy).
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var order = Array(0..<rank)
        order.swapAt(normalizeAxis(a, rank, op: "transpose"), normalizeAxis(b, rank, op: "transpose"))
        return permuted(order)
    }

    static func permuteCopy(_ x: Tensor, _ order: [Int]) -> Tensor {
        if order == Array(0..<order.count) { return x.detachedCopy() }
        let inStrides = Tensor.strides(x.shape)
        return gather(x, shape: order.map { x.shape[$0] }, sourceStrides: order.map { inStrides[$0] })
    }

    /// A new contiguous tensor of `shape` whose element at index (i₀, i₁, …) is
    /// `x.pointer[Σ iₖ·sourceStrides[k]]`: a permutation when the strides are permuted, a
    /// broadcast when some are 0. Rows of the last axis are copied in parallel.
    static func gather(_ x: Tensor, shape outShape: [Int], sourceStrides: [Int]) -> Tensor {
        let out = Tensor(uninitializedShape: outShape)
        let rank = outShape.count
        if rank == 0 { out.mutablePointer[0] = x.pointer[0]; return out }
        let inner = outShape[rank - 1], innerStride = sourceStrides[rank - 1]
        let rows = out.count / Swift.max(inner, 1)
        let px = SendablePointer(x.pointer), po = SendablePointer(out.mutablePointer)
        parallelFor(rows, grain: Swift.max(1, 16_384 / Swift.max(inner, 1))) { rs, re in
            for r in rs..<re {
                var rem = r, off = 0
                for d in stride(from: rank - 2, through: 0, by: -1) {
                    off += (rem % outShape[d]) * sourceStrides[d]
                    rem /= outShape[d]
                }
                let o = po.p + r * inner
                switch innerStride {
                case 1: o.update(from: px.p + off, count: inner)
                case 0: o.update(repeating: px.p[off], count: inner)
                default: for j in 0..<inner { o[j] = px.p[off + j * innerStride] }
                }
            }
        }
        return out
    }

    /// Elements `range` along `axis` (a copy).
    public func slice(axis: Int, _ range: Range<Int>) -> Tensor {
        let a = normalizeAxis(axis, rank, op: "slice")
        forgePrecondition(range.lowerBound >= 0 && range.upperBound <= shape[a],
                     "slice: range \(range) out of bounds for axis \(axis) of shape \(shape)")
        let outer = shape[..<a].reduce(1, *), inner = shape[(a + 1)...].reduce(1, *)
        let len = range.count, full = shape[a]
        var outShape = shape
        outShape[a] = len
        let out = Tensor(uninitializedShape: outShape)
        for o in 0..<outer {
            (out.mutablePointer + o * len * inner).update(from: pointer + (o * full + range.lowerBound) * inner, count: len * inner)
        }
        let inShape = shape
        return Tensor.record(out, "slice", [self]) { g in
            let dx = Tensor.zeros(inShape)
            for o in 0..<outer {
                (dx.mutablePointer + (o * full + range.lowerBound) * inner).update(from: g.pointer + o * len * inner, count: len * inner)
            }
            return [dx]
        }
    }

    /// Sub-tensor at `index` of axis 0 (rank drops by one).
    public subscript(index: Int) -> Tensor {
        forgePrecondition(rank >= 1 && index >= 0 && index < shape[0], "index: \(index) out of range for shape \(shape)")
        return slice(axis: 0, index..<(index + 1)).reshaped(Array(shape.dropFirst()))
    }

    /// Splits along `axis` into pieces of `sizes`.
    public func split(_ sizes: [Int], axis: Int) -> [Tensor] {
        let a = normalizeAxis(axis, rank, op: "split")
        forgePrecondition(sizes.reduce(0, +) == shape[a], "split: sizes \(sizes) do not add up to \(shape[a]) on axis \(axis) of \(shape)")
        var start = 0
        return sizes.map { n in defer { start += n }; return slice(axis: a, start..<(start + n)) }
    }

    /// Concatenates along `axis`; all other dimensions must agree.
    public static func concat(_ tensors: [Tensor], axis: Int) -> Tensor {
        forgePrecondition(!tensors.isEmpty, "concat: no tensors")
        let first = tensors[0]
        let a = normalizeAxis(axis, first.rank, op: "concat")
        for t in tensors {
            forgePrecondition(t.rank == first.rank && (0..<t.rank).allSatisfy { $0 == a || t.shape[$0] == first.shape[$0] },
                         "concat: shape \(t.shape) does not match \(first.shape) outside axis \(axis)")
        }
        let outer = first.shape[..<a].reduce(1, *), inner = first.shape[(a + 1)...].reduce(1, *)
        let sizes = tensors.map { $0.shape[a] }
        let total = sizes.reduce(0, +)
        var outShape = first.shape
        outShape[a] = total
        let out = Tensor(uninitializedShape: outShape)
        var offset = 0
        for (t, n) in zip(tensors, sizes) {
            for o in 0..<outer {
                (out.mutablePointer + (o * total + offset) * inner).update(from: t.pointer + o * n * inner, count: n * inner)
            }
            offset += n
        }
        return Tensor.record(out, "concat", tensors) { g in g.split(sizes, axis: a) }
    }

    /// Stacks same-shape tensors along a new axis.
    public static func stack(_ tensors: [Tensor], axis: Int = 0) -> Tensor {
        forgePrecondition(!tensors.isEmpty, "stack: no tensors")
        let s = tensors[0].shape
        let a = axis < 0 ? axis + s.count + 1 : axis
        forgePrecondition(a >= 0 && a <= s.count, "stack: axis \(axis) out of range for shape \(s)")
        var expanded = s
        expanded.insert(1, at: a)
        return concat(tensors.map {
            forgePrecondition($0.shape == s, "stack: shape \($0.shape) differs from \(s)")
            return $0.reshaped(expanded)
        }, axis: a)
    }

    /// Rows of a 2-D (or higher) tensor picked along axis 0 by `indices` (a gather; gradient scatters back).
    public func indexSelect(_ indices: [Int]) -> Tensor {
        forgePrecondition(rank >= 1, "indexSelect: needs rank >= 1, got shape \(shape)")
        let rows = shape[0], inner = count / Swift.max(rows, 1)
        for i in indices { forgePrecondition(i >= 0 && i < rows, "indexSelect: index \(i) out of range for \(rows) rows (shape \(shape))") }
        var outShape = shape
        outShape[0] = indices.count
        let out = Tensor(uninitializedShape: outShape)
        for (k, i) in indices.enumerated() { (out.mutablePointer + k * inner).update(from: pointer + i * inner, count: inner) }
        let inShape = shape
        return Tensor.record(out, "index_select", [self]) { g in
            let dx = Tensor.zeros(inShape)
            for (k, i) in indices.enumerated() {
                let d = dx.mutablePointer + i * inner, s = g.pointer + k * inner
                for j in 0..<inner { d[j] += s[j] }
            }
            return [dx]
        }
    }
}
