import XCTest
import CKernels
import TensorCore

/// Forge's own GEMM (gemm.c, `fk_view_gemm`): every micro-kernel level the CPU runs against a naive Double
/// product, on odd shapes (edge tiles on both sides, K not a multiple of the K slice), every transpose, the
/// image and im2col operand views, accumulation, the row bias and the image output; bit-identical results
/// whatever the thread count; and the conv layers on both backends.
final class GEMMTests: XCTestCase {
    /// The levels to check here: the ones this CPU runs (0 baseline, 1 avx2, 2 avx512).
    private var levels: [Int32] { (0...2).filter { fk_gemm_set_level($0) != 0 } }

    override func tearDown() {
        _ = fk_gemm_set_level(-1)
        super.tearDown()
    }

    private func randomFloats(_ n: Int, seed: UInt64) -> [Float] { randomTensor([max(n, 1)], seed: seed).scalars }

    /// Element (r, c) of an operand view, straight from fk_view's definition.
    private func element(_ v: fk_view, _ r: Int, _ c: Int) -> Double {
        let (r, c) = v.trans != 0 ? (c, r) : (r, c)
        switch Int(v.kind) {
        case Int(FK_VIEW_MATRIX): return Double(v.p[r * v.ld + c])
        case Int(FK_VIEW_IMAGES): return Double(v.p[(c / v.pixels) * v.image_stride + r * v.pixels + c % v.pixels])
        default:
            let area = v.KH * v.KW, ch = r / area, kh = (r / v.KW) % v.KH, kw = r % v.KW
            let P = v.OH * v.OW, img = c / P, oh = (c % P) / v.OW, ow = c % v.OW
            let ih = oh * v.sh - v.ph + kh, iw = ow * v.sw - v.pw + kw
            if ih < 0 || ih >= v.H || iw < 0 || iw >= v.W { return 0 }
            return Double(v.p[((img * v.C + ch) * v.H + ih) * v.W + iw])
        }
    }

    /// Runs fk_view_gemm into `out` (a buffer laid out as `o` says) and checks every element against Σ in Double.
    private func check(_ a: fk_view, _ b: fk_view, m: Int, n: Int, k: Int, pixels: Int = 0, accumulate: Bool = false,
                       bias: [Float]? = nil, threads: Int = 2, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let images = pixels > 0 ? (n + pixels - 1) / pixels : 0
        let size = pixels > 0 ? images * m * pixels : m * n
        let initial = randomFloats(size, seed: 77)
        var out = initial
        func at(_ i: Int, _ j: Int) -> Int { pixels > 0 ? (j / pixels) * m * pixels + i * pixels + j % pixels : i * n + j }
        out.withUnsafeMutableBufferPointer { o in
            (bias ?? []).withUnsafeBufferPointer { bp in
                var a = a, b = b
                var c = fk_out(p: o.baseAddress, ld: n, pixels: pixels, image_stride: m * pixels, row_bias: bias == nil ? nil : bp.baseAddress)
                fk_view_gemm(&a, &b, &c, m, n, k, accumulate ? 1 : 0, threads)
            }
        }
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0, magnitude = 0.0
                for p in 0..<k { let t = element(a, i, p) * element(b, p, j); sum += t; magnitude += Swift.abs(t) }
                if accumulate { sum += Double(initial[at(i, j)]); magnitude += Swift.abs(Double(initial[at(i, j)])) }
                if let bias { sum += Double(bias[i]); magnitude += Swift.abs(Double(bias[i])) }
                worst = Swift.max(worst, Swift.abs(sum - Double(out[at(i, j)])) / (magnitude + 1e-6))
            }
        }
        XCTAssertLessThan(worst, 2e-6, "\(what) (level \(String(cString: fk_gemm_level_name())), \(m)x\(n)x\(k))", file: file, line: line)
    }

    func testMatrixProductsMatchDoubleReference() {
        // (M, N, K): 1×1×1, tiles cut on every side, K past one 256-deep slice, and sizes past one thread's split
        // (21, 13, 2100) and (64, 48, 5000) take the K-split path (small C, long K: a conv's weight gradient)
        let shapes = [(1, 1, 1), (7, 13, 5), (33, 65, 300), (17, 100, 513), (9, 31, 257), (130, 600, 70), (21, 13, 2100), (64, 48, 5000)]
        for level in levels {
            XCTAssertEqual(fk_gemm_set_level(level), 1)
            for (s, (m, n, k)) in shapes.enumerated() {
                for transA in [false, true] {
                    for transB in [false, true] {
                        let a = randomFloats(m * k, seed: UInt64(10 + s)), b = randomFloats(k * n, seed: UInt64(20 + s))
                        a.withUnsafeBufferPointer { pa in
                            b.withUnsafeBufferPointer { pb in
                                let va = fk_view_matrix(pa.baseAddress, transA ? m : k, transA ? 1 : 0)
                                let vb = fk_view_matrix(pb.baseAddress, transB ? k : n, transB ? 1 : 0)
                                check(va, vb, m: m, n: n, k: k, accumulate: s % 2 == 1, bias: s == 3 ? randomFloats(m, seed: 5) : nil,
                                      threads: 1 + s % 2, "matrix tA \(transA) tB \(transB)")
                            }
                        }
                    }
                }
            }
        }
    }

    func testConvolutionViewsMatchDoubleReference() {
        // 3 images (5, 9, 11), a 3×4 window, stride (2, 1), padding (1, 2); and DCGAN's 4×4 / 2 / 1 on 16² planes
        struct Geometry { let n, C, H, W, KH, KW, sh, sw, ph, pw: Int
            var OH: Int { (H + 2 * ph - KH) / sh + 1 }
            var OW: Int { (W + 2 * pw - KW) / sw + 1 }
        }
        // (the third: 40 images of 8×8 outputs, so the weight gradient's K = 2560 takes the K split)
        let geometries = [Geometry(n: 3, C: 5, H: 9, W: 11, KH: 3, KW: 4, sh: 2, sw: 1, ph: 1, pw: 2),
                          Geometry(n: 2, C: 3, H: 16, W: 16, KH: 4, KW: 4, sh: 2, sw: 2, ph: 1, pw: 1),
                          Geometry(n: 40, C: 3, H: 16, W: 16, KH: 4, KW: 4, sh: 2, sw: 2, ph: 1, pw: 1)]
        for level in levels {
            XCTAssertEqual(fk_gemm_set_level(level), 1)
            for (gi, g) in geometries.enumerated() {
                let P = g.OH * g.OW, K = g.C * g.KH * g.KW, Cout = 7
                let x = randomFloats(g.n * g.C * g.H * g.W, seed: UInt64(40 + gi)), w = randomFloats(Cout * K, seed: 41)
                let dy = randomFloats(g.n * Cout * P, seed: 42)
                x.withUnsafeBufferPointer { px in
                    w.withUnsafeBufferPointer { pw in
                        dy.withUnsafeBufferPointer { pd in
                            func im2col(_ trans: Bool) -> fk_view {
                                fk_view_im2col(px.baseAddress, g.C, g.H, g.W, g.KH, g.KW, g.sh, g.sw, g.ph, g.pw, g.OH, g.OW, trans ? 1 : 0)
                            }
                            // conv forward: W (Cout, K) · im2col(x), written as images with a bias
                            check(fk_view_matrix(pw.baseAddress, K, 0), im2col(false), m: Cout, n: g.n * P, k: K, pixels: P,
                                  bias: randomFloats(Cout, seed: 43), "conv forward")
                            // conv weight gradient: dY (images) · im2col(x)ᵀ
                            check(fk_view_images(pd.baseAddress, P, Cout * P, 0), im2col(true), m: Cout, n: K, k: g.n * P,
                                  "conv weight gradient")
                            // conv input gradient's columns: Wᵀ · dY (images)
                            check(fk_view_matrix(pw.baseAddress, K, 1), fk_view_images(pd.baseAddress, P, Cout * P, 0),
                                  m: K, n: g.n * P, k: Cout, "conv input-gradient columns")
                            // images transposed as the left operand, accumulating
                            check(fk_view_images(pd.baseAddress, P, Cout * P, 1), fk_view_matrix(pw.baseAddress, K, 0),
                                  m: g.n * P, n: K, k: Cout, accumulate: true, "images transposed")
                        }
                    }
                }
            }
        }
    }

    /// Products big enough to be split over threads give the same bits on 1, 2 and 3 threads, split along
    /// N (wide C) and along M (tall C), with tiles cut at the split.
    /// fk_gemm_prepacked (a B packed once, as exact sampling packs its weights) against Σ in Double on odd
    /// shapes (edge tiles, K over two K slices), with and without accumulation, for each kernel level and
    /// on 1 and 2 threads — whose results must be the same bits.
    func testPrepackedProductsMatchDoubleReference() {
        for level in levels {
            XCTAssertEqual(fk_gemm_set_level(level), 1)
            for (m, n, k, accumulate) in [(64, 384, 128, false), (37, 70, 300, true), (1, 5, 3, false), (9, 33, 256, true)] {
                let a = randomFloats(m * k, seed: 11), w = randomFloats(n * k, seed: 12)  // W is (n, k): B = Wᵀ
                let initial = randomFloats(m * n, seed: 13)
                var results: [[Float]] = []
                for threads in [1, 2] {
                    var out = initial
                    w.withUnsafeBufferPointer { wp in
                        guard let packed = fk_packed_b_new(wp.baseAddress, k, 1, k, n) else { return XCTFail("packing failed") }
                        defer { fk_packed_b_free(packed) }
                        XCTAssertEqual(fk_packed_b_rows(packed), k)
                        XCTAssertEqual(fk_packed_b_cols(packed), n)
                        _ = fk_gemm_set_level(0)  // a later level change must not matter: the pack records its kernel
                        out.withUnsafeMutableBufferPointer { fk_gemm_prepacked(a, k, m, packed, $0.baseAddress, n, accumulate ? 1 : 0, threads) }
                        _ = fk_gemm_set_level(level)
                    }
                    results.append(out)
                }
                XCTAssertEqual(results[0], results[1], "prepacked \(m)x\(n)x\(k): 1 and 2 threads differ")
                var worst = 0.0
                for i in 0..<m {
                    for j in 0..<n {
                        var sum = accumulate ? Double(initial[i * n + j]) : 0, magnitude = Swift.abs(sum)
                        for p in 0..<k { let t = Double(a[i * k + p]) * Double(w[j * k + p]); sum += t; magnitude += Swift.abs(t) }
                        worst = Swift.max(worst, Swift.abs(sum - Double(results[0][i * n + j])) / (magnitude + 1e-6))
                    }
                }
                XCTAssertLessThan(worst, 2e-6, "prepacked level \(level), \(m)x\(n)x\(k), accumulate \(accumulate)")
            }
        }
    }

    func testResultsDoNotDependOnThreadCount() {
        for (m, n, k) in [(37, 3000, 70), (3000, 37, 70), (64, 48, 5000), (200, 40, 9000)] {
            let a = randomFloats(m * k, seed: 1), b = randomFloats(k * n, seed: 2)
            var results: [[Float]] = []
            for threads in [1, 2, 3] {
                var c = [Float](repeating: 0, count: m * n)
                a.withUnsafeBufferPointer { pa in
                    b.withUnsafeBufferPointer { pb in
                        c.withUnsafeMutableBufferPointer { pc in
                            var va = fk_view_matrix(pa.baseAddress, k, 0), vb = fk_view_matrix(pb.baseAddress, n, 0)
                            var o = fk_out(p: pc.baseAddress, ld: n, pixels: 0, image_stride: 0, row_bias: nil)
                            fk_view_gemm(&va, &vb, &o, m, n, k, 0, threads)
                        }
                    }
                }
                results.append(c)
            }
            XCTAssertEqual(results[0], results[1], "\(m)x\(n)x\(k): 1 vs 2 threads")
            XCTAssertEqual(results[0], results[2], "\(m)x\(n)x\(k): 1 vs 3 threads")
            XCTAssertNotEqual(results[0].filter { $0 != 0 }.count, 0)
        }
    }

    /// conv2d and convTranspose2d, forward and both gradients, agree between the OpenBLAS (im2col buffers)
    /// and own-GEMM (implicit im2col) backends, on a DCGAN-like layer and an odd geometry, with bias.
    func testConvBackendsAgree() {
        let saved = ConvGEMM.current
        defer { ConvGEMM.current = saved }
        // (transposed, x shape, weight shape, stride, padding)
        let cases: [(Bool, [Int], [Int], (Int, Int), (Int, Int))] = [
            (false, [3, 3, 16, 16], [8, 3, 4, 4], (2, 2), (1, 1)),
            (false, [2, 5, 9, 11], [7, 5, 3, 4], (2, 1), (1, 2)),
            (true, [3, 8, 4, 4], [8, 3, 4, 4], (2, 2), (1, 1)),
            (true, [2, 5, 5, 6], [5, 4, 3, 2], (2, 1), (1, 0)),
        ]
        for (ci, c) in cases.enumerated() {
            var outputs: [[[Float]]] = []
            for backend in [ConvGEMM.blas, .own] {
                ConvGEMM.current = backend
                let x = randomTensor(c.1, seed: UInt64(60 + ci)), w = randomTensor(c.2, seed: UInt64(70 + ci), scale: 0.3)
                let b = randomTensor([c.0 ? c.2[1] : c.2[0]], seed: 80)
                x.requiresGrad = true; w.requiresGrad = true; b.requiresGrad = true
                let y = c.0 ? convTranspose2d(x, weight: w, bias: b, stride: c.3, padding: c.4)
                            : conv2d(x, weight: w, bias: b, stride: c.3, padding: c.4)
                y.backward(randomTensor(y.shape, seed: 90))
                outputs.append([y.scalars, x.grad!.scalars, w.grad!.scalars, b.grad!.scalars])
            }
            for (t, name) in ["y", "dx", "dw", "db"].enumerated() {
                assertClose(outputs[1][t], outputs[0][t], rtol: 1e-4, atol: 1e-4, "case \(ci) \(name): own vs blas")
            }
        }
    }
}
