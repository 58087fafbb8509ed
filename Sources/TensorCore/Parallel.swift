import Foundation
import CBLAS
import CKernels

/// Wraps a pointer so it can cross into `parallelFor`'s worker closures. Safe because each worker
/// touches a disjoint range chosen by the chunking below.
public struct SendablePointer<T>: @unchecked Sendable {
    /// The wrapped pointer.
    public let p: UnsafeMutablePointer<T>
    /// Wraps a writable pointer.
    @inlinable public init(_ p: UnsafeMutablePointer<T>) { self.p = p }
    /// Wraps a read-only pointer; it comes back as mutable for uniformity, and the caller must not
    /// write through it.
    @inlinable public init(_ p: UnsafePointer<T>) { self.p = UnsafeMutablePointer(mutating: p) }
}

/// Forge's worker-thread settings: how many workers its kernels split work over, and whether the
/// current thread is already one of them.
public enum Threads {
    nonisolated(unsafe) private static var _count: Int = {
        applyToBLAS()  // first use of the thread count, so also in programs that never call BLAS.configure()
        if let s = ProcessInfo.processInfo.environment["FORGE_THREADS"], let n = Int(s), n > 0 { return n }
        return ProcessInfo.processInfo.activeProcessorCount
    }()

    /// Worker threads used by Forge's kernels, its GEMMs included (`FORGE_THREADS`, default: all cores).
    public static var count: Int {
        get { _count }
        set { _count = max(1, newValue) }
    }

    /// Keeps OpenBLAS to one thread: Forge splits large GEMMs over its own workers (see `sgemm`).
    /// OpenBLAS's idle workers spin on sched_yield for a while after each call, and on a machine
    /// with as many Forge workers as cores that spinning took ~20% of a DCGAN step from the
    /// im2col and elementwise passes running between GEMMs. Called once at start-up by `BLAS.configure()`.
    static func applyToBLAS() { openblas_set_num_threads(1) }

    /// Whether the calling thread is running a chunk of `parallelFor` / `parallelChunks`.
    @inlinable public static var inParallelRegion: Bool { fk_in_parallel_region() != 0 }
}

/// Runs `chunks` calls of `chunk(i)`, across Forge's worker pool (CKernels' thread_pool.c), or one
/// after another on this thread when it already runs inside a parallel region (nested work never
/// oversubscribes the cores).
@inlinable
func runChunks(_ chunks: Int, _ chunk: (Int) -> Void) {
    if chunks <= 1 || fk_in_parallel_region() != 0 {
        for i in 0..<chunks { chunk(i) }
        return
    }
    withoutActuallyEscaping(chunk) { chunk in
        var job = PoolJob(run: chunk)
        withUnsafeMutablePointer(to: &job) { p in
            fk_pool_run(chunks, { ctx, i in ctx!.assumingMemoryBound(to: PoolJob.self).pointee.run(Int(i)) }, p)
        }
    }
}

/// The closure a pool job runs, passed to C by address.
@usableFromInline
struct PoolJob {
    @usableFromInline let run: (Int) -> Void
    @usableFromInline init(run: @escaping (Int) -> Void) { self.run = run }
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
    runChunks(chunks) { i in
        let s = i * per
        let e = min(count, s + per)
        if s < e { body(s, e) }
    }
}

/// `body(start, end)` over `0..<count` cut into chunks of exactly `grain` items (the last one
/// shorter), run in parallel, with each chunk's result returned in chunk order. The cut depends only
/// on `count` and `grain`, not on the thread count, so a reduction that combines the partial results
/// in order gives the same bits with `FORGE_THREADS=1` as with 2 or 64 (the pool spreads the chunks
/// over however many workers it has).
@inlinable
public func parallelChunks<R>(_ count: Int, grain: Int = 32_768, _ body: (Int, Int) -> R) -> [R] {
    let grain = max(grain, 1)
    let chunks = max(1, (count + grain - 1) / grain)
    if chunks == 1 { return [body(0, count)] }
    var results = [R?](repeating: nil, count: chunks)
    results.withUnsafeMutableBufferPointer { rp in
        let out = UnsafeSendableBox(rp)
        runChunks(chunks) { i in
            let s = i * grain
            out.value[i] = body(s, min(count, s + grain))
        }
    }
    return results.map { $0! }
}

/// Carries a non-Sendable value (such as a buffer pointer) into `parallelFor`/`parallelChunks`
/// workers. Unchecked: the user guarantees the workers touch disjoint parts of it. Public only
/// because the `@inlinable` parallel helpers use it.
public struct UnsafeSendableBox<T>: @unchecked Sendable {
    /// The wrapped value.
    public let value: T
    /// Wraps `value`.
    @inlinable public init(_ value: T) { self.value = value }
}
