import XCTest
import Foundation
import TensorCore

/// Forge's worker pool (parallelFor / parallelChunks over CKernels' thread_pool.c) and the GEMM split.
final class ParallelTests: XCTestCase {

    /// Every index is visited exactly once, for thread counts below, at and above the core count
    /// (more chunks than workers run the extra chunks on the caller).
    func testParallelForVisitsEveryIndexOnce() {
        let saved = Threads.count
        defer { Threads.count = saved }
        for threads in [1, 2, 3, 8] {
            Threads.count = threads
            for count in [0, 1, 5, 1000, 100_003] {
                var hits = [Int32](repeating: 0, count: count)
                hits.withUnsafeMutableBufferPointer { buf in
                    let p = SendablePointer(buf.baseAddress ?? UnsafeMutablePointer<Int32>.allocate(capacity: 1))
                    parallelFor(count, grain: 7) { s, e in for i in s..<e { p.p[i] += 1 } }
                }
                XCTAssertEqual(hits.filter { $0 != 1 }.count, 0, "threads \(threads), count \(count)")
            }
        }
    }

    /// parallelChunks returns one result per chunk, in chunk order, and a nested parallelFor inside a
    /// chunk runs serially on that thread yet still covers its range.
    func testChunkResultsInOrderAndNestedWorkRunsInline() {
        let saved = Threads.count
        defer { Threads.count = saved }
        Threads.count = 2
        let sums = parallelChunks(10_000, grain: 100) { s, e -> Int in
            XCTAssertTrue(Threads.inParallelRegion)
            var inner = [Int](repeating: 0, count: e - s)
            inner.withUnsafeMutableBufferPointer { buf in
                let p = SendablePointer(buf.baseAddress!)
                parallelFor(e - s, grain: 1) { a, b in for i in a..<b { p.p[i] = s + i } }
            }
            return inner.reduce(0, +)
        }
        // chunks of exactly `grain` items, whatever the thread count
        XCTAssertEqual(sums.count, 100)
        XCTAssertEqual(sums.reduce(0, +), (0..<10_000).reduce(0, +))
        XCTAssertEqual(sums[0], (0..<100).reduce(0, +))
        XCTAssertEqual(sums[99], (9_900..<10_000).reduce(0, +))
        XCTAssertFalse(Threads.inParallelRegion)
        // the same cut with one thread: a reduction over the parts gives the same bits
        Threads.count = 1
        let one = parallelChunks(10_000, grain: 100) { s, e in e - s }
        XCTAssertEqual(one, [Int](repeating: 100, count: 100))
    }

    /// Two threads submitting work at once: one gets the pool, the other runs serially; both are right.
    func testConcurrentCallersBothComplete() {
        let saved = Threads.count
        defer { Threads.count = saved }
        Threads.count = 2
        let results = UnsafeMutablePointer<Double>.allocate(capacity: 2)
        defer { results.deallocate() }
        let box = SendablePointer(results)
        DispatchQueue.concurrentPerform(iterations: 2) { t in
            var total = 0.0
            for _ in 0..<200 {
                total += parallelChunks(4_096, grain: 64) { s, e in Double((s..<e).reduce(0, +)) }.reduce(0, +)
            }
            box.p[t] = total
        }
        let expected = 200.0 * Double((0..<4_096).reduce(0, +))
        XCTAssertEqual(results[0], expected)
        XCTAssertEqual(results[1], expected)
    }

    /// A GEMM big enough to be cut into blocks (along n, then along m, with every transpose, alpha and
    /// beta) gives the product summed in Double (to Float rounding), and the same bits every time.
    func testSplitGEMMMatchesTheProduct() {
        let saved = Threads.count
        defer { Threads.count = saved }
        for (m, n, k) in [(37, 701, 90), (701, 37, 90), (129, 130, 128), (600, 700, 64)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = randomTensor([m * k], seed: 1), b = randomTensor([k * n], seed: 2)
                let lda = ta ? m : k, ldb = tb ? k : n
                func product() -> [Float] {
                    let c = Tensor(shape: [m * n], repeating: 0.5)
                    sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1.5, a: a.pointer, lda: lda, b: b.pointer, ldb: ldb,
                          beta: 0.25, c: c.mutablePointer, ldc: n)
                    return c.scalars
                }
                // C = 1.5 · op(A) · op(B) + 0.25 · 0.5, in Double
                let av = a.scalars, bv = b.scalars
                // and the bound of a Float sum of k products: k · ε · Σ|terms| (ε = 2⁻²³ ≈ 1.2e-7)
                var exact = [Double](repeating: 0, count: m * n), bound = exact
                for i in 0..<m {
                    for j in 0..<n {
                        var sum = 0.0, magnitude = 0.0
                        for p in 0..<k {
                            let term = Double(ta ? av[p * lda + i] : av[i * lda + p]) * Double(tb ? bv[j * ldb + p] : bv[p * ldb + j])
                            sum += term; magnitude += abs(term)
                        }
                        exact[i * n + j] = 1.5 * sum + 0.125
                        bound[i * n + j] = Double(k + 2) * 1.2e-7 * (1.5 * magnitude + 0.125)
                    }
                }
                XCTAssertGreaterThan(sgemmSplitParts(m: m, n: n, k: k), 1, "m \(m) n \(n) k \(k) is not split")
                Threads.count = 3
                let split = product()
                let outside = (0..<(m * n)).filter { abs(Double(split[$0]) - exact[$0]) > bound[$0] }.count
                XCTAssertEqual(outside, 0, "m \(m) n \(n) k \(k) transA \(ta) transB \(tb)")
                XCTAssertTrue(split == product(), "split GEMM not repeatable: m \(m) n \(n) k \(k)")
            }
        }
    }

    /// The product's bits do not depend on the thread count, at the shapes of a small char model's and
    /// the MLP VAE's training steps (every transpose): with 1, 2 and 3 threads, the same floats.
    /// (A split that followed the thread count changed them on OpenBLAS's Zen kernels, whose edge
    /// tiles sum in another order than their inner tiles: `forge train` then wrote other weights
    /// with FORGE_THREADS=1 than with 2.)
    func testGEMMBitsDoNotDependOnTheThreadCount() {
        let saved = Threads.count
        defer { Threads.count = saved }
        // (m, n, k): char (B·T = 512 rows, 128 wide, 4·128 MLP, 65-char vocab), VAE (batch 128, 784-400-20), and odd sizes
        for (m, n, k) in [(512, 384, 128), (512, 512, 128), (512, 128, 512), (128, 512, 512), (512, 65, 128), (65, 128, 512),
                          (128, 400, 784), (400, 784, 128), (784, 400, 128), (128, 20, 400), (20, 400, 128), (301, 517, 93)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = randomTensor([m * k], seed: 3), b = randomTensor([k * n], seed: 4)
                let lda = ta ? m : k, ldb = tb ? k : n
                var results: [[Float]] = []
                for threads in [1, 2, 3] {
                    Threads.count = threads
                    let c = Tensor(shape: [m * n], repeating: 0.5)
                    sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1, a: a.pointer, lda: lda, b: b.pointer, ldb: ldb,
                          beta: 0, c: c.mutablePointer, ldc: n)
                    results.append(c.scalars)
                }
                for t in 1..<results.count {
                    let differing = zip(results[0], results[t]).filter { $0 != $1 }.count
                    XCTAssertEqual(differing, 0, "m \(m) n \(n) k \(k) transA \(ta) transB \(tb): \(t + 1) threads")
                }
            }
        }
    }
}
