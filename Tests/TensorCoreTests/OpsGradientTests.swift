import XCTest
import TensorCore

/// Finite-difference checks for every differentiable op in Ops/Elementwise, Reduce, Shape, Matmul, NN.
final class OpsGradientTests: XCTestCase {
    override class func setUp() { BLAS.configure(allowReexec: false) }

    func testBroadcastingArithmetic() {
        let a = randomTensor([2, 3, 4], seed: 1), b = randomTensor([3, 1], seed: 2)
        assertGradientsMatch([a, b]) { $0[0] + $0[1] }
        assertGradientsMatch([a, b]) { $0[0] - $0[1] }
        assertGradientsMatch([a, b]) { $0[0] * $0[1] }
        let c = Tensor(shape: [4], data: [1.5, -2, 2.5, 3])
        assertGradientsMatch([a, c], eps: 1e-3) { $0[0] / $0[1] }
        assertGradientsMatch([a]) { -($0[0] * 3 + 1) / 2 - 0.5 }
        assertGradientsMatch([a]) { 1 - $0[0] }
    }

    func testUnaryMath() {
        let x = randomTensor([3, 5], seed: 3)
        let positive = x.detachedCopy().abs() + 0.5
        assertGradientsMatch([x], eps: 1e-3) { $0[0].exp() }
        assertGradientsMatch([positive], eps: 1e-3) { $0[0].log() }
        assertGradientsMatch([positive], eps: 1e-3) { $0[0].sqrt() }
        assertGradientsMatch([positive], eps: 1e-3) { $0[0].pow(1.7) }
        assertGradientsMatch([x]) { $0[0].square() }
        assertGradientsMatch([x], eps: 1e-3) { $0[0].tanh() }
        assertGradientsMatch([x], eps: 1e-3) { $0[0].sigmoid() }
        assertGradientsMatch([x], eps: 1e-3) { $0[0].gelu(approximate: true) }
        assertGradientsMatch([x], eps: 1e-3) { $0[0].gelu(approximate: false) }
        // piecewise ops: keep inputs away from the kinks
        let away = Tensor(shape: [6], data: [-2, -0.7, -0.3, 0.4, 0.9, 2.2])
        assertGradientsMatch([away], eps: 1e-3) { $0[0].relu() }
        assertGradientsMatch([away], eps: 1e-3) { $0[0].leakyRelu(0.2) }
        assertGradientsMatch([away], eps: 1e-3) { $0[0].abs() }
        assertGradientsMatch([away], eps: 1e-3) { $0[0].clamped(min: -1, max: 1) }
    }

    func testReductions() {
        let x = randomTensor([2, 3, 4], seed: 4)
        assertGradientsMatch([x]) { $0[0].sum() }
        assertGradientsMatch([x]) { $0[0].mean() }
        assertGradientsMatch([x]) { $0[0].sum(axis: 1) }
        assertGradientsMatch([x]) { $0[0].sum(axes: [0, 2], keepDims: true) }
        assertGradientsMatch([x]) { $0[0].mean(axis: -1, keepDims: true) }
        assertGradientsMatch([x], eps: 1e-3) { $0[0].max(axis: 1) }
        assertGradientsMatch([randomTensor([3, 1], seed: 5)]) { $0[0].expanded(to: [2, 3, 4]) }
    }

    func testShapeOps() {
        let x = randomTensor([2, 3, 4], seed: 6)
        assertGradientsMatch([x]) { $0[0].reshaped([4, -1]) * $0[0].reshaped([4, 6]) }
        assertGradientsMatch([x]) { $0[0].permuted([2, 0, 1]) }
        assertGradientsMatch([x]) { $0[0].transposed(0, 1) }
        assertGradientsMatch([x]) { $0[0].slice(axis: 2, 1..<3) }
        assertGradientsMatch([x]) { $0[0][1] }
        let y = randomTensor([2, 2, 4], seed: 7)
        assertGradientsMatch([x, y]) { Tensor.concat([$0[0], $0[1]], axis: 1) }
        assertGradientsMatch([x, x.detachedCopy()]) { Tensor.stack([$0[0], $0[1]], axis: 1) }
        assertGradientsMatch([x]) { $0[0].split([1, 3], axis: 2)[1] }
        assertGradientsMatch([randomTensor([4, 3], seed: 8)]) { $0[0].indexSelect([3, 0, 3, 1]) }
    }

    func testMatmulAllLayouts() {
        for ta in [false, true] {
            for tb in [false, true] {
                let a = randomTensor(ta ? [4, 3] : [3, 4], seed: 9), b = randomTensor(tb ? [5, 4] : [4, 5], seed: 10)
                assertGradientsMatch([a, b]) { $0[0].matmul($0[1], transposeA: ta, transposeB: tb) }
                let ba = randomTensor(ta ? [2, 4, 3] : [2, 3, 4], seed: 11), bb = randomTensor(tb ? [2, 5, 4] : [2, 4, 5], seed: 12)
                assertGradientsMatch([ba, bb]) { $0[0].matmul($0[1], transposeA: ta, transposeB: tb) }
            }
        }
        // batched input times a 2-D weight (a Linear layer's x·Wᵀ)
        assertGradientsMatch([randomTensor([2, 3, 4], seed: 13), randomTensor([6, 4], seed: 14)]) {
            $0[0].matmul($0[1], transposeB: true)
        }
    }

    func testSoftmaxFamily() {
        let x = randomTensor([3, 6], seed: 15)
        assertGradientsMatch([x], eps: 1e-3) { $0[0].softmax() }
        assertGradientsMatch([x], eps: 1e-3) { $0[0].logSoftmax() }
        assertGradientsMatch([randomTensor([3, 4, 2], seed: 16)], eps: 1e-3) { $0[0].softmax(axis: 1) }
        assertGradientsMatch([x], eps: 1e-3) { crossEntropy($0[0], targets: [2, -100, 5]) }
        assertGradientsMatch([x], eps: 1e-3) { crossEntropy($0[0], targets: [0, 1, 5]) }
    }

    func testLayerNormEmbeddingDropout() {
        let x = randomTensor([4, 6], seed: 17), w = randomTensor([6], seed: 18), b = randomTensor([6], seed: 19)
        assertGradientsMatch([x, w, b], eps: 1e-3) { layerNorm($0[0], weight: $0[1], bias: $0[2]) }
        assertGradientsMatch([x], eps: 1e-3) { layerNorm($0[0], weight: nil, bias: nil) }
        let table = randomTensor([5, 3], seed: 20)
        assertGradientsMatch([table]) { embedding($0[0], [4, 0, 4, 2, 1, 4], shape: [2, 3]) }
        // dropout with a fixed generator state: the mask is the same in every evaluation
        assertGradientsMatch([x]) { inputs in
            var g = RandomGenerator(seed: 3)
            return dropout(inputs[0], p: 0.3, training: true, generator: &g)
        }
    }

    func testAttention() {
        let q = randomTensor([2, 2, 5, 3], seed: 21), k = randomTensor([2, 2, 5, 3], seed: 22), v = randomTensor([2, 2, 5, 3], seed: 23)
        assertGradientsMatch([q, k, v], eps: 1e-3) { scaledDotProductAttention($0[0], $0[1], $0[2], causal: true) }
        assertGradientsMatch([q, k, v], eps: 1e-3) { scaledDotProductAttention($0[0], $0[1], $0[2], causal: false) }
        let qkv = randomTensor([2, 5, 12], seed: 24)
        assertGradientsMatch([qkv], eps: 1e-3) { causalSelfAttention(qkv: $0[0], heads: 2) }
        // attention-probability dropout with a fixed generator state: the same mask in every evaluation
        assertGradientsMatch([q, k, v], eps: 1e-3) { inputs in
            var g = RandomGenerator(seed: 5)
            return scaledDotProductAttention(inputs[0], inputs[1], inputs[2], causal: false, dropout: 0.3, generator: &g)
        }
        assertGradientsMatch([qkv], eps: 1e-3) { inputs in
            var g = RandomGenerator(seed: 6)
            return causalSelfAttention(qkv: inputs[0], heads: 2, dropout: 0.3, generator: &g)
        }
    }

    /// Dropout zeroes about p of the elements, scales the rest by 1/(1-p), draws one number per call,
    /// and gives the same mask for the same generator state at any thread count.
    func testDropoutMask() {
        let x = Tensor(shape: [64, 1000]) { b in for i in 0..<b.count { b[i] = Float(i % 7) + 1 } }
        var g = RandomGenerator(seed: 11)
        let before = g
        let y = dropout(x, p: 0.4, training: true, generator: &g).scalars
        var expected = before
        _ = expected.next()
        XCTAssertEqual(g, expected, "one draw per call")
        var zeros = 0
        for i in 0..<y.count {
            if y[i] == 0 { zeros += 1 } else { XCTAssertEqual(y[i], x.scalars[i] / 0.6, accuracy: 1e-5) }
        }
        XCTAssertEqual(Double(zeros) / Double(y.count), 0.4, accuracy: 0.01)
        let saved = Threads.count
        defer { Threads.count = saved }
        for threads in [1, 3] {
            Threads.count = threads
            var again = before
            XCTAssertEqual(dropout(x, p: 0.4, training: true, generator: &again).scalars, y, "\(threads) threads")
        }
        var eval = before
        XCTAssertTrue(dropout(x, p: 0.4, training: false, generator: &eval) === x)
        XCTAssertEqual(eval, before, "evaluation draws nothing")
    }

    /// p = 1, which `Dropout` accepts, behaves as `torch.nn.functional.dropout(x, 1.0)`: zeros with a zero
    /// gradient in training, no draw, and the identity in evaluation (it used to trap in both modes).
    func testDropoutProbabilityOne() {
        let x = randomTensor([3, 5], seed: 42)
        var g = RandomGenerator(seed: 12)
        let before = g
        XCTAssertEqual(dropout(x, p: 1, training: true, generator: &g).scalars, [Float](repeating: 0, count: 15))
        XCTAssertEqual(g, before, "p = 1 draws nothing")
        XCTAssertEqual(dropout(x, p: 1, training: true).scalars, [Float](repeating: 0, count: 15))
        XCTAssertTrue(dropout(x, p: 1, training: false, generator: &g) === x)
        assertGradientsMatch([x]) { inputs in
            var g = RandomGenerator(seed: 3)
            return dropout(inputs[0], p: 1, training: true, generator: &g)
        }
        x.requiresGrad = true
        x.grad = nil
        let layer = Dropout(1.0)
        layer.forward(x).sum().backward()
        XCTAssertEqual(x.grad?.scalars, [Float](repeating: 0, count: 15), "training: gradient zero")
        layer.isTraining = false
        XCTAssertTrue(layer.forward(x) === x, "evaluation: the identity")
    }

    /// Attention dropout zeroes about p of the probabilities, scales the rest by 1/(1-p), draws one
    /// number from the generator per call, and p = 0 is the plain op.
    func testAttentionDropout() {
        let (B, H, T) = (2, 3, 64)
        // v = identity per head, so y is the (dropped) probability matrix itself
        let qk = randomTensor([B, H, T, T], seed: 40), kk = randomTensor([B, H, T, T], seed: 41)
        let v = Tensor(shape: [B, H, T, T]) { b in
            b.update(repeating: 0)  // `fill` starts from undefined memory
            for h in 0..<(B * H) { for t in 0..<T { b[(h * T + t) * T + t] = 1 } }
        }
        let plain = scaledDotProductAttention(qk, kk, v, causal: false).scalars
        var g = RandomGenerator(seed: 9)
        let before = g
        let dropped = scaledDotProductAttention(qk, kk, v, causal: false, dropout: 0.25, generator: &g).scalars
        var expectedState = before
        _ = expectedState.next()
        XCTAssertEqual(g, expectedState, "one draw per call")
        var zeros = 0
        for i in 0..<plain.count {
            if dropped[i] == 0 { zeros += 1 } else {
                XCTAssertEqual(dropped[i], plain[i] / 0.75, accuracy: 1e-6 * max(1, abs(plain[i])))
            }
        }
        let fraction = Double(zeros) / Double(plain.count)
        XCTAssertEqual(fraction, 0.25, accuracy: 0.01, "dropped fraction \(fraction)")
        // the same generator state gives the same mask; another gives another
        var again = before
        XCTAssertEqual(scaledDotProductAttention(qk, kk, v, causal: false, dropout: 0.25, generator: &again).scalars, dropped)
        var other = RandomGenerator(seed: 10)
        XCTAssertNotEqual(scaledDotProductAttention(qk, kk, v, causal: false, dropout: 0.25, generator: &other).scalars, dropped)
        var untouched = before
        XCTAssertEqual(scaledDotProductAttention(qk, kk, v, causal: false, dropout: 0, generator: &untouched).scalars, plain)
        XCTAssertEqual(untouched, before, "p = 0 draws nothing")
    }

    /// The fused (B, T, 3C) attention equals split → (B, H, T, D) → SDPA → back to (B, T, C).
    func testFusedAttentionMatchesUnfused() {
        let (B, T, C, H) = (2, 7, 8, 2)
        let qkv = randomTensor([B, T, 3 * C], seed: 25)
        let fused = causalSelfAttention(qkv: qkv, heads: H)
        let parts = qkv.split([C, C, C], axis: 2).map { $0.reshaped([B, T, H, C / H]).transposed(1, 2) }
        let reference = scaledDotProductAttention(parts[0], parts[1], parts[2], causal: true).transposed(1, 2).reshaped([B, T, C])
        assertClose(fused.scalars, reference.scalars, rtol: 1e-5, atol: 1e-6)
    }

    /// A token's attention output does not depend on later tokens.
    func testCausalMask() {
        let qkv = randomTensor([1, 6, 12], seed: 26)
        let y1 = causalSelfAttention(qkv: qkv, heads: 2)
        let changed = qkv.detachedCopy()
        for j in 0..<12 { changed.mutablePointer[5 * 12 + j] += 3 }  // change the last token
        let y2 = causalSelfAttention(qkv: changed, heads: 2)
        XCTAssertEqual(Array(y1.scalars[0..<(5 * 4)]), Array(y2.scalars[0..<(5 * 4)]))
        XCTAssertNotEqual(Array(y1.scalars[(5 * 4)...]), Array(y2.scalars[(5 * 4)...]))
    }
}

final class AttentionReferenceTests: XCTestCase {
    /// The attention op against the same math written with matmul + softmax ops (values and gradients).
    func testAttentionMatchesComposite() {
        for causal in [false, true] {
            let q = randomTensor([2, 2, 5, 3], seed: 31), k = randomTensor([2, 2, 5, 3], seed: 32), v = randomTensor([2, 2, 5, 3], seed: 33)
            for t in [q, k, v] { t.requiresGrad = true }
            let y = scaledDotProductAttention(q, k, v, causal: causal)
            let r = randomTensor(y.shape, seed: 34)
            (y * r).sum().backward()
            let grads = [q, k, v].map { $0.grad!.scalars }
            for t in [q, k, v] { t.grad = nil }
            var s = q.matmul(k, transposeB: true) * (1 / Float(3).squareRoot())
            if causal {
                let mask = Tensor(shape: [5, 5]) { b in for i in 0..<5 { for j in 0..<5 { b[i * 5 + j] = j > i ? -1e9 : 0 } } }
                s = s + mask
            }
            let y2 = s.softmax().matmul(v)
            (y2 * r).sum().backward()
            assertClose(y.scalars, y2.scalars, rtol: 1e-5, atol: 1e-6, "forward causal=\(causal)")
            for (i, t) in [q, k, v].enumerated() { assertClose(grads[i], t.grad!.scalars, rtol: 1e-4, atol: 1e-5, "grad \(i) causal=\(causal)") }
        }
    }
}
