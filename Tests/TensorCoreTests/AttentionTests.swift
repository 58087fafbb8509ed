import XCTest
import CKernels
import TensorCore

/// The flash-style attention kernels (CKernels' fk_attention_forward / fk_attention_backward) against
/// attention written out in Double with the whole probability matrix, for tile sizes that do and do
/// not divide T, and through the Swift ops for T that spans more than one of their 64-key tiles.
final class FlashAttentionTests: XCTestCase {
    override class func setUp() { BLAS.configure(allowReexec: false) }

    /// One head in Double: out, lse and the gradients for `dout`, from the full (T, T) matrices.
    struct Reference {
        var out: [Double], lse: [Double], dq: [Double], dk: [Double], dv: [Double]
    }

    static func reference(q: [Float], k: [Float], v: [Float], dout: [Float], T: Int, D: Int, causal: Bool,
                          p: Float, seed: UInt64, maskOffset: UInt64) -> Reference {
        // Z[r, c] = mask / (1 - p), read back from the dropout kernel applied to ones
        var z = [Float](repeating: 1, count: T * T)
        if p > 0 {
            let ones = [Float](repeating: 1, count: T * T)
            fk_dropout_hashed(ones, &z, T * T, seed, maskOffset, p)
        }
        let scale = 1 / Double(D).squareRoot()
        var P = [Double](repeating: 0, count: T * T), lse = [Double](repeating: 0, count: T)
        for r in 0..<T {
            let visible = causal ? r + 1 : T
            var s = [Double](repeating: 0, count: visible)
            for c in 0..<visible {
                for d in 0..<D { s[c] += Double(q[r * D + d]) * Double(k[c * D + d]) }
                s[c] *= scale
            }
            let m = s.max()!
            let sum = s.reduce(0) { $0 + Foundation.exp($1 - m) }
            lse[r] = m + Foundation.log(sum)
            for c in 0..<visible { P[r * T + c] = Foundation.exp(s[c] - lse[r]) }
        }
        var out = [Double](repeating: 0, count: T * D)
        for r in 0..<T { for c in 0..<T { for d in 0..<D { out[r * D + d] += P[r * T + c] * Double(z[r * T + c]) * Double(v[c * D + d]) } } }
        var dq = [Double](repeating: 0, count: T * D), dk = dq, dv = dq
        for r in 0..<T {
            var dP = [Double](repeating: 0, count: T)
            for c in 0..<T {
                for d in 0..<D { dP[c] += Double(dout[r * D + d]) * Double(v[c * D + d]) }
                dP[c] *= Double(z[r * T + c])
            }
            var rowDot = 0.0
            for c in 0..<T { rowDot += P[r * T + c] * dP[c] }
            for c in 0..<T {
                let dS = P[r * T + c] * (dP[c] - rowDot) * scale
                for d in 0..<D {
                    dq[r * D + d] += dS * Double(k[c * D + d])
                    dk[c * D + d] += dS * Double(q[r * D + d])
                    dv[c * D + d] += P[r * T + c] * Double(z[r * T + c]) * Double(dout[r * D + d])
                }
            }
        }
        return Reference(out: out, lse: lse, dq: dq, dk: dk, dv: dv)
    }

    static func assertClose(_ a: [Float], _ b: [Double], tol: Double, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let scale = max(b.map { Swift.abs($0) }.max() ?? 0, 1e-6)
        var worst = 0.0, at = 0
        for i in 0..<min(a.count, b.count) where Swift.abs(Double(a[i]) - b[i]) / scale > worst {
            worst = Swift.abs(Double(a[i]) - b[i]) / scale
            at = i
        }
        XCTAssertLessThan(worst, tol, "\(what): element \(at) is \(a[at]), expected \(b[at])", file: file, line: line)
    }

    /// Every tile size (1, ragged, exact divisor, one tile, larger than T), causal or not, with and
    /// without dropout, on rows strided as in a fused (T, 3C) qkv buffer.
    func testKernelsMatchDoubleReference() {
        let (T, D, ld) = (11, 5, 3 * 5 + 2)  // q, k, v side by side, plus 2 unused columns per row
        var rng = RandomGenerator(seed: 77)
        let qkv = (0..<(T * ld)).map { _ in rng.nextNormal() }
        let dout = (0..<(T * D)).map { _ in rng.nextNormal() }
        func column(_ offset: Int) -> [Float] { (0..<(T * D)).map { qkv[($0 / D) * ld + offset + $0 % D] } }
        let (q, k, v) = (column(0), column(D), column(2 * D))
        for causal in [true, false] {
            for p: Float in [0, 0.3] {
                let seed: UInt64 = 12345, maskOffset: UInt64 = 3 * UInt64(T * T)
                let ref = Self.reference(q: q, k: k, v: v, dout: dout, T: T, D: D, causal: causal, p: p, seed: seed, maskOffset: maskOffset)
                for tile in [1, 3, 4, 11, 16] {
                    let what = "causal \(causal) p \(p) tile \(tile)"
                    var out = [Float](repeating: .nan, count: T * D), lse = [Float](repeating: .nan, count: T)
                    qkv.withUnsafeBufferPointer { x in
                        XCTAssertEqual(fk_attention_forward(x.baseAddress!, x.baseAddress! + D, x.baseAddress! + 2 * D, ld, &out, D, &lse,
                                                            T, D, causal ? 1 : 0, p, seed, maskOffset, tile), 1)
                    }
                    Self.assertClose(out, ref.out, tol: 1e-5, "out, \(what)")
                    Self.assertClose(lse, ref.lse, tol: 1e-5, "lse, \(what)")
                    var grad = [Float](repeating: 0, count: T * ld)
                    grad.withUnsafeMutableBufferPointer { g in
                        qkv.withUnsafeBufferPointer { x in
                            XCTAssertEqual(fk_attention_backward(x.baseAddress!, x.baseAddress! + D, x.baseAddress! + 2 * D, ld, out, dout, D, lse,
                                                                 g.baseAddress!, g.baseAddress! + D, g.baseAddress! + 2 * D, T, D, causal ? 1 : 0,
                                                                 p, seed, maskOffset, tile), 1)
                        }
                    }
                    func gradColumn(_ offset: Int) -> [Float] { (0..<(T * D)).map { grad[($0 / D) * ld + offset + $0 % D] } }
                    Self.assertClose(gradColumn(0), ref.dq, tol: 1e-5, "dq, \(what)")
                    Self.assertClose(gradColumn(D), ref.dk, tol: 1e-5, "dk, \(what)")
                    Self.assertClose(gradColumn(2 * D), ref.dv, tol: 1e-5, "dv, \(what)")
                    XCTAssertEqual((0..<T).flatMap { r in grad[(r * ld + 3 * D)..<((r + 1) * ld)] }, [Float](repeating: 0, count: 2 * T),
                                   "columns outside q, k, v untouched, \(what)")
                }
            }
        }
    }

    /// Finite differences through the Swift ops with T = 67: two 64-key tiles, the second ragged.
    func testGradientsAcrossTiles() {
        let T = 67
        let qkv = randomTensor([1, T, 6], seed: 51)
        assertGradientsMatch([qkv], eps: 1e-3) { causalSelfAttention(qkv: $0[0], heads: 1) }
        assertGradientsMatch([qkv], eps: 1e-3) { inputs in
            var g = RandomGenerator(seed: 52)
            return causalSelfAttention(qkv: inputs[0], heads: 1, dropout: 0.2, generator: &g)
        }
        let q = randomTensor([1, 2, T, 2], seed: 53), k = randomTensor([1, 2, T, 2], seed: 54), v = randomTensor([1, 2, T, 2], seed: 55)
        assertGradientsMatch([q, k, v], eps: 1e-3) { scaledDotProductAttention($0[0], $0[1], $0[2], causal: true) }
        assertGradientsMatch([q, k, v], eps: 1e-3) { inputs in
            var g = RandomGenerator(seed: 56)
            return scaledDotProductAttention(inputs[0], inputs[1], inputs[2], causal: false, dropout: 0.2, generator: &g)
        }
    }

    /// Heads run in parallel, each whole on one thread: values and gradients repeat bit for bit at
    /// any thread count, dropout included.
    func testSameResultsAtAnyThreadCount() {
        let qkv = randomTensor([3, 70, 24], seed: 61)
        func run() -> ([Float], [Float]) {
            qkv.requiresGrad = true
            qkv.grad = nil
            var g = RandomGenerator(seed: 62)
            let y = causalSelfAttention(qkv: qkv, heads: 4, dropout: 0.1, generator: &g)
            (y * randomTensor(y.shape, seed: 63)).sum().backward()
            return (y.scalars, qkv.grad!.scalars)
        }
        let saved = Threads.count
        defer { Threads.count = saved }
        Threads.count = 1
        let one = run()
        Threads.count = 3
        let three = run()
        XCTAssertEqual(one.0, three.0)
        XCTAssertEqual(one.1, three.1)
        XCTAssertFalse(one.1.allSatisfy { $0 == 0 })
    }

    /// What forward keeps for backward: the output and (B·H, T) log-sum-exps, no (T, T) matrix.
    /// The pool is emptied and then given one buffer of each of those two sizes, so a forward that
    /// allocates anything else (the old code's (B·H, T, T) probabilities) has to go to malloc.
    func testForwardKeepsNoScoreMatrix() {
        let (B, T, C, H) = (2, 128, 8, 2)
        let qkv = randomTensor([B, T, 3 * C], seed: 71)
        qkv.requiresGrad = true
        TensorMemory.trim()
        do {
            let out = Tensor.zeros([B, T, C]), lse = Tensor.zeros([B * H, T])
            XCTAssertEqual(out.count + lse.count, B * T * C + B * H * T)  // both return to the pool here
        }
        let before = TensorMemory.freshAllocations
        let y = causalSelfAttention(qkv: qkv, heads: H)
        XCTAssertEqual(TensorMemory.freshAllocations - before, 0, "forward allocated more than out \(y.shape) and lse [\(B * H), \(T)]")
        y.sum().backward()
        XCTAssertEqual(qkv.grad?.shape, qkv.shape)
    }
}
