import XCTest
import CKernels
import Foundation
import TensorCore

// MARK: - shared helpers for ConvTests / PoolTests / BatchNormTests

/// One PyTorch reference case written by Fixtures/make_conv_fixtures.py: Fixtures/conv/<case>.json holds the
/// shapes, <case>.<name>.bin the raw little-endian float32 values.
struct ConvFixture {
    let tensors: [String: Tensor]
    let params: [String: Any]

    init(_ name: String) throws {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil)).appendingPathComponent("conv")
        let meta = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("\(name).json"))) as? [String: Any])
        params = meta["params"] as? [String: Any] ?? [:]
        var loaded: [String: Tensor] = [:]
        for (key, value) in try XCTUnwrap(meta["tensors"] as? [String: [Int]]) {
            let data = try Data(contentsOf: root.appendingPathComponent("\(name).\(key).bin"))
            XCTAssertEqual(data.count, value.reduce(1, *) * 4, "\(name).\(key).bin size")
            let floats = data.withUnsafeBytes { raw in (0..<(data.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) } }
            loaded[key] = Tensor(shape: value, data: floats)
        }
        tensors = loaded
    }

    subscript(_ key: String) -> Tensor { tensors[key]! }
    func pair(_ key: String) -> (Int, Int) { let v = params[key] as! [Int]; return (v[0], v[1]) }
}

/// Runs this test binary again with only `test` selected and `FORGE_EXPECT_TRAP=1`, and returns what it wrote to
/// stderr and whether it died. Lets a test prove that a precondition fires with the right message.
func runTrappingChild(_ test: String) throws -> (stderr: String, crashed: Bool) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    process.arguments = [test]
    var env = ProcessInfo.processInfo.environment
    env["FORGE_EXPECT_TRAP"] = "1"
    env["SWIFT_BACKTRACE"] = "enable=no"   // keep the child's stderr to the message
    process.environment = env
    let errPipe = Pipe()
    process.standardError = errPipe
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let data = errPipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (String(decoding: data, as: UTF8.self), process.terminationReason == .uncaughtSignal)
}

var isTrapChild: Bool { ProcessInfo.processInfo.environment["FORGE_EXPECT_TRAP"] == "1" }

/// For each (test, message): `runTrappingChild(test)` must die and print `message` on stderr.
func assertEachTraps(_ cases: [(test: String, message: String)], file: StaticString = #filePath, line: UInt = #line) throws {
    for (test, message) in cases {
        let (stderr, crashed) = try runTrappingChild(test)
        XCTAssertTrue(crashed, "\(test) should trap", file: file, line: line)
        XCTAssertTrue(stderr.contains(message), "\(test): expected \"\(message)\" in:\n\(stderr.suffix(600))", file: file, line: line)
    }
}

// MARK: - naive references (Double, straight from the definitions)

/// y[b, co, oh, ow] = bias[co] + Σ_{ci, kh, kw} x[b, ci, oh·s − p + kh, ow·s − p + kw] · w[co, ci, kh, kw]
func naiveConv2d(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, stride: (Int, Int), padding: (Int, Int)) -> [Float] {
    let (B, Cin, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (Cout, KH, KW) = (w.shape[0], w.shape[2], w.shape[3])
    let OH = (H + 2 * padding.0 - KH) / stride.0 + 1, OW = (W + 2 * padding.1 - KW) / stride.1 + 1
    var y = [Float](repeating: 0, count: B * Cout * OH * OW)
    for b in 0..<B { for co in 0..<Cout { for oh in 0..<OH { for ow in 0..<OW {
        var s = Double(bias?[co] ?? 0)
        for ci in 0..<Cin { for kh in 0..<KH { for kw in 0..<KW {
            let ih = oh * stride.0 - padding.0 + kh, iw = ow * stride.1 - padding.1 + kw
            if ih >= 0 && ih < H && iw >= 0 && iw < W { s += Double(x[b, ci, ih, iw]) * Double(w[co, ci, kh, kw]) }
        } } }
        y[((b * Cout + co) * OH + oh) * OW + ow] = Float(s)
    } } } }
    return y
}

/// Scatter-add definition: every input pixel x[b, ci, h, w] adds x·w[ci, co, kh, kw] at output
/// (h·s − p + kh, w·s − p + kw), when that lands inside the (OH, OW) output.
func naiveConvTranspose2d(_ x: Tensor, _ w: Tensor, _ bias: Tensor?, stride: (Int, Int), padding: (Int, Int),
                          outputPadding: (Int, Int)) -> [Float] {
    let (B, Cin, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (Cout, KH, KW) = (w.shape[1], w.shape[2], w.shape[3])
    let OH = (H - 1) * stride.0 - 2 * padding.0 + KH + outputPadding.0
    let OW = (W - 1) * stride.1 - 2 * padding.1 + KW + outputPadding.1
    var y = [Double](repeating: 0, count: B * Cout * OH * OW)
    for b in 0..<B { for co in 0..<Cout { for i in 0..<(OH * OW) { y[(b * Cout + co) * OH * OW + i] = Double(bias?[co] ?? 0) } } }
    for b in 0..<B { for ci in 0..<Cin { for h in 0..<H { for wi in 0..<W {
        for co in 0..<Cout { for kh in 0..<KH { for kw in 0..<KW {
            let oh = h * stride.0 - padding.0 + kh, ow = wi * stride.1 - padding.1 + kw
            if oh >= 0 && oh < OH && ow >= 0 && ow < OW {
                y[((b * Cout + co) * OH + oh) * OW + ow] += Double(x[b, ci, h, wi]) * Double(w[ci, co, kh, kw])
            }
        } } }
    } } } }
    return y.map { Float($0) }
}

final class ConvTests: XCTestCase {

    // MARK: forward against the naive loops

    func testConv2dMatchesNaiveLoops() {
        // (batch, Cin, H, W, Cout, KH, KW, stride, padding, bias)
        let cases: [(Int, Int, Int, Int, Int, Int, Int, (Int, Int), (Int, Int), Bool)] = [
            (2, 3, 8, 8, 5, 3, 3, (1, 1), (1, 1), true),
            (3, 2, 9, 7, 4, 4, 4, (2, 2), (1, 1), false),
            (1, 4, 6, 10, 3, 3, 2, (2, 1), (0, 1), true),   // single image: the GEMM writes y directly
            (2, 1, 5, 5, 2, 5, 5, (1, 1), (0, 0), true),    // kernel = image: 1×1 output
        ]
        for (k, c) in cases.enumerated() {
            let x = randomTensor([c.0, c.1, c.2, c.3], seed: UInt64(10 + k))
            let w = randomTensor([c.4, c.1, c.5, c.6], seed: UInt64(20 + k), scale: 0.5)
            let b = c.9 ? randomTensor([c.4], seed: UInt64(30 + k)) : nil
            let y = conv2d(x, weight: w, bias: b, stride: c.7, padding: c.8)
            let expected = naiveConv2d(x, w, b, stride: c.7, padding: c.8)
            XCTAssertEqual(y.shape, [c.0, c.4, (c.2 + 2 * c.8.0 - c.5) / c.7.0 + 1, (c.3 + 2 * c.8.1 - c.6) / c.7.1 + 1])
            assertClose(y.scalars, expected, rtol: 1e-4, atol: 1e-4, "conv2d case \(k)")
        }
    }

    /// The col2im kernels (parity-split planes for stride 2, hoisted-bounds rows, per-element bounds) fold
    /// columns onto planes that start at a bias to the same floats, bit for bit, for one plane and for a
    /// run of three planes of one channel (every third plane of a buffer, as in a 3-channel batch);
    /// planes too big for the split copy's stack buffer are refused.
    func testCol2imKernelsAgree() {
        for (H, W, KH, KW, sh, ph, pw) in [(8, 8, 4, 4, 2, 1, 1), (16, 16, 4, 4, 2, 1, 1), (9, 7, 3, 3, 2, 1, 1), (5, 12, 3, 2, 1, 0, 2),
                                            (4, 5, 4, 4, 1, 0, 0), (6, 11, 2, 3, 3, 2, 0), (7, 9, 5, 5, 2, 2, 2)] {
            for n in [1, 3] {
                let sw = 2, channels = 3, bias: Float = 0.625
                let OH = (H + 2 * ph - KH) / sh + 1, OW = (W + 2 * pw - KW) / sw + 1, ld = n * OH * OW + 3
                let col = randomTensor([KH * KW * ld], seed: UInt64(H * 17 + W + n))
                let stride = channels * H * W
                let split = Tensor(shape: [n * stride], repeating: -9)
                XCTAssertEqual(fk_col2im_planes_s2(col.pointer, split.mutablePointer, n, stride, bias, H, W, KH, KW, sh, ph, pw, OH, OW, ld), 1)
                let rows = Tensor(shape: [n * stride], repeating: -9), plain = Tensor(shape: [n * stride], repeating: -9)
                for i in 0..<n {
                    for (t, fold) in [(rows, fk_col2im_rows), (plain, fk_col2im)] as [(Tensor, FoldKernel)] {
                        let plane = t.mutablePointer + i * stride
                        plane.update(repeating: bias, count: H * W)
                        fold(col.pointer + i * OH * OW, plane, 1, H, W, KH, KW, sh, sw, ph, pw, OH, OW, ld)
                    }
                }
                let what = "H \(H) W \(W) K \(KH)x\(KW) stride \(sh),2 pad \(ph),\(pw), \(n) planes"
                XCTAssertEqual(split.scalars, rows.scalars, what)
                XCTAssertEqual(split.scalars, plain.scalars, what)
                XCTAssertEqual(split.scalars.filter { $0 == -9 }.count, n * (stride - H * W), "only the run's planes written: " + what)
            }
        }
        let col = Tensor(shape: [9 * 65 * 65 * 2], repeating: 1), img = Tensor(shape: [2 * 130 * 130], repeating: 0)
        XCTAssertEqual(fk_col2im_planes_s2(col.pointer, img.mutablePointer, 1, 0, 0, 130, 130, 3, 3, 2, 1, 1, 65, 65, 65 * 65), 0)
        XCTAssertEqual(fk_col2im_planes_s2(col.pointer, img.mutablePointer, 2, 91 * 91, 0, 91, 91, 3, 3, 2, 1, 1, 46, 46, 2 * 46 * 46), 0,
                       "two 91×91 planes exceed the copy")
        XCTAssertEqual(img.scalars.filter { $0 != 0 }.count, 0, "nothing written")
    }

    private typealias FoldKernel = (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int) -> Void
    private typealias LowerKernel = (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int, Int) -> Void

    /// The three im2col kernels (padded-plane copies, hoisted-bounds rows, per-element bounds) lower
    /// planes to the same columns, bit for bit, over strides, paddings and kernel sizes, for one plane
    /// and for a run of three planes of one channel; planes too big for the padded copy's stack buffer
    /// are refused (then the row kernels take them, checked by a conv on a 130×130 image against the
    /// naive loops).
    func testIm2colKernelsAgree() {
        for (H, W, KH, KW, sh, sw, ph, pw) in [(8, 8, 4, 4, 2, 2, 1, 1), (9, 7, 3, 3, 1, 1, 1, 1), (5, 12, 3, 2, 2, 3, 0, 2),
                                                (4, 4, 4, 4, 1, 1, 0, 0), (16, 16, 4, 4, 2, 2, 1, 1), (6, 5, 2, 3, 3, 1, 2, 0),
                                                (7, 9, 3, 4, 2, 2, 1, 2)] {
            for n in [1, 3] {
                let channels = 2, stride = channels * H * W
                let OH = (H + 2 * ph - KH) / sh + 1, OW = (W + 2 * pw - KW) / sw + 1, ld = n * OH * OW + 3
                let img = randomTensor([n * stride], seed: UInt64(H * 31 + W + n))
                let padded = Tensor(shape: [KH * KW * ld], repeating: -7)
                XCTAssertEqual(fk_im2col_planes_padded(img.pointer, n, stride, padded.mutablePointer, H, W, KH, KW, sh, sw, ph, pw, OH, OW, ld), 1)
                let rows = Tensor(shape: [KH * KW * ld], repeating: -7), plain = Tensor(shape: [KH * KW * ld], repeating: -7)
                for i in 0..<n {
                    for (t, lower) in [(rows, fk_im2col_rows), (plain, fk_im2col)] as [(Tensor, LowerKernel)] {
                        lower(img.pointer + i * stride, t.mutablePointer + i * OH * OW, 1, H, W, KH, KW, sh, sw, ph, pw, OH, OW, ld)
                    }
                }
                let what = "H \(H) W \(W) K \(KH)x\(KW) stride \(sh),\(sw) pad \(ph),\(pw), \(n) planes"
                XCTAssertEqual(padded.scalars, rows.scalars, what)
                XCTAssertEqual(padded.scalars, plain.scalars, what)
            }
        }
        let big = Tensor(shape: [130 * 130], repeating: 1), col = Tensor(shape: [9 * 130 * 130], repeating: 0)
        XCTAssertEqual(fk_im2col_planes_padded(big.pointer, 1, 0, col.mutablePointer, 130, 130, 3, 3, 1, 1, 1, 1, 130, 130, 130 * 130), 0)
        XCTAssertEqual(col.scalars.filter { $0 != 0 }.count, 0, "nothing written")
        let x = randomTensor([1, 1, 130, 130], seed: 5), w = randomTensor([2, 1, 3, 3], seed: 6)
        assertClose(conv2d(x, weight: w, stride: 1, padding: 1).scalars, naiveConv2d(x, w, nil, stride: (1, 1), padding: (1, 1)),
                    rtol: 1e-4, atol: 1e-4, "conv2d on a plane too big for the padded copy")
    }

    /// The lower and fold passes take runs of planes of one channel at a time, as many as their stack
    /// copies hold: 48×48 planes give runs of 6 (padded, im2col) and 7 (col2im), so batches of 7 and 9
    /// end on a short run. conv2d forward, its input gradient (a stride-2 fold) and convTranspose2d
    /// forward must still match the naive loops, on the OpenBLAS path that uses these passes.
    func testRunsOfPlanesMatchNaiveLoops() {
        let saved = ConvGEMM.current
        defer { ConvGEMM.current = saved }
        ConvGEMM.current = .blas
        let x = randomTensor([7, 3, 48, 48], seed: 71), w = randomTensor([4, 3, 4, 4], seed: 72, scale: 0.5)
        let b = randomTensor([4], seed: 73)
        x.requiresGrad = true
        let y = conv2d(x, weight: w, bias: b, stride: 2, padding: 1)
        assertClose(y.scalars, naiveConv2d(x, w, b, stride: (2, 2), padding: (1, 1)), rtol: 1e-4, atol: 1e-4, "conv2d forward")
        let dy = randomTensor(y.shape, seed: 74)
        y.backward(dy)
        assertClose(x.grad!.scalars, naiveConvTranspose2d(dy, w, nil, stride: (2, 2), padding: (1, 1), outputPadding: (0, 0)),
                    rtol: 1e-4, atol: 1e-4, "conv2d input gradient")
        let xt = randomTensor([9, 2, 24, 24], seed: 75), wt = randomTensor([2, 3, 4, 4], seed: 76, scale: 0.5)
        let bt = randomTensor([3], seed: 77)
        let yt = convTranspose2d(xt, weight: wt, bias: bt, stride: 2, padding: 1)
        XCTAssertEqual(yt.shape, [9, 3, 48, 48])
        assertClose(yt.scalars, naiveConvTranspose2d(xt, wt, bt, stride: (2, 2), padding: (1, 1), outputPadding: (0, 0)),
                    rtol: 1e-4, atol: 1e-4, "convTranspose2d forward")
    }

    func testConvTranspose2dMatchesScatterDefinition() {
        // (batch, Cin, H, W, Cout, KH, KW, stride, padding, outputPadding, bias)
        let cases: [(Int, Int, Int, Int, Int, Int, Int, (Int, Int), (Int, Int), (Int, Int), Bool)] = [
            (2, 3, 4, 4, 2, 4, 4, (2, 2), (1, 1), (0, 0), true),     // DCGAN upsampling block
            (2, 4, 1, 1, 3, 4, 4, (1, 1), (0, 0), (0, 0), false),    // DCGAN first block: latent 1×1 -> 4×4
            (1, 2, 3, 5, 3, 3, 2, (2, 3), (1, 0), (1, 2), true),     // single image, non-square, output padding
            (3, 2, 5, 4, 2, 3, 3, (1, 1), (1, 1), (0, 0), true),
            (2, 3, 8, 9, 2, 4, 3, (2, 2), (1, 1), (1, 0), true),     // input rows >= 8 wide: the hoisted-bounds kernels
        ]
        for (k, c) in cases.enumerated() {
            let x = randomTensor([c.0, c.1, c.2, c.3], seed: UInt64(40 + k))
            let w = randomTensor([c.1, c.4, c.5, c.6], seed: UInt64(50 + k), scale: 0.5)
            let b = c.10 ? randomTensor([c.4], seed: UInt64(60 + k)) : nil
            let y = convTranspose2d(x, weight: w, bias: b, stride: c.7, padding: c.8, outputPadding: c.9)
            XCTAssertEqual(y.shape, [c.0, c.4, (c.2 - 1) * c.7.0 - 2 * c.8.0 + c.5 + c.9.0, (c.3 - 1) * c.7.1 - 2 * c.8.1 + c.6 + c.9.1])
            assertClose(y.scalars, naiveConvTranspose2d(x, w, b, stride: c.7, padding: c.8, outputPadding: c.9),
                        rtol: 1e-4, atol: 1e-4, "convTranspose2d case \(k)")
        }
    }

    func testConv1dAndConvTranspose1dMatchTwoDimensionalDefinitions() {
        let x = randomTensor([2, 3, 11], seed: 70)
        let w = randomTensor([4, 3, 3], seed: 71, scale: 0.5), b = randomTensor([4], seed: 72)
        let y = conv1d(x, weight: w, bias: b, stride: 2, padding: 1)
        XCTAssertEqual(y.shape, [2, 4, 6])
        assertClose(y.scalars, naiveConv2d(x.reshaped([2, 3, 1, 11]), w.reshaped([4, 3, 1, 3]), b, stride: (1, 2), padding: (0, 1)),
                    rtol: 1e-4, atol: 1e-4, "conv1d")
        let wt = randomTensor([3, 2, 4], seed: 73, scale: 0.5)
        let yt = convTranspose1d(x, weight: wt, bias: nil, stride: 2, padding: 1, outputPadding: 1)
        XCTAssertEqual(yt.shape, [2, 2, 23])   // (11 − 1)·2 − 2 + 4 + 1
        assertClose(yt.scalars, naiveConvTranspose2d(x.reshaped([2, 3, 1, 11]), wt.reshaped([3, 2, 1, 4]), nil, stride: (1, 2),
                                                     padding: (0, 1), outputPadding: (0, 1)),
                    rtol: 1e-4, atol: 1e-4, "convTranspose1d")
    }

    /// convTranspose2d is the data-gradient of conv2d: for the same weight, ⟨conv(x), y⟩ = ⟨x, convT(y)⟩.
    func testConvTransposeIsAdjointOfConv() {
        let x = randomTensor([2, 3, 9, 9], seed: 80), w = randomTensor([5, 3, 4, 4], seed: 81)
        let cy = conv2d(x, weight: w, stride: 2, padding: 1)                 // (2, 5, 4, 4)
        let y = randomTensor(cy.shape, seed: 82)
        let tx = convTranspose2d(y, weight: w, stride: 2, padding: 1, outputPadding: 1)   // (2, 3, 9, 9)
        XCTAssertEqual(tx.shape, x.shape)
        var lhs = 0.0, rhs = 0.0
        for i in 0..<cy.count { lhs += Double(cy.pointer[i]) * Double(y.pointer[i]) }
        for i in 0..<x.count { rhs += Double(x.pointer[i]) * Double(tx.pointer[i]) }
        XCTAssertEqual(lhs, rhs, accuracy: 1e-4 * abs(lhs))
    }

    /// Batches big enough to be split into several im2col chunks (default budget 2M floats): the results and
    /// the accumulated weight gradients must equal the sum of one-image runs.
    func testChunkedBatchMatchesPerImageRuns() {
        // conv2d: K = 16·3·3 = 144 rows, P = 80·80 columns per image -> 2 images per chunk, batch 3 -> chunks of 2 and 1
        let x = randomTensor([3, 16, 80, 80], seed: 90, scale: 0.5), w = randomTensor([2, 16, 3, 3], seed: 91, scale: 0.1)
        let b = randomTensor([2], seed: 92)
        w.requiresGrad = true; x.requiresGrad = true
        let y = conv2d(x, weight: w, bias: b, stride: 1, padding: 1)
        let dy = randomTensor(y.shape, seed: 93)
        y.backward(dy)
        var dwSum = [Double](repeating: 0, count: w.count)
        let perImage = 16 * 80 * 80, perOut = 2 * 80 * 80
        for i in 0..<3 {
            let xi = Tensor(shape: [1, 16, 80, 80]) { $0.baseAddress!.update(from: x.pointer + i * perImage, count: perImage) }
            xi.requiresGrad = true
            let wi = w.detachedCopy(); wi.requiresGrad = true
            let yi = conv2d(xi, weight: wi, bias: b, stride: 1, padding: 1)
            assertClose(Array(y.buffer[(i * perOut)..<((i + 1) * perOut)]), yi.scalars, rtol: 1e-5, atol: 1e-5, "conv2d image \(i) forward")
            yi.backward(Tensor(shape: yi.shape) { $0.baseAddress!.update(from: dy.pointer + i * perOut, count: perOut) })
            assertClose(Array(x.grad!.buffer[(i * perImage)..<((i + 1) * perImage)]), xi.grad!.scalars, rtol: 1e-5, atol: 1e-5, "conv2d image \(i) dx")
            for j in 0..<w.count { dwSum[j] += Double(wi.grad!.pointer[j]) }
        }
        assertClose(w.grad!.scalars, dwSum.map { Float($0) }, rtol: 1e-4, atol: 1e-3, "conv2d chunked dW")

        // convTranspose2d: K = Cout·KH·KW = 64·4·4 = 1024 rows, P = 30·30 -> 2 images per chunk
        let xt = randomTensor([3, 2, 30, 30], seed: 94), wt = randomTensor([2, 64, 4, 4], seed: 95, scale: 0.1)
        wt.requiresGrad = true
        let yt = convTranspose2d(xt, weight: wt, stride: 2, padding: 1)
        let dyt = randomTensor(yt.shape, seed: 96)
        yt.backward(dyt)
        var dwtSum = [Double](repeating: 0, count: wt.count)
        let perIn = 2 * 30 * 30, perOutT = 64 * 60 * 60
        for i in 0..<3 {
            let xi = Tensor(shape: [1, 2, 30, 30]) { $0.baseAddress!.update(from: xt.pointer + i * perIn, count: perIn) }
            let wi = wt.detachedCopy(); wi.requiresGrad = true
            let yi = convTranspose2d(xi, weight: wi, stride: 2, padding: 1)
            assertClose(Array(yt.buffer[(i * perOutT)..<((i + 1) * perOutT)]), yi.scalars, rtol: 1e-5, atol: 1e-5, "convT image \(i) forward")
            yi.backward(Tensor(shape: yi.shape) { $0.baseAddress!.update(from: dyt.pointer + i * perOutT, count: perOutT) })
            for j in 0..<wt.count { dwtSum[j] += Double(wi.grad!.pointer[j]) }
        }
        assertClose(wt.grad!.scalars, dwtSum.map { Float($0) }, rtol: 1e-4, atol: 1e-3, "convT chunked dW")
    }

    // MARK: gradient checks (finite differences)

    func testConv2dGradients() {
        // stride 1, padding 0, with bias
        assertGradientsMatch([randomTensor([2, 2, 5, 5], seed: 1), randomTensor([3, 2, 3, 3], seed: 2), randomTensor([3], seed: 3)]) {
            conv2d($0[0], weight: $0[1], bias: $0[2])
        }
        // stride 2, padding 1, non-square kernel, no bias
        assertGradientsMatch([randomTensor([2, 3, 6, 5], seed: 4), randomTensor([2, 3, 3, 2], seed: 5)]) {
            conv2d($0[0], weight: $0[1], stride: 2, padding: 1)
        }
        // mixed stride/padding, single image (direct GEMM path)
        assertGradientsMatch([randomTensor([1, 2, 5, 7], seed: 6), randomTensor([3, 2, 2, 3], seed: 7), randomTensor([3], seed: 8)]) {
            conv2d($0[0], weight: $0[1], bias: $0[2], stride: (2, 1), padding: (0, 1))
        }
        // output rows 9 wide (hoisted-bounds im2col/col2im), stride 2 along W
        assertGradientsMatch([randomTensor([1, 2, 4, 17], seed: 9), randomTensor([2, 2, 2, 3], seed: 10)]) {
            conv2d($0[0], weight: $0[1], stride: (1, 2), padding: (0, 1))
        }
        // kernel = whole image, 1×1 output (a DCGAN's last D conv): the plain-GEMM path, with bias
        assertGradientsMatch([randomTensor([3, 2, 4, 3], seed: 27), randomTensor([2, 2, 4, 3], seed: 28), randomTensor([2], seed: 29)]) {
            conv2d($0[0], weight: $0[1], bias: $0[2])
        }
    }

    func testConvTranspose2dGradients() {
        // stride 1, padding 0, with bias
        assertGradientsMatch([randomTensor([2, 2, 3, 3], seed: 11), randomTensor([2, 3, 3, 3], seed: 12), randomTensor([3], seed: 13)]) {
            convTranspose2d($0[0], weight: $0[1], bias: $0[2])
        }
        // stride 2, padding 1, output padding 1, no bias
        assertGradientsMatch([randomTensor([2, 3, 3, 3], seed: 14), randomTensor([3, 2, 4, 4], seed: 15)]) {
            convTranspose2d($0[0], weight: $0[1], stride: 2, padding: 1, outputPadding: 1)
        }
        // non-square kernel, mixed strides, single image, bias
        assertGradientsMatch([randomTensor([1, 2, 3, 4], seed: 16), randomTensor([2, 3, 3, 2], seed: 17), randomTensor([3], seed: 18)]) {
            convTranspose2d($0[0], weight: $0[1], bias: $0[2], stride: (2, 1), padding: (1, 0), outputPadding: (1, 0))
        }
        // input rows 8 wide (hoisted-bounds kernels), stride 2
        assertGradientsMatch([randomTensor([1, 2, 2, 8], seed: 19), randomTensor([2, 2, 3, 4], seed: 20)]) {
            convTranspose2d($0[0], weight: $0[1], stride: 2, padding: 1)
        }
        // 1×1 input to a whole kernel (a DCGAN's first G block): the plain-GEMM path, with bias
        assertGradientsMatch([randomTensor([3, 4, 1, 1], seed: 30), randomTensor([4, 2, 3, 4], seed: 31), randomTensor([2], seed: 32)]) {
            convTranspose2d($0[0], weight: $0[1], bias: $0[2])
        }
    }

    func testConv1dGradients() {
        assertGradientsMatch([randomTensor([2, 3, 9], seed: 21), randomTensor([2, 3, 3], seed: 22), randomTensor([2], seed: 23)]) {
            conv1d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1)
        }
        assertGradientsMatch([randomTensor([2, 2, 5], seed: 24), randomTensor([2, 3, 4], seed: 25), randomTensor([3], seed: 26)]) {
            convTranspose1d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1, outputPadding: 1)
        }
    }

    // MARK: PyTorch reference values

    func testConv2dMatchesPyTorch() throws {
        let f = try ConvFixture("conv2d")
        let (x, w, b) = (f["x"], f["weight"], f["bias"])
        for t in [x, w, b] { t.requiresGrad = true }
        let y = conv2d(x, weight: w, bias: b, stride: f.pair("stride"), padding: f.pair("padding"))
        XCTAssertEqual(y.shape, f["y"].shape)
        assertClose(y.scalars, f["y"].scalars, rtol: 1e-4, atol: 1e-5, "y")
        y.backward(f["r"])
        assertClose(x.grad!.scalars, f["dx"].scalars, rtol: 1e-4, atol: 1e-5, "dx")
        assertClose(w.grad!.scalars, f["dweight"].scalars, rtol: 1e-4, atol: 1e-5, "dweight")
        assertClose(b.grad!.scalars, f["dbias"].scalars, rtol: 1e-4, atol: 1e-5, "dbias")
    }

    func testConvTranspose2dMatchesPyTorch() throws {
        let f = try ConvFixture("conv_transpose2d")
        let (x, w, b) = (f["x"], f["weight"], f["bias"])
        for t in [x, w, b] { t.requiresGrad = true }
        let y = convTranspose2d(x, weight: w, bias: b, stride: f.pair("stride"), padding: f.pair("padding"),
                                outputPadding: f.pair("output_padding"))
        XCTAssertEqual(y.shape, f["y"].shape)
        assertClose(y.scalars, f["y"].scalars, rtol: 1e-4, atol: 1e-5, "y")
        y.backward(f["r"])
        assertClose(x.grad!.scalars, f["dx"].scalars, rtol: 1e-4, atol: 1e-5, "dx")
        assertClose(w.grad!.scalars, f["dweight"].scalars, rtol: 1e-4, atol: 1e-5, "dweight")
        assertClose(b.grad!.scalars, f["dbias"].scalars, rtol: 1e-4, atol: 1e-5, "dbias")
    }

    // MARK: bad input

    func testBadShapesTrapWithMessage() throws {
        if isTrapChild { return }
        let expectations = [
            ("TensorCoreTests.ConvTests/testTrapConv2dChannels", "conv2d: input [1, 3, 8, 8] has 3 channels but weight [4, 2, 3, 3] expects 2"),
            ("TensorCoreTests.ConvTests/testTrapConv2dRank", "conv2d: input must be (B, Cin, H, W), got [3, 8, 8] (weight [4, 3, 3, 3])"),
            ("TensorCoreTests.ConvTests/testTrapConvTransposeChannels", "convTranspose2d: input [2, 5, 4, 4] has 5 channels but weight [4, 3, 4, 4] expects 4"),
            ("TensorCoreTests.ConvTests/testTrapConv1dChannels", "conv1d: input [2, 3, 10] has 3 channels but weight [4, 2, 3] expects 2"),
            ("TensorCoreTests.ConvTests/testTrapConv2dKernelTooLarge", "conv2d: kernel 5×5 of weight [1, 1, 5, 5] is larger than the padded input [1, 1, 3, 3]"),
        ]
        try assertEachTraps(expectations)
    }

    // Run only as children of testBadShapesTrapWithMessage (they trap on purpose).
    func testTrapConv2dChannels() {
        guard isTrapChild else { return }
        _ = conv2d(Tensor.zeros([1, 3, 8, 8]), weight: Tensor.zeros([4, 2, 3, 3]))
    }
    func testTrapConv2dRank() {
        guard isTrapChild else { return }
        _ = conv2d(Tensor.zeros([3, 8, 8]), weight: Tensor.zeros([4, 3, 3, 3]))
    }
    func testTrapConvTransposeChannels() {
        guard isTrapChild else { return }
        _ = convTranspose2d(Tensor.zeros([2, 5, 4, 4]), weight: Tensor.zeros([4, 3, 4, 4]), stride: 2, padding: 1)
    }
    func testTrapConv1dChannels() {
        guard isTrapChild else { return }
        _ = conv1d(Tensor.zeros([2, 3, 10]), weight: Tensor.zeros([4, 2, 3]))
    }
    func testTrapConv2dKernelTooLarge() {
        guard isTrapChild else { return }
        _ = conv2d(Tensor.zeros([1, 1, 3, 3]), weight: Tensor.zeros([1, 1, 5, 5]))
    }
}

// MARK: - throughput (prints only; run with FORGE_BENCH=1)

final class ConvBenchmarks: XCTestCase {
    /// DCGAN layers at batch 64: GFLOP/s of the op forward and forward+backward, next to raw sgemm on the
    /// same GEMM shapes. Prints; asserts nothing about speed. `FORGE_BENCH=1 swift test -c release --filter ConvBenchmarks`
    func testDCGANLayerThroughput() throws {
        guard ProcessInfo.processInfo.environment["FORGE_BENCH"] == "1" else { throw XCTSkip("set FORGE_BENCH=1 to run") }
        print("OpenBLAS core \(BLAS.coreName), threads \(Threads.count)")
        /// The fastest of repeated runs over ~minTime seconds: the machine is shared, and the minimum is the
        /// figure least disturbed by other processes.
        func seconds(_ minTime: Double = 0.5, _ body: () -> Void) -> Double {
            body()
            let start = DispatchTime.now().uptimeNanoseconds
            var best = Double.infinity, now = start
            repeat {
                let t0 = DispatchTime.now().uptimeNanoseconds
                body()
                now = DispatchTime.now().uptimeNanoseconds
                best = Swift.min(best, Double(now - t0) * 1e-9)
            } while Double(now - start) * 1e-9 < minTime
            return best
        }
        /// Time of one sgemm of op(A)(m, k)·op(B)(k, n) on fresh buffers.
        func gemmSeconds(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int) -> Double {
            let a = randomTensor([m * k], seed: 1), b = randomTensor([k * n], seed: 2), c = Tensor.zeros([m * n])
            return seconds {
                sgemm(transA: transA, transB: transB, m: m, n: n, k: k, a: a.pointer, lda: transA ? m : k,
                      b: b.pointer, ldb: transB ? k : n, c: c.mutablePointer, ldc: n)
            }
        }
        struct Layer { let name: String; let transposed: Bool; let cin, cout, h, k, s, p: Int }
        let B = 64
        let layers = [
            Layer(name: "D1 conv 3→64 64²", transposed: false, cin: 3, cout: 64, h: 64, k: 4, s: 2, p: 1),
            Layer(name: "D2 conv 64→128 32²", transposed: false, cin: 64, cout: 128, h: 32, k: 4, s: 2, p: 1),
            Layer(name: "D3 conv 128→256 16²", transposed: false, cin: 128, cout: 256, h: 16, k: 4, s: 2, p: 1),
            Layer(name: "D4 conv 256→512 8²", transposed: false, cin: 256, cout: 512, h: 8, k: 4, s: 2, p: 1),
            Layer(name: "D5 conv 512→1 4²", transposed: false, cin: 512, cout: 1, h: 4, k: 4, s: 1, p: 0),
            Layer(name: "G1 convT 100→512 1²", transposed: true, cin: 100, cout: 512, h: 1, k: 4, s: 1, p: 0),
            Layer(name: "G2 convT 512→256 4²", transposed: true, cin: 512, cout: 256, h: 4, k: 4, s: 2, p: 1),
            Layer(name: "G3 convT 256→128 8²", transposed: true, cin: 256, cout: 128, h: 8, k: 4, s: 2, p: 1),
            Layer(name: "G4 convT 128→64 16²", transposed: true, cin: 128, cout: 64, h: 16, k: 4, s: 2, p: 1),
            Layer(name: "G5 convT 64→3 32²", transposed: true, cin: 64, cout: 3, h: 32, k: 4, s: 2, p: 1),
        ]
        var totals = (fwd: 0.0, step: 0.0, gemm: 0.0, flops: 0.0)
        print("layer                      fwd ms  GF/s | fwd+bwd ms  GF/s | sgemm-only fwd+bwd ms  GF/s")
        for l in layers {
            let x = randomTensor([B, l.cin, l.h, l.h], seed: 3)
            let w = randomTensor(l.transposed ? [l.cin, l.cout, l.k, l.k] : [l.cout, l.cin, l.k, l.k], seed: 4, scale: 0.05)
            let bias = Tensor.zeros([l.cout])
            let op: () -> Tensor = l.transposed
                ? { convTranspose2d(x, weight: w, bias: bias, stride: l.s, padding: l.p) }
                : { conv2d(x, weight: w, bias: bias, stride: l.s, padding: l.p) }
            let y = withNoGrad(op)
            let oh = y.shape[2]
            // the GEMM view: conv2d's rows K = Cin·k², columns N = B·OH·OW, M = Cout (convT: the same with in/out swapped)
            let (M, K, N) = l.transposed ? (l.cin, l.cout * l.k * l.k, B * l.h * l.h) : (l.cout, l.cin * l.k * l.k, B * oh * oh)
            let flops = 2.0 * Double(M) * Double(K) * Double(N)
            let fwd = seconds { _ = withNoGrad(op) }
            let dy = randomTensor(y.shape, seed: 5)
            x.requiresGrad = true; w.requiresGrad = true; bias.requiresGrad = true
            let step = seconds { x.grad = nil; w.grad = nil; bias.grad = nil; op().backward(dy) }
            x.requiresGrad = false; w.requiresGrad = false; bias.requiresGrad = false
            // raw sgemm on the three GEMM shapes of forward + backward
            let gemm = l.transposed
                ? gemmSeconds(true, false, K, N, M) + gemmSeconds(false, false, M, N, K) + gemmSeconds(false, true, M, K, N)
                : gemmSeconds(false, false, M, N, K) + gemmSeconds(false, true, M, K, N) + gemmSeconds(true, false, K, N, M)
            totals.fwd += fwd; totals.step += step; totals.gemm += gemm; totals.flops += flops
            print(l.name.padding(toLength: 24, withPad: " ", startingAt: 0),
                  String(format: "%8.2f %5.0f | %9.2f %5.0f | %9.2f %5.0f", fwd * 1e3, flops / fwd * 1e-9,
                         step * 1e3, 3 * flops / step * 1e-9, gemm * 1e3, 3 * flops / gemm * 1e-9))
        }
        print(String(format: "total D+G                  %8.2f %5.0f | %9.2f %5.0f | %9.2f %5.0f", totals.fwd * 1e3,
                     totals.flops / totals.fwd * 1e-9, totals.step * 1e3, 3 * totals.flops / totals.step * 1e-9,
                     totals.gemm * 1e3, 3 * totals.flops / totals.gemm * 1e-9))

        // batch norm on the D2 activation (64, 128, 16, 16): memory-bound, GB/s of x read + y written
        let xb = randomTensor([B, 128, 16, 16], seed: 6), wb = Tensor.ones([128]), bb = Tensor.zeros([128])
        let rm = Tensor.zeros([128]), rv = Tensor.ones([128])
        let bnFwd = seconds { _ = withNoGrad { batchNorm(xb, weight: wb, bias: bb, runningMean: rm, runningVar: rv, training: true) } }
        xb.requiresGrad = true; wb.requiresGrad = true; bb.requiresGrad = true
        let dyb = randomTensor(xb.shape, seed: 7)
        let bnStep = seconds { xb.grad = nil; wb.grad = nil; bb.grad = nil
            batchNorm(xb, weight: wb, bias: bb, runningMean: rm, runningVar: rv, training: true).backward(dyb) }
        print(String(format: "batchNorm (64,128,16,16): fwd %.2f ms, fwd+bwd %.2f ms", bnFwd * 1e3, bnStep * 1e3))
    }
}
