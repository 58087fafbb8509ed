import XCTest
import Foundation
import TensorCore

/// An in-process stand-in for MPI_Allreduce between two threads: each `reduce` blocks until the other
/// thread has called it too, then both leave with the element-wise sum. Records every call's count.
private final class TwoThreadSum: @unchecked Sendable {
    private let condition = NSCondition()
    private var pending: [Float]?
    private var result: [Float]?
    private(set) var counts: [Int] = []

    func reduce(_ values: UnsafeMutablePointer<Float>, _ count: Int) {
        condition.lock()
        defer { condition.unlock() }
        while result != nil { condition.wait() }  // the previous round's sum is not collected yet
        let mine = Array(UnsafeBufferPointer(start: values, count: count))
        counts.append(count)
        if let other = pending {
            precondition(other.count == count, "the two parts reduce different counts: \(other.count) and \(count)")
            let sum = zip(other, mine).map { $0 + $1 }
            pending = nil
            result = sum
            values.update(from: sum, count: count)
            condition.broadcast()
            while result != nil { condition.wait() }  // the partner has collected it
        } else {
            pending = mine
            while result == nil { condition.wait() }
            values.update(from: result!, count: count)
            result = nil
            condition.broadcast()
        }
    }
}

/// One thread's half of the batch and what it computed (handed between threads once, after `done`).
private final class Part: @unchecked Sendable {
    let bn: BatchNorm2d, x: Tensor, dy: Tensor
    var y: Tensor?
    init(bn: BatchNorm2d, x: Tensor, dy: Tensor) {
        (self.bn, self.x, self.dy) = (bn, x, dy)
        x.requiresGrad = true
    }
}

final class BatchNormReducerTests: XCTestCase {
    /// SyncBatchNorm without MPI: two BatchNorm2d layers, each given half of a batch on its own thread,
    /// joined by a reducer that sums their buffers, compute what one layer computes on the whole batch:
    /// the same outputs, input gradients and running statistics, and weight/bias gradients that add up
    /// to the whole batch's. Without the reducer the halves' outputs differ (the test can fail).
    func testAReducerThatSumsTwoHalvesReproducesTheWholeBatch() throws {
        let savedThreads = Threads.count
        Threads.count = 1  // the two "ranks" are threads: each runs its kernels on itself, not on the shared pool
        defer { Threads.count = savedThreads }
        let (B, C, H, W) = (6, 3, 4, 5)
        var g = RandomGenerator(seed: 11)
        let x = Tensor.randn([B, C, H, W], generator: &g) * 2 + 1
        let upstream = Tensor.randn([B, C, H, W], generator: &g)  // dy of the loss Σ y·upstream
        let weight: [Float] = [1.5, -0.5, 0.75], bias: [Float] = [0.25, 2, -1]
        func layer() -> BatchNorm2d {
            let bn = BatchNorm2d(C, momentum: 0.2)
            bn.weight!.mutablePointer.update(from: weight, count: C)
            bn.bias!.mutablePointer.update(from: bias, count: C)
            bn.runningMean!.mutablePointer.update(from: [0.1, -0.2, 0.3], count: C)
            bn.runningVar!.mutablePointer.update(from: [1, 2, 0.5], count: C)
            return bn
        }

        let whole = layer()
        let xWhole = x.detachedCopy()
        xWhole.requiresGrad = true
        let yWhole = whole(xWhole)
        (yWhole * upstream).sum().backward()

        let sum = TwoThreadSum()
        let halves = [0..<4, 4..<6]  // unequal parts: the counts travel with the sums
        let parts = halves.map { rows in
            let bn = layer()
            bn.statisticsReducer = { sum.reduce($0, $1) }
            return Part(bn: bn, x: x.slice(axis: 0, rows).detachedCopy(), dy: upstream.slice(axis: 0, rows).detachedCopy())
        }
        let done = DispatchGroup()
        for part in parts {
            done.enter()
            Thread {
                let y = part.bn(part.x)
                (y * part.dy).sum().backward()
                part.y = y
                done.leave()
            }.start()
        }
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "the two parts did not finish (a reducer call without a partner?)")
        // forward: the sums and counts, then the squared deviations; backward: Σdy and Σdy·(x − mean)
        XCTAssertEqual(sum.counts, [C + 1, C + 1, C, C, 2 * C, 2 * C])

        for (k, rows) in halves.enumerated() {
            let part = parts[k]
            let y = try XCTUnwrap(part.y)
            assertClose(y.scalars, yWhole.slice(axis: 0, rows).detachedCopy().scalars, rtol: 1e-5, atol: 1e-5, "y of part \(k)")
            assertClose(part.x.grad!.scalars, xWhole.grad!.slice(axis: 0, rows).detachedCopy().scalars, rtol: 1e-4, atol: 1e-5,
                        "dx of part \(k)")
            assertClose(part.bn.runningMean!.scalars, whole.runningMean!.scalars, rtol: 1e-5, atol: 1e-6, "running mean of part \(k)")
            assertClose(part.bn.runningVar!.scalars, whole.runningVar!.scalars, rtol: 1e-5, atol: 1e-6, "running var of part \(k)")
        }
        // each part's weight and bias gradients are its own rows' share: together the whole batch's
        let dWeight = zip(parts[0].bn.weight!.grad!.scalars, parts[1].bn.weight!.grad!.scalars).map { $0 + $1 }
        let dBias = zip(parts[0].bn.bias!.grad!.scalars, parts[1].bn.bias!.grad!.scalars).map { $0 + $1 }
        assertClose(dWeight, whole.weight!.grad!.scalars, rtol: 1e-4, atol: 1e-5, "dweight")
        assertClose(dBias, whole.bias!.grad!.scalars, rtol: 1e-4, atol: 1e-5, "dbias")

        // the same half alone normalises with its own statistics: a different output
        let alone = layer()
        let yAlone = alone(x.slice(axis: 0, halves[1]).detachedCopy())
        let largest = zip(yAlone.scalars, parts[1].y!.scalars).map { abs($0 - $1) }.max()!
        XCTAssertGreaterThan(largest, 0.01, "without the reducer the half's statistics are its own")
    }

    /// In evaluation mode the layer normalises with its running statistics and never calls the reducer
    /// (rank 0 alone draws progress samples: a call there would wait for partners that never come).
    func testEvaluationModeNeverCallsTheReducer() {
        let bn = BatchNorm2d(2)
        var calls = 0
        bn.statisticsReducer = { _, _ in calls += 1 }
        bn.eval()
        var g = RandomGenerator(seed: 3)
        let y = bn(Tensor.randn([4, 2, 3, 3], generator: &g))
        XCTAssertEqual(calls, 0)
        XCTAssertEqual(y.shape, [4, 2, 3, 3])
        bn.train()
        _ = bn(Tensor.randn([4, 2, 3, 3], generator: &g))
        XCTAssertEqual(calls, 2, "training: the sums and counts, then the squared deviations")
    }
}
