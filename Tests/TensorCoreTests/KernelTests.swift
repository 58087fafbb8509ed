import XCTest
import TensorCore

/// The C kernels' polynomials against Double libm over a sweep of inputs.
final class KernelTests: XCTestCase {
    private func sweep(_ lo: Float, _ hi: Float, _ n: Int = 20_001) -> Tensor {
        Tensor(shape: [n]) { b in for i in 0..<n { b[i] = lo + (hi - lo) * Float(i) / Float(n - 1) } }
    }

    private func maxRelativeError(_ x: Tensor, _ y: Tensor, _ f: (Double) -> Double, floor: Double = 1e-30) -> Double {
        var worst = 0.0
        for i in 0..<x.count {
            let ref = f(Double(x.pointer[i]))
            let err = abs(Double(y.pointer[i]) - ref) / max(abs(ref), floor)
            worst = max(worst, err)
        }
        return worst
    }

    func testExpLogTanhSigmoid() {
        let ulp = Double(Float.ulpOfOne)
        let x = sweep(-87, 88)
        XCTAssertLessThan(maxRelativeError(x, x.exp(), Foundation.exp), 2 * ulp)
        let p = sweep(1e-6, 1e6)
        XCTAssertLessThan(maxRelativeError(p, p.log(), Foundation.log, floor: 1e-3), 2 * ulp)
        let t = sweep(-12, 12)
        XCTAssertLessThan(maxRelativeError(t, t.tanh(), Foundation.tanh, floor: 1e-6), 3 * ulp)
        XCTAssertLessThan(maxRelativeError(t, t.sigmoid(), { 1 / (1 + Foundation.exp(-$0)) }, floor: 1e-6), 3 * ulp)
        // tiny inputs keep full relative accuracy (no 1 - 2/(e+1) cancellation)
        let tiny = sweep(-1e-3, 1e-3, 2001)
        XCTAssertLessThan(maxRelativeError(tiny, tiny.tanh(), Foundation.tanh, floor: 1e-12), 3 * ulp)
    }

    func testGelu() {
        let x = sweep(-8, 8)
        let exact = { (v: Double) in 0.5 * v * (1 + erf(v / 2.0.squareRoot())) }
        let approx = { (v: Double) in 0.5 * v * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v))) }
        // absolute error: erf is good to 1.5e-7 absolute
        let ye = x.gelu(approximate: false), ya = x.gelu(approximate: true)
        for i in 0..<x.count {
            let v = Double(x.pointer[i])
            XCTAssertEqual(Double(ye.pointer[i]), exact(v), accuracy: 1e-6 * max(1, abs(v)))
            XCTAssertEqual(Double(ya.pointer[i]), approx(v), accuracy: 1e-6 * max(1, abs(v)))
        }
    }

    func testSpecialValues() {
        let x = Tensor(shape: [5], data: [0, -1, .infinity, .nan, 1])
        let l = x.log().scalars
        XCTAssertEqual(l[0], -.infinity)
        XCTAssertTrue(l[1].isNaN)
        XCTAssertEqual(l[2], .infinity)
        XCTAssertTrue(l[3].isNaN)
        XCTAssertEqual(l[4], 0)
        XCTAssertEqual(Tensor(shape: [2], data: [-200, 200]).exp().scalars[0], 0, accuracy: 1e-37)
        XCTAssertEqual(Tensor(shape: [2], data: [-50, 50]).tanh().scalars, [-1, 1])
    }

    /// A NaN passes through the activations, as in PyTorch, so the loss shows it and the loop's
    /// divergence check stops the run instead of training on silently zeroed units.
    func testActivationsPropagateNaN() {
        let x = Tensor(shape: [4], data: [.nan, -1, 2, -.infinity], requiresGrad: true)
        let r = x.relu()
        XCTAssertTrue(r.scalars[0].isNaN, "relu(NaN) is NaN, as torch.relu")
        XCTAssertEqual(Array(r.scalars[1...]), [0, 2, 0])
        XCTAssertTrue(x.leakyRelu(0.2).scalars[0].isNaN)
        r.sum().backward()
        XCTAssertEqual(x.grad?.scalars, [0, 0, 1, 0], "as torch: the gradient is 0 where the output is not > 0")
    }
}
