import Foundation

/// A Float32 n-dimensional array, contiguous and row-major, that can take part in reverse-mode
/// autodiff. Ops return new tensors and never change their inputs (results are immutable); only
/// optimizers and gradient accumulation write in place, through `mutablePointer`.
public final class Tensor: CustomStringConvertible {
    /// The size of each axis, outermost first (e.g. (B, C, H, W)); `[]` for a scalar. Never changes:
    /// reshaping makes a new tensor.
    public let shape: [Int]
    /// The memory holding the elements. `reshaped` and `detachedSharingStorage()` return tensors that
    /// share it, so a write through `mutablePointer` shows in those too.
    public private(set) var storage: Storage
    /// Whether gradients flow to this tensor. Leaves (parameters) with this set collect `grad`.
    public var requiresGrad: Bool
    /// The accumulated gradient of a leaf after `backward()`.
    public var grad: Tensor?
    /// How this tensor was computed, when it was computed from tensors that need gradients.
    var gradNode: GradNode?

    // MARK: creation

    /// Wraps existing storage. `storage.count` must equal the product of `shape`, and no dimension may
    /// be negative (checked apart: [-1, -4] multiplies to 4 too).
    public init(shape: [Int], storage: Storage, requiresGrad: Bool = false) {
        forgePrecondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative dimension in shape \(shape)")
        forgePrecondition(storage.count == Tensor.elementCount(shape), "Tensor: storage of \(storage.count) floats does not fit shape \(shape)")
        self.shape = shape
        self.storage = storage
        self.requiresGrad = requiresGrad
    }

    /// A tensor whose contents are undefined; the caller fills every element.
    public convenience init(uninitializedShape shape: [Int]) {
        Tensor.validate(shape)
        self.init(shape: shape, storage: Storage(uninitializedCount: Tensor.elementCount(shape)))
    }

    /// A tensor holding a copy of `data` in row-major order. Traps unless `data.count` is the product
    /// of `shape` (and on a negative or overlarge dimension).
    public convenience init(shape: [Int], data: [Float], requiresGrad: Bool = false) {
        Tensor.validate(shape)
        forgePrecondition(data.count == Tensor.elementCount(shape), "Tensor(shape:data:): \(data.count) values do not fill shape \(shape)")
        self.init(uninitializedShape: shape)
        data.withUnsafeBufferPointer { storage.pointer.update(from: $0.baseAddress!, count: data.count) }
        self.requiresGrad = requiresGrad
    }

    /// A tensor with every element set to `value`.
    public convenience init(shape: [Int], repeating value: Float, requiresGrad: Bool = false) {
        self.init(uninitializedShape: shape)
        storage.pointer.update(repeating: value, count: storage.count)
        self.requiresGrad = requiresGrad
    }

    /// A tensor filled by `body`, which receives a buffer of `product(shape)` floats holding undefined
    /// values (recycled memory): `body` must write every element.
    public convenience init(shape: [Int], fill body: (UnsafeMutableBufferPointer<Float>) throws -> Void) rethrows {
        self.init(uninitializedShape: shape)
        try body(UnsafeMutableBufferPointer(start: storage.pointer, count: storage.count))
    }

    /// A scalar (rank-0) tensor.
    public convenience init(_ value: Float) { self.init(shape: [], repeating: value) }

    /// A tensor of zeros of `shape` (no gradient).
    public static func zeros(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 0) }
    /// A tensor of ones of `shape` (no gradient).
    public static func ones(_ shape: [Int]) -> Tensor { Tensor(shape: shape, repeating: 1) }
    /// A tensor of `shape` with every element `value` (no gradient).
    public static func full(_ shape: [Int], _ value: Float) -> Tensor { Tensor(shape: shape, repeating: value) }
    /// Zeros of `t`'s shape; it does not copy `t`'s `requiresGrad`.
    public static func zeros(like t: Tensor) -> Tensor { zeros(t.shape) }

    /// `[start, start + step, …)` below `end`, like `torch.arange`.
    public static func arange(_ start: Float = 0, _ end: Float, step: Float = 1) -> Tensor {
        forgePrecondition(step != 0, "arange: step must not be 0")
        let n = Swift.max(0, Int(((end - start) / step).rounded(.up)))
        return Tensor(shape: [n]) { b in for i in 0..<n { b[i] = start + Float(i) * step } }
    }

    /// N(mean, std²) samples from `generator` (the overload without it uses `DefaultRNG`).
    public static func randn(_ shape: [Int], mean: Float = 0, std: Float = 1, generator: inout RandomGenerator) -> Tensor {
        Tensor(shape: shape) { generator.fillNormal($0, mean: mean, std: std) }
    }
    /// N(mean, std²) samples from the process-wide `DefaultRNG` (seed it with `DefaultRNG.seed`).
    public static func randn(_ shape: [Int], mean: Float = 0, std: Float = 1) -> Tensor {
        DefaultRNG.with { randn(shape, mean: mean, std: std, generator: &$0) }
    }
    /// Uniform samples in [low, high).
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, generator: inout RandomGenerator) -> Tensor {
        Tensor(shape: shape) { generator.fillUniform($0, low: low, high: high) }
    }
    /// Uniform samples in [low, high) from the process-wide `DefaultRNG`.
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1) -> Tensor {
        DefaultRNG.with { uniform(shape, low: low, high: high, generator: &$0) }
    }

    // MARK: access

    /// The number of elements (the product of `shape`; 1 for a scalar).
    public var count: Int { storage.count }
    /// The number of axes (0 for a scalar).
    public var rank: Int { shape.count }
    /// Read-only pointer to the elements (row-major).
    public var pointer: UnsafePointer<Float> { UnsafePointer(storage.pointer) }
    /// Writable pointer: for optimizers, gradient accumulation and freshly made tensors only.
    public var mutablePointer: UnsafeMutablePointer<Float> { storage.pointer }
    /// The elements as a read-only buffer of `count` floats (row-major); valid while the tensor lives.
    public var buffer: UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: pointer, count: count) }

    /// The elements as an array (row-major).
    public var scalars: [Float] { Array(buffer) }
    /// The single value of a one-element tensor.
    public var item: Float {
        forgePrecondition(count == 1, "item: tensor of shape \(shape) has \(count) elements, not 1")
        return storage.pointer[0]
    }
    /// The size of `axis`; negative axes count from the end (-1 is the last). Traps when out of range,
    /// and on a scalar, which has no axes (`normalizeAxis` lets axis 0 through at rank 0 for the ops
    /// that treat a scalar as one element; here it would index an empty shape).
    public func size(_ axis: Int) -> Int {
        forgePrecondition(rank > 0, "size: a scalar (shape []) has no axis \(axis)")
        return shape[normalizeAxis(axis, rank, op: "size")]
    }

    /// Element at a full multi-index.
    public subscript(indices: Int...) -> Float {
        forgePrecondition(indices.count == rank, "subscript: \(indices.count) indices for shape \(shape)")
        var off = 0
        for (i, idx) in indices.enumerated() {
            forgePrecondition(idx >= 0 && idx < shape[i], "subscript: index \(idx) out of range for axis \(i) of shape \(shape)")
            off = off * shape[i] + idx
        }
        return storage.pointer[off]
    }

    /// Whether this tensor is the only one using its memory (no other tensor shares the storage).
    /// With a uniquely referenced tensor it tells a backward pass that it may reuse the buffer.
    func hasUniqueStorage() -> Bool { isKnownUniquelyReferenced(&storage) }

    /// A copy that does not take part in autodiff (PyTorch's `tensor.detach().clone()`).
    public func detachedCopy() -> Tensor {
        Tensor(shape: shape) { $0.baseAddress!.update(from: pointer, count: count) }
    }
    /// The same elements, cut from the graph (shares storage, like PyTorch's `tensor.detach()`).
    public func detachedSharingStorage() -> Tensor { Tensor(shape: shape, storage: storage) }

    /// The shape and at most the first 8 elements (then "…"), for debugging:
    /// `Tensor(shape: [2, 3], [1, 2, 3, 4, 5, 6])`.
    public var description: String {
        let n = Swift.min(count, 8)
        let vals = (0..<n).map { String(format: "%.4g", storage.pointer[$0]) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(vals)\(count > n ? ", …" : "")])"
    }

    // MARK: helpers

    /// The number of elements a tensor of `shape` holds: the product of its dimensions (1 for `[]`).
    public static func elementCount(_ shape: [Int]) -> Int { shape.reduce(1, *) }

    static func validate(_ shape: [Int]) {
        var n = 1
        for d in shape {
            forgePrecondition(d >= 0, "Tensor: negative dimension in shape \(shape)")
            let (r, o) = n.multipliedReportingOverflow(by: d)
            forgePrecondition(!o && r <= (1 << 40), "Tensor: shape \(shape) is too large")
            n = r
        }
    }

    /// Row-major strides of `shape`.
    public static func strides(_ shape: [Int]) -> [Int] {
        var s = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for i in stride(from: shape.count - 1, through: 0, by: -1) { s[i] = acc; acc *= shape[i] }
        return s
    }
}

@inline(__always)
func normalizeAxis(_ axis: Int, _ rank: Int, op: String) -> Int {
    let a = axis < 0 ? axis + rank : axis
    forgePrecondition(a >= 0 && a < Swift.max(rank, 1), "\(op): axis \(axis) out of range for rank \(rank)")
    return a
}

/// Stops with `message` when `condition` fails. Unlike `precondition`, the message survives `-O`
/// builds, so a shape mismatch names the op and both shapes in the release binary too.
@inline(__always)
public func forgePrecondition(_ condition: Bool, _ message: @autoclosure () -> String, file: StaticString = #file, line: UInt = #line) {
    if !condition { fatalError(message(), file: file, line: line) }
}
