import XCTest
import Foundation
import TensorCore

/// Reference values written by Fixtures/make_optim_fixtures.py (PyTorch): optimizer trajectories and
/// state, clip_grad_norm_, LR schedules and loss values/gradients.
struct OptimFixture {
    let json: [String: Any]
    private let tensorIndex: [String: [String: Any]]
    private let data: Data

    static func load() throws -> OptimFixture {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let jsonData = try Data(contentsOf: root.appendingPathComponent("optim_fixtures.json"))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: jsonData) as? [String: Any])
        let index = try XCTUnwrap(json["tensors"] as? [String: [String: Any]])
        return OptimFixture(json: json, tensorIndex: index,
                            data: try Data(contentsOf: root.appendingPathComponent("optim_fixtures.bin")))
    }

    private init(json: [String: Any], tensorIndex: [String: [String: Any]], data: Data) {
        self.json = json
        self.tensorIndex = tensorIndex
        self.data = data
    }

    var tensorNames: [String] { Array(tensorIndex.keys) }

    /// A fresh tensor (own storage) holding fixture tensor `name`.
    func tensor(_ name: String) -> Tensor {
        guard let entry = tensorIndex[name], let shape = entry["shape"] as? [Int], let offset = entry["offset"] as? Int else {
            fatalError("fixture has no tensor \(name)")
        }
        let count = shape.reduce(1, *)
        return Tensor(shape: shape) { buf in
            data.withUnsafeBytes { raw in
                for i in 0..<count {
                    buf[i] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: (offset + i) * 4, as: UInt32.self)))
                }
            }
        }
    }

    func scalar(_ name: String) -> Double { (json["scalars"] as! [String: Any])[name] as! Double }
}

final class OptimizerTests: XCTestCase {
    /// Runs 5 steps of `make`'s optimizer over the fixture's gradients and compares w and b after every
    /// step (and the final state) with PyTorch's at 1e-5 relative.
    private func assertMatchesPyTorch(_ name: String, fixture f: OptimFixture, skipBiasGradAt skip: Int? = nil,
                                      learningRates: [Float]? = nil, file: StaticString = #filePath, line: UInt = #line,
                                      _ make: (Tensor, Tensor) -> any Optimizer) {
        let w = f.tensor("init.w"), b = f.tensor("init.b")
        w.requiresGrad = true
        b.requiresGrad = true
        let opt = make(w, b)
        for i in 0..<5 {
            if let lrs = learningRates { opt.learningRate = lrs[i] }
            w.grad = f.tensor("grad\(i).w")
            b.grad = i == skip ? nil : f.tensor("grad\(i).b")
            opt.step()
            assertClose(w.scalars, f.tensor("\(name).step\(i + 1).w").scalars, rtol: 1e-5, atol: 1e-6,
                        "\(name) w after step \(i + 1)", file: file, line: line)
            assertClose(b.scalars, f.tensor("\(name).step\(i + 1).b").scalars, rtol: 1e-5, atol: 1e-6,
                        "\(name) b after step \(i + 1)", file: file, line: line)
        }
        // The exported state uses torch's state_dict names and holds torch's values.
        let state = opt.stateTensors(prefix: "\(name).")
        let expectedNames = f.tensorNames.filter { $0.hasPrefix("\(name).state.") }.sorted()
        XCTAssertEqual(state.map(\.0).sorted(), expectedNames, "\(name) state names", file: file, line: line)
        for (n, t) in state {
            assertClose(t.scalars, f.tensor(n).scalars, rtol: 1e-5, atol: 1e-7, n, file: file, line: line)
        }
    }

    func testSGDWithNesterovMomentumAndWeightDecayMatchesPyTorch() throws {
        let f = try OptimFixture.load()
        assertMatchesPyTorch("sgd_nesterov", fixture: f) { w, b in
            SGD([w, b], learningRate: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01)
        }
    }

    func testSGDWithDampeningMatchesPyTorch() throws {
        let f = try OptimFixture.load()
        assertMatchesPyTorch("sgd_dampening", fixture: f) { w, b in
            SGD([w, b], learningRate: 0.05, momentum: 0.8, dampening: 0.3)
        }
    }

    func testPlainSGDMatchesPyTorchAndKeepsNoState() throws {
        let f = try OptimFixture.load()
        assertMatchesPyTorch("sgd_plain", fixture: f) { w, b in SGD([w, b], learningRate: 0.1, weightDecay: 0.05) }
    }

    func testAdamWithL2WeightDecayAndASkippedGradientMatchesPyTorch() throws {
        let f = try OptimFixture.load()
        let skip = try XCTUnwrap(f.json["adam_skip_b_step"] as? Int)
        assertMatchesPyTorch("adam", fixture: f, skipBiasGradAt: skip) { w, b in
            Adam([w, b], learningRate: 0.01, betas: (0.9, 0.999), eps: 1e-8, weightDecay: 0.1)
        }
    }

    func testAdamWWithDecayOnlyOnTheWeightGroupAndChangingRateMatchesPyTorch() throws {
        let f = try OptimFixture.load()
        let lrs = try XCTUnwrap(f.json["adamw_lrs"] as? [Double]).map(Float.init)
        assertMatchesPyTorch("adamw", fixture: f, learningRates: lrs) { w, b in
            AdamW([ParameterGroup(parameters: [w], learningRate: lrs[0], weightDecay: 0.1),
                   ParameterGroup(parameters: [b], learningRate: lrs[0], weightDecay: 0)],
                  betas: (0.9, 0.95), eps: 1e-8)
        }
    }

    /// Three steps, export, a new optimizer over copied parameters imports the state, two more steps:
    /// bit-identical to the uninterrupted run (and so to PyTorch's step 5).
    func testOptimizerStateRoundTripResumesExactly() throws {
        let f = try OptimFixture.load()
        let makers: [(String, (Tensor, Tensor) -> any Optimizer)] = [
            ("sgd_nesterov", { SGD([$0, $1], learningRate: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01) }),
            ("adam", { Adam([$0, $1], learningRate: 0.01, weightDecay: 0.1) }),
        ]
        for (name, make) in makers {
            let w = f.tensor("init.w"), b = f.tensor("init.b")
            let opt = make(w, b)
            func feed(_ o: any Optimizer, _ w: Tensor, _ b: Tensor, _ i: Int) {
                w.grad = f.tensor("grad\(i).w")
                b.grad = f.tensor("grad\(i).b")
                o.step()
            }
            for i in 0..<3 { feed(opt, w, b, i) }
            let saved = Dictionary(uniqueKeysWithValues: opt.stateTensors(prefix: "opt.").map { ($0.0, $0.1.detachedCopy()) })
            let w2 = w.detachedCopy(), b2 = b.detachedCopy()
            let resumed = make(w2, b2)
            try resumed.loadState(saved, prefix: "opt.")
            for i in 3..<5 { feed(opt, w, b, i); feed(resumed, w2, b2, i) }
            XCTAssertEqual(w2.scalars, w.scalars, "\(name) resumed w")
            XCTAssertEqual(b2.scalars, b.scalars, "\(name) resumed b")
        }
    }

    func testLoadingStateOfTheWrongShapeIsRefused() throws {
        let w = Tensor.zeros([2, 3]), b = Tensor.zeros([3])
        let opt = Adam([w, b])
        let bad = ["state.0.step": Tensor(1), "state.0.exp_avg": Tensor.zeros([3, 2]), "state.0.exp_avg_sq": Tensor.zeros([2, 3])]
        XCTAssertThrowsError(try opt.loadState(bad, prefix: "")) { error in
            let text = String(describing: error)
            XCTAssertTrue(text.contains("state.0.exp_avg") && text.contains("[3, 2]") && text.contains("[2, 3]"), text)
        }
        // State for a third parameter, or a key Adam does not keep: a checkpoint of something else.
        for name in ["state.2.exp_avg", "state.0.momentum_buffer"] {
            XCTAssertThrowsError(try opt.loadState([name: Tensor.zeros([3])], prefix: "")) { error in
                XCTAssertTrue(String(describing: error).contains(name), "\(error)")
            }
        }
        // Other names in the same checkpoint (the model's) are not the optimizer's business.
        XCTAssertNoThrow(try opt.loadState(["model.weight": Tensor.zeros([3])], prefix: "optimizer."))
    }

    /// A parameter larger than one parallel chunk: every chunk must update its own slice.
    func testAdamOnALargeParameterMatchesAScalarReference() {
        let n = 100_003
        let p = randomTensor([n], seed: 3), g = randomTensor([n], seed: 4)
        let reference = p.scalars, grads = g.scalars
        p.grad = g
        let opt = AdamW([p], learningRate: 0.1, betas: (0.9, 0.99), eps: 1e-8, weightDecay: 0.1)
        opt.step()
        opt.step()
        var expected = reference, m = [Float](repeating: 0, count: n), v = m
        for t in 1...2 {
            let bc1 = Float(1 - pow(0.9, Double(t))), bc2 = Float(1 - pow(0.99, Double(t)))
            for i in 0..<n {
                expected[i] *= 1 - 0.1 * 0.1
                m[i] = 0.9 * m[i] + 0.1 * grads[i]
                v[i] = 0.99 * v[i] + 0.01 * grads[i] * grads[i]
                expected[i] -= (0.1 / bc1) * m[i] / (v[i].squareRoot() / bc2.squareRoot() + 1e-8)
            }
        }
        assertClose(p.scalars, expected, rtol: 1e-5, atol: 1e-6, "large AdamW")
    }

    func testLearningRateSetterZeroGradAndDecayGroups() {
        let w = Tensor.zeros([4, 3]), b = Tensor.zeros([3]), ln = Tensor.ones([3])
        let groups = decayGroups([w, b, ln], learningRate: 0.5, weightDecay: 0.1)
        XCTAssertEqual(groups.count, 2)
        XCTAssertTrue(groups[0].parameters.count == 1 && groups[0].parameters[0] === w)
        XCTAssertEqual(groups[0].weightDecay, 0.1)
        XCTAssertTrue(groups[1].parameters.count == 2 && groups[1].parameters[0] === b && groups[1].parameters[1] === ln)
        XCTAssertEqual(groups[1].weightDecay, 0)

        let opt = AdamW(groups)
        opt.learningRate = 0.25
        XCTAssertEqual(opt.groups.map(\.learningRate), [0.25, 0.25])
        XCTAssertEqual(opt.learningRate, 0.25)
        for t in [w, b, ln] { t.grad = Tensor.ones(t.shape) }
        opt.zeroGrad()
        XCTAssertTrue([w, b, ln].allSatisfy { $0.grad == nil })
        // No gradients: a step changes nothing and creates no state.
        opt.step()
        XCTAssertEqual(w.scalars, [Float](repeating: 0, count: 12))
        XCTAssertTrue(opt.stateTensors(prefix: "").isEmpty)
    }

    func testClipGradNormMatchesPyTorch() throws {
        let f = try OptimFixture.load()
        for case_ in ["clip", "noclip"] {
            let w = Tensor.zeros([6, 5]), b = Tensor.zeros([5]), unused = Tensor.zeros([2])
            w.grad = f.tensor("grad0.w") * 3
            b.grad = f.tensor("grad0.b") * 3
            let norm = clipGradNorm([w, b, unused], maxNorm: Float(f.scalar("\(case_).max_norm")))
            XCTAssertEqual(Double(norm), f.scalar("\(case_).norm"), accuracy: 1e-5 * f.scalar("\(case_).norm"), case_)
            assertClose(w.grad!.scalars, f.tensor("\(case_).w").scalars, rtol: 1e-5, atol: 1e-7, "\(case_) w")
            assertClose(b.grad!.scalars, f.tensor("\(case_).b").scalars, rtol: 1e-5, atol: 1e-7, "\(case_) b")
            XCTAssertNil(unused.grad)
        }
        // Hand check: grads (3, 4) have norm 5; max 1 scales them by 1/(5 + 1e-6).
        let p = Tensor.zeros([2])
        p.grad = Tensor(shape: [2], data: [3, 4])
        XCTAssertEqual(clipGradNorm([p], maxNorm: 1), 5)
        assertClose(p.grad!.scalars, [Float(3 / (5 + 1e-6)), Float(4 / (5 + 1e-6))], rtol: 1e-7, atol: 0)
    }

    func testWarmupCosineScheduleMatchesNanoGPT() throws {
        let f = try OptimFixture.load()
        let schedule = LRSchedule.warmupCosine(maxRate: 6e-4, minRate: 6e-5, warmupIterations: 10, decayIterations: 100)
        let rows = try XCTUnwrap(f.json["lr_cosine"] as? [[Double]])
        XCTAssertEqual(rows.count, 12)
        for row in rows {
            let it = Int(row[0])
            XCTAssertEqual(Double(schedule.learningRate(at: it)), row[1], accuracy: 1e-6 * row[1], "iteration \(it)")
        }
        // Shape by hand: first warm-up step is max/(warmup+1), the midpoint of the decay is the average.
        XCTAssertEqual(schedule.learningRate(at: 0), 6e-4 / 11, accuracy: 1e-10)
        XCTAssertEqual(schedule.learningRate(at: 55), (6e-4 + 6e-5) / 2, accuracy: 1e-10)
        XCTAssertEqual(schedule.learningRate(at: 5000), 6e-5)
    }

    /// Warm-up, stable, decay: the warm-up of warmupCosine, the peak until decayStart, then
    /// warmupCosine's cosine leg shifted to start there.
    func testWarmupStableCosineSchedule() {
        let s = LRSchedule.warmupStableCosine(maxRate: 1e-3, minRate: 1e-4, warmupIterations: 10, decayStart: 100, decayEnd: 300)
        let nano = LRSchedule.warmupCosine(maxRate: 1e-3, minRate: 1e-4, warmupIterations: 10, decayIterations: 200)
        for it in 0..<10 { XCTAssertEqual(s.learningRate(at: it), nano.learningRate(at: it), "warm-up iteration \(it)") }
        for it in [10, 50, 99] { XCTAssertEqual(s.learningRate(at: it), 1e-3, "stable iteration \(it)") }
        XCTAssertEqual(s.learningRate(at: 100), 1e-3, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(at: 200), (1e-3 + 1e-4) / 2, accuracy: 1e-9, "the decay's midpoint")
        XCTAssertEqual(s.learningRate(at: 250), Float(1e-4 + 0.5 * (1 + cos(Double.pi * 0.75)) * 9e-4), accuracy: 1e-9)
        XCTAssertEqual(s.learningRate(at: 300), 1e-4, accuracy: 1e-12)
        XCTAssertEqual(s.learningRate(at: 10_000), 1e-4)
    }

    func testStepAndConstantSchedulesMatchPyTorch() throws {
        let f = try OptimFixture.load()
        let schedule = LRSchedule.step(initial: 0.1, stepSize: 3, gamma: 0.5)
        for row in try XCTUnwrap(f.json["lr_step"] as? [[Double]]) {
            XCTAssertEqual(Double(schedule.learningRate(at: Int(row[0]))), row[1], accuracy: 1e-7, "iteration \(row[0])")
        }
        XCTAssertEqual(LRSchedule.constant(3e-4).learningRate(at: 12345), 3e-4)
    }

    /// Optimizing a small regression with Linear + mse: the loss must fall a lot (the pieces fit together).
    func testAdamWTrainsALinearRegression() {
        var rng = RandomGenerator(seed: 11)
        let layer = Linear(3, 1, generator: &rng)
        let x = Tensor.randn([64, 3], generator: &rng)
        let trueW = Tensor(shape: [3, 1], data: [1.5, -2, 0.5])
        let y = withNoGrad { x.matmul(trueW) + 0.3 }
        let opt = AdamW(decayGroups(layer.parameters, learningRate: 0.05, weightDecay: 0))
        var first: Float = 0, last: Float = 0
        for i in 0..<200 {
            opt.zeroGrad()
            let loss = mseLoss(layer(x), y)
            if i == 0 { first = loss.item }
            last = loss.item
            loss.backward()
            opt.step()
        }
        XCTAssertGreaterThan(first, 1)
        XCTAssertLessThan(last, 1e-3)
        assertClose(layer.weight.scalars, [1.5, -2, 0.5], rtol: 0, atol: 0.02, "learned weight")
    }
}
