import Foundation
import CBLAS

/// Wraps a pointer so it can cross into `parallelFor`'s worker closures. Safe because each worker
/// touches a disjoint range chosen by the chunking below.
public struct SendablePointer<T>: @unchecked Sendable {
    public let p: UnsafeMutablePointer<T>
    @inlinable public init(_ p: UnsafeMutablePointer<T>) { self.p = p }
    @inlinable public init(_ p: UnsafePointer<T>) { self.p = UnsafeMutablePointer(mutating: p) }
}

public enum Threads {
    nonisolated(unsafe) private static var _count: Int = {
        if let s = ProcessInfo.processInfo.environment["FORGE_THREADS"], let n = Int(s), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }()

    /// Worker threads used by Forge's own kernels and by OpenBLAS (`FORGE_THREADS`, default: all cores).
    public static var count: Int {
        get { _count }
        set {
            _count = max(1, newValue)
            openblas_set_num_threads(Int32(_count))
        }
    }

    /// Applies the thread setting to OpenBLAS; called once at start-up by `BLAS.configure()`.
    static func applyToBLAS() { openblas_set_num_threads(Int32(_count)) }
}

/// Runs `body(start, end)` over `0..<count` split into fixed chunks of at least `grain` items.
/// The split depends only on `count`, `grain` and the thread count, never on scheduling, so any
/// per-chunk partial results combined in chunk order are deterministic.
@inlinable
public func parallelFor(_ count: Int, grain: Int = 32_768, _ body: (Int, Int) -> Void) {
    let threads = Threads.count
    if count <= grain || threads <= 1 {
        if count > 0 { body(0, count) }
        return
    }
    let chunks = min(threads, (count + grain - 1) / grain)
    let per = (count + chunks - 1) / chunks
    withoutActuallyEscaping(body) { body in
        let box = UnsafeSendableBox(body)
        DispatchQueue.concurrentPerform(iterations: chunks) { i in
            let s = i * per
            let e = min(count, s + per)
            if s < e { box.value(s, e) }
        }
    }
}

/// Same as `parallelFor` but over a fixed number of chunks, returning each chunk's result in order.
@inlinable
public func parallelChunks<R>(_ count: Int, grain: Int = 32_768, _ body: (Int, Int) -> R) -> [R] {
    let threads = Threads.count
    let chunks = max(1, min(threads, (count + grain - 1) / max(grain, 1)))
    if chunks == 1 { return [body(0, count)] }
    let per = (count + chunks - 1) / chunks
    var results = [R?](repeating: nil, count: chunks)
    results.withUnsafeMutableBufferPointer { rp in
        let out = UnsafeSendableBox(rp)
        withoutActuallyEscaping(body) { body in
            let box = UnsafeSendableBox(body)
            DispatchQueue.concurrentPerform(iterations: chunks) { i in
                let s = i * per
                let e = min(count, s + per)
                out.value[i] = box.value(s, max(s, e))
            }
        }
    }
    return results.map { $0! }
}

public struct UnsafeSendableBox<T>: @unchecked Sendable {
    public let value: T
    @inlinable public init(_ value: T) { self.value = value }
}
