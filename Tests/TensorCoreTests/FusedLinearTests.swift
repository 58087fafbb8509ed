import XCTest
import TensorCore

/// layerNormLinear and geluLinear: the same values and gradients as the two ops they fuse, finite-
/// difference checks, and the memory they exist to save (what stays alive between forward and backward).
final class FusedLinearTests: XCTestCase {
    func testLayerNormLinearGradients() {
        let x = randomTensor([2, 3, 6], seed: 31), nw = randomTensor([6], seed: 32), nb = randomTensor([6], seed: 33)
        let w = randomTensor([5, 6], seed: 34), b = randomTensor([5], seed: 35)
        assertGradientsMatch([x, nw, nb, w, b], eps: 1e-3) {
            layerNormLinear($0[0], normWeight: $0[1], normBias: $0[2], weight: $0[3], bias: $0[4])
        }
        assertGradientsMatch([x, w], eps: 1e-3) { layerNormLinear($0[0], normWeight: nil, normBias: nil, weight: $0[1], bias: nil) }
    }

    func testLayerNormLinearMatchesTheTwoOps() {
        let norm = LayerNorm(6), lin = Linear(6, 5, generator: &rng)
        norm.weight.mutablePointer.update(from: randomTensor([6], seed: 36).pointer, count: 6)
        let x = randomTensor([4, 6], seed: 37)
        let fused = gradients(of: { layerNormLinear($0, norm: norm, linear: lin) }, x, [norm.weight, norm.bias!, lin.weight, lin.bias!])
        let plain = gradients(of: { lin(norm($0)) }, x, [norm.weight, norm.bias!, lin.weight, lin.bias!])
        XCTAssertEqual(fused.out, plain.out, "same kernels and products: identical values")
        for (i, (a, b)) in zip(fused.grads, plain.grads).enumerated() { assertClose(a, b, rtol: 1e-5, atol: 1e-6, "gradient \(i)") }
    }

    func testGeluLinearGradients() {
        let h = randomTensor([3, 4, 8], seed: 41), w = randomTensor([5, 8], seed: 42), b = randomTensor([5], seed: 43)
        for approximate in [false, true] {
            for blockRows in [5, 12, 100] {  // 12 rows: blocks of 5, 5, 2; one block; one block larger than the input
                assertGradientsMatch([h, w, b], eps: 1e-3) {
                    geluLinear($0[0], weight: $0[1], bias: $0[2], approximate: approximate, blockRows: blockRows)
                }
            }
        }
    }

    /// When h is an intermediate nothing else holds, backward writes dh over h's buffer (the in-place
    /// GELU derivative): the gradients must be the same as through a fresh buffer.
    func testGeluLinearGradientsWhenItOwnsItsInput() {
        let x = randomTensor([3, 4, 8], seed: 45), w = randomTensor([5, 8], seed: 46)
        for approximate in [false, true] {
            assertGradientsMatch([x, w], eps: 1e-3) {
                geluLinear($0[0] * 1.5, weight: $0[1], bias: nil, approximate: approximate, blockRows: 5)
            }
        }
        // while someone still holds h, its values survive backward
        x.requiresGrad = true
        let h = x * 1.5
        let before = h.scalars
        geluLinear(h, weight: w, bias: nil, blockRows: 5).backward(randomTensor([3, 4, 5], seed: 47))
        XCTAssertEqual(h.scalars, before, "h was overwritten although the caller still holds it")
    }

    /// With h an intermediate it alone holds, backward makes dh in h's buffer: no (rows, K) buffer
    /// is allocated while backward runs. (h = bias row + a constant, so the rest of backward is small.)
    func testGeluLinearBackwardReusesAnUnsharedInput() {
        let row = randomTensor([1, 64], seed: 57), offsets = randomTensor([256, 64], seed: 58)
        row.requiresGrad = true
        let w = randomTensor([16, 64], seed: 59)
        let out = geluLinear(row + offsets, weight: w, bias: nil, blockRows: 32)
        TensorMemory.resetPeak()
        let before = TensorMemory.liveBytes
        out.backward(Tensor.ones(out.shape))
        // a fresh dh would be 64 KB; the block scratch is 8 KB
        XCTAssertLessThan(TensorMemory.peakLiveBytes - before, 32 * 1024, "dh took a new buffer instead of h's")
        XCTAssertEqual(row.grad?.shape, [1, 64])
    }

    /// Fused causal attention over a qkv that nothing else holds writes dqkv over it, head by head:
    /// the same gradients, bit for bit, as when the caller keeps qkv (a fresh buffer).
    func testCausalAttentionOverwritingItsInputGivesTheSameGradients() {
        let x = randomTensor([2, 7, 3 * 8], seed: 61)
        let r = randomTensor([2, 7, 8], seed: 62)
        func grad(keepingQKV: Bool) -> [Float] {
            let input = x.detachedCopy()
            input.requiresGrad = true
            var kept: Tensor? = nil
            let out: Tensor
            if keepingQKV { kept = input * 1.5; out = causalSelfAttention(qkv: kept!, heads: 2) }
            else { out = causalSelfAttention(qkv: input * 1.5, heads: 2) }
            let before = kept?.scalars
            out.backward(r)
            if let kept { XCTAssertEqual(kept.scalars, before, "a qkv someone holds was overwritten") }
            return input.grad!.scalars
        }
        XCTAssertEqual(grad(keepingQKV: false), grad(keepingQKV: true))
        let w = randomTensor([2, 7, 3 * 8], seed: 63)
        assertGradientsMatch([w], eps: 1e-3) { causalSelfAttention(qkv: $0[0] * 1.5, heads: 2) }
    }

    func testGeluLinearMatchesTheTwoOps() {
        let lin = Linear(8, 5, generator: &rng)
        let h = randomTensor([12, 8], seed: 44)
        let plain = gradients(of: { lin($0.gelu()) }, h, [lin.weight, lin.bias!])
        for blockRows in [5, 12, 256] {
            let fused = gradients(of: { geluLinear($0, weight: lin.weight, bias: lin.bias, blockRows: blockRows) }, h, [lin.weight, lin.bias!])
            assertClose(fused.out, plain.out, rtol: 1e-6, atol: 1e-7, "output, blocks of \(blockRows)")
            for (i, (a, b)) in zip(fused.grads, plain.grads).enumerated() { assertClose(a, b, rtol: 1e-5, atol: 1e-6, "gradient \(i), blocks of \(blockRows)") }
        }
    }

    /// Between forward and backward, linear(layerNorm(x)) keeps a normalized copy of x; the fused op
    /// keeps only x (held by the caller) and two floats per row.
    func testLayerNormLinearKeepsNoNormalizedCopy() {
        let x = randomTensor([256, 64], seed: 51)  // 16K floats: a size class of its own
        x.requiresGrad = true
        let w = randomTensor([16, 64], seed: 52)
        w.requiresGrad = true
        let plain = keptBytes { linear(layerNorm(x, weight: nil, bias: nil), w) }
        let fused = keptBytes { layerNormLinear(x, normWeight: nil, normBias: nil, weight: w, bias: nil) }
        XCTAssertGreaterThanOrEqual(plain - fused, 256 * 64 * 4, "the fused op should not keep the normalized (256, 64) rows")
        XCTAssertLessThanOrEqual(fused, 256 * 16 * 4 + 2 * 256 * 4 + 2 * 64, "output + mean/rstd only")
    }

    /// linear(gelu(h)) keeps gelu(h) (h's size) until backward; the fused op keeps nothing but h.
    func testGeluLinearKeepsNoActivationCopy() {
        let h = randomTensor([256, 64], seed: 53)
        h.requiresGrad = true
        let w = randomTensor([16, 64], seed: 54)
        w.requiresGrad = true
        let plain = keptBytes { linear(h.gelu(), w) }
        let fused = keptBytes { geluLinear(h, weight: w, bias: nil, blockRows: 32) }
        XCTAssertGreaterThanOrEqual(plain - fused, 256 * 64 * 4, "the fused op should not keep gelu(h)")
        XCTAssertLessThanOrEqual(fused, 256 * 16 * 4 + 64, "the output only")
    }

    /// The graph keeps no input alive by itself: an add saves nothing, so the product it sums is freed
    /// as soon as the add has run, and backward still reaches the leaf through it.
    func testAddKeepsNeitherInput() {
        let x = randomTensor([128, 128], seed: 55)  // 16K floats
        x.requiresGrad = true
        let kept = keptBytes { x * 2 + x }
        XCTAssertLessThanOrEqual(kept, 128 * 128 * 4 + 64, "x * 2 should be freed once the add has used it")
        let y = x * 2 + x
        y.backward(Tensor.ones(y.shape))
        XCTAssertEqual(x.grad?.scalars, [Float](repeating: 3, count: x.count))
    }

    /// Backward releases each op's saved tensors: afterwards only the output and the leaf's gradient remain.
    func testBackwardReleasesSavedTensors() {
        let x = randomTensor([128, 128], seed: 56)
        x.requiresGrad = true
        let before = TensorMemory.liveBytes
        var y: Tensor? = (x * 2).gelu().gelu().gelu()  // each GELU keeps its input
        XCTAssertGreaterThanOrEqual(TensorMemory.liveBytes - before, 4 * 128 * 128 * 4, "forward keeps three GELU inputs and y")
        y!.backward(Tensor.ones(x.shape))
        XCTAssertLessThanOrEqual(TensorMemory.liveBytes - before, 2 * 128 * 128 * 4 + 64, "y and x.grad only")
        y = nil
        XCTAssertNotNil(x.grad)
    }

    // MARK: helpers

    private var rng = RandomGenerator(seed: 30)

    private func linear(_ x: Tensor, _ w: Tensor) -> Tensor { x.matmul(w, transposeB: true) }

    /// Bytes of tensor memory still alive once `body`'s result exists and every temporary is gone.
    private func keptBytes(_ body: () -> Tensor) -> Int {
        let before = TensorMemory.liveBytes
        let out = body()
        let kept = TensorMemory.liveBytes - before
        withExtendedLifetime(out) {}
        return kept
    }

    /// Output values and the gradients of Σ out·r for the input and the given parameters.
    private func gradients(of f: (Tensor) -> Tensor, _ x: Tensor, _ params: [Tensor]) -> (out: [Float], grads: [[Float]]) {
        let input = x.detachedCopy()
        input.requiresGrad = true
        for p in params { p.grad = nil }
        let out = f(input)
        out.backward(randomTensor(out.shape, seed: 99))
        let grads = [input.grad!.scalars] + params.map { $0.grad!.scalars }
        for p in params { p.grad = nil }
        return (out.scalars, grads)
    }
}
