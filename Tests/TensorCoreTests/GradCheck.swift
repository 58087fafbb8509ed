import XCTest
import TensorCore

/// Finite-difference gradient check. `f` maps the inputs to any tensor; the scalar checked is
/// L = Σ f(x)ᵢ·rᵢ with fixed random weights r (so every output element matters), summed in Double.
/// Analytic gradients come from `backward(r)`; numeric ones from central differences of L.
func assertGradientsMatch(_ inputs: [Tensor], eps: Float = 1e-2, rtol: Double = 2e-2, seed: UInt64 = 7,
                          file: StaticString = #filePath, line: UInt = #line, _ f: ([Tensor]) -> Tensor) {
    for x in inputs { x.requiresGrad = true; x.grad = nil }
    let out = f(inputs)
    var rng = RandomGenerator(seed: seed)
    let r = Tensor.randn(out.shape, generator: &rng)
    out.backward(r)
    func loss() -> Double {
        withNoGrad {
            let y = f(inputs)
            var s = 0.0
            for i in 0..<y.count { s += Double(y.pointer[i]) * Double(r.pointer[i]) }
            return s
        }
    }
    for (k, x) in inputs.enumerated() {
        guard let g = x.grad else { XCTFail("input \(k) got no gradient", file: file, line: line); continue }
        XCTAssertEqual(g.shape, x.shape, file: file, line: line)
        var numeric = [Double](repeating: 0, count: x.count)
        for i in 0..<x.count {
            let old = x.mutablePointer[i]
            x.mutablePointer[i] = old + eps
            let lp = loss()
            x.mutablePointer[i] = old - eps
            let lm = loss()
            x.mutablePointer[i] = old
            numeric[i] = (lp - lm) / (2 * Double(eps))
        }
        let scale = max(numeric.map { abs($0) }.max() ?? 0, 1e-3)
        var worst = 0.0, worstIndex = 0
        for i in 0..<x.count {
            let err = abs(Double(g.pointer[i]) - numeric[i]) / max(abs(numeric[i]), 0.1 * scale)
            if err > worst { worst = err; worstIndex = i }
        }
        XCTAssertLessThan(worst, rtol, "input \(k) (shape \(x.shape)) element \(worstIndex): analytic \(g.pointer[worstIndex]) vs numeric \(numeric[worstIndex])", file: file, line: line)
    }
}

/// A tensor of N(0, 1) values from a fixed seed.
func randomTensor(_ shape: [Int], seed: UInt64 = 1, scale: Float = 1) -> Tensor {
    var rng = RandomGenerator(seed: seed)
    return Tensor.randn(shape, std: scale, generator: &rng)
}

func assertClose(_ a: [Float], _ b: [Float], rtol: Float = 1e-4, atol: Float = 1e-5, _ message: String = "",
                 file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "count \(message)", file: file, line: line)
    for i in 0..<min(a.count, b.count) where !(abs(a[i] - b[i]) <= atol + rtol * abs(b[i])) {
        XCTFail("\(message) element \(i): \(a[i]) vs \(b[i])", file: file, line: line)
        return
    }
}
