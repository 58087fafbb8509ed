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

    /// A GEMM big enough to be split across workers (along n, then along m, with every transpose)
    /// gives the unsplit single-thread product (to rounding: OpenBLAS's edge tiles may sum a row in
    /// another order), and the same bits every time it runs split.
    func testSplitGEMMMatchesSingleThread() {
        let saved = Threads.count
        defer { Threads.count = saved }
        for (m, n, k) in [(37, 301, 90), (301, 37, 90), (129, 130, 64)] {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let a = randomTensor([m * k], seed: 1), b = randomTensor([k * n], seed: 2)
                let lda = ta ? m : k, ldb = tb ? k : n
                func product() -> [Float] {
                    let c = Tensor(shape: [m * n], repeating: 0.5)
                    sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: 1.5, a: a.pointer, lda: lda, b: b.pointer, ldb: ldb,
                          beta: 0.25, c: c.mutablePointer, ldc: n)
                    return c.scalars
                }
                Threads.count = 1
                let single = product()
                Threads.count = 3
                let split = product()
                let worst = zip(single, split).map { abs($0 - $1) / max(1, abs($0)) }.max() ?? 0
                XCTAssertLessThan(worst, 1e-5, "m \(m) n \(n) k \(k) transA \(ta) transB \(tb)")
                XCTAssertTrue(split == product(), "split GEMM not repeatable: m \(m) n \(n) k \(k)")
            }
        }
    }
}
