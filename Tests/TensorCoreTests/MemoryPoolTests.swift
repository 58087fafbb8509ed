import XCTest
import TensorCore

final class MemoryPoolTests: XCTestCase {
    /// After warm-up, a training step (forward, backward, AdamW) takes every buffer from the pool.
    func testTrainingStepReusesBuffers() {
        var rng = RandomGenerator(seed: 3)
        let l1 = Linear(32, 64, generator: &rng), l2 = Linear(64, 10, generator: &rng)
        let params = l1.parameters + l2.parameters
        let opt = AdamW(params, learningRate: 1e-3)
        let x = Tensor.randn([16, 32], generator: &rng)
        let targets: [Int32] = (0..<16).map { Int32($0 % 10) }
        func step() -> Float {
            let loss = crossEntropy(l2(l1(x).gelu()), targets: targets)
            loss.backward()
            opt.step()
            for p in params { p.grad = nil }
            return loss.item
        }
        let first = step()
        for _ in 0..<2 { _ = step() }
        let before = TensorMemory.freshAllocations
        var last: Float = 0
        for _ in 0..<5 { last = step() }
        XCTAssertEqual(TensorMemory.freshAllocations, before, "steps after warm-up allocated new buffers")
        XCTAssertLessThan(last, first)
    }
}
