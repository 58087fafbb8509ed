import XCTest
import Foundation
import TensorCore

/// Forge against PyTorch (Fixtures/make_reference_fixtures.py): forward values and every gradient
/// of a small conv net and of one nanoGPT transformer block, within 1e-4 relative.
final class ReferenceTests: XCTestCase {
    override class func setUp() { BLAS.configure(allowReexec: false) }

    struct Fixture {
        let index: [String: [String: Any]]
        let data: Data

        init() throws {
            let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: root.appendingPathComponent("reference_fixtures.json")))
            index = try XCTUnwrap((json as? [String: Any])?["tensors"] as? [String: [String: Any]])
            data = try Data(contentsOf: root.appendingPathComponent("reference_fixtures.bin"))
        }

        func tensor(_ name: String, requiresGrad: Bool = false) -> Tensor {
            guard let e = index[name], let shape = e["shape"] as? [Int], let offset = e["offset"] as? Int else {
                fatalError("reference fixture has no tensor \(name)")
            }
            let t = Tensor(shape: shape) { buf in
                data.withUnsafeBytes { raw in
                    for i in 0..<buf.count {
                        buf[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: (offset + i) * 4, as: UInt32.self)))
                    }
                }
            }
            t.requiresGrad = requiresGrad
            return t
        }
    }

    /// Relative tolerance on the scale of the reference: |a − b| ≤ 1e-4 · max(|b|, 1e-2 · max|b|, 0.1).
    /// (The 0.1 floor, i.e. 1e-5 absolute, is for gradients that are exactly 0 in exact arithmetic,
    /// such as the conv bias feeding a training-mode BatchNorm: both sides hold only rounding noise.)
    func assertMatches(_ got: Tensor?, _ expected: Tensor, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let got else { return XCTFail("\(what): no value", file: file, line: line) }
        XCTAssertEqual(got.shape, expected.shape, what, file: file, line: line)
        let scale = expected.scalars.map { abs($0) }.max() ?? 1
        for i in 0..<min(got.count, expected.count) {
            let b = expected.pointer[i], a = got.pointer[i]
            if abs(a - b) > 1e-4 * max(abs(b), 1e-2 * scale, 0.1) {
                return XCTFail("\(what)[\(i)]: forge \(a) vs torch \(b)", file: file, line: line)
            }
        }
    }

    func testConvNetMatchesPyTorch() throws {
        let f = try Fixture()
        let names = ["conv.weight", "conv.bias", "bn.weight", "bn.bias", "convt.weight", "convt.bias", "x"]
        var p: [String: Tensor] = [:]
        for n in names { p[n] = f.tensor("convnet." + n, requiresGrad: true) }
        let runningMean = Tensor.zeros([4]), runningVar = Tensor.ones([4])
        // conv(3→4, k3 s1 p1) → BN(train) → LeakyReLU(0.2) → convT(4→2, k4 s2 p1) → tanh
        var h = conv2d(p["x"]!, weight: p["conv.weight"]!, bias: p["conv.bias"]!, stride: 1, padding: 1)
        h = batchNorm(h, weight: p["bn.weight"]!, bias: p["bn.bias"]!, runningMean: runningMean, runningVar: runningVar, training: true)
        h = h.leakyRelu(0.2)
        let y = convTranspose2d(h, weight: p["convt.weight"]!, bias: p["convt.bias"]!, stride: 2, padding: 1).tanh()
        assertMatches(y, f.tensor("convnet.y"), "conv net output")
        (y * f.tensor("convnet.r")).sum().backward()
        for n in names { assertMatches(p[n]!.grad, f.tensor("convnet.grad." + n), "conv net grad \(n)") }
        assertMatches(runningMean, f.tensor("convnet.running_mean"), "running mean")
        assertMatches(runningVar, f.tensor("convnet.running_var"), "running var")
    }

    func testTransformerBlockMatchesPyTorch() throws {
        let f = try Fixture()
        let names = ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
                     "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias", "x"]
        var p: [String: Tensor] = [:]
        for n in names { p[n] = f.tensor("block." + n, requiresGrad: true) }
        func linear(_ x: Tensor, _ name: String) -> Tensor { x.matmul(p[name + ".weight"]!, transposeB: true) + p[name + ".bias"]! }
        let x = p["x"]!  // (B, T, C) = (2, 6, 8), 2 heads
        let a = causalSelfAttention(qkv: linear(layerNorm(x, weight: p["ln_1.weight"], bias: p["ln_1.bias"]), "attn.c_attn"), heads: 2)
        let h = x + linear(a, "attn.c_proj")
        let y = h + linear(linear(layerNorm(h, weight: p["ln_2.weight"], bias: p["ln_2.bias"]), "mlp.c_fc").gelu(), "mlp.c_proj")
        assertMatches(y, f.tensor("block.y"), "block output")
        (y * f.tensor("block.r")).sum().backward()
        for n in names { assertMatches(p[n]!.grad, f.tensor("block.grad." + n), "block grad \(n)") }
    }
}
