import XCTest
import Foundation
import TensorCore

// A nanoGPT-shaped model built the way Forge models are: each module lists its children.

private final class Attention: Module {
    var isTraining = true
    let cAttn: Linear, cProj: Linear
    init(_ dim: Int, _ g: inout RandomGenerator) {
        cAttn = Linear(dim, 3 * dim, generator: &g)
        cProj = Linear(dim, dim, generator: &g)
    }
    var namedChildren: [(String, any Module)] { [("c_attn", cAttn), ("c_proj", cProj)] }
}

private final class Block: Module {
    var isTraining = true
    let ln1: LayerNorm, attn: Attention, mlp: Sequential
    init(_ dim: Int, _ g: inout RandomGenerator) {
        ln1 = LayerNorm(dim)
        attn = Attention(dim, &g)
        mlp = Sequential(Linear(dim, 4 * dim, generator: &g), GELU(approximate: true), Linear(4 * dim, dim, generator: &g), Dropout(0.1))
    }
    var namedChildren: [(String, any Module)] { [("ln_1", ln1), ("attn", attn), ("mlp", mlp)] }
}

private final class TinyGPT: Module {
    var isTraining = true
    let wte: Embedding, blocks: ModuleList<Block>, lnF: LayerNorm, lmHead: Linear
    /// A non-module tensor of the model's own (like nanoGPT's wpe written as a bare parameter).
    let scale: Tensor
    init(vocab: Int = 11, dim: Int = 8, layers: Int = 2, seed: UInt64 = 1) {
        var g = RandomGenerator(seed: seed)
        wte = Embedding(vocab, dim, generator: &g)
        blocks = ModuleList((0..<layers).map { _ in Block(dim, &g) })
        lnF = LayerNorm(dim, bias: false)
        // weight tying as in nanoGPT: lm_head.weight is wte.weight
        lmHead = Linear(weight: wte.weight, bias: nil)
        scale = Tensor.ones([1])
        scale.requiresGrad = true
    }
    var localParameters: [(String, Tensor)] { [("scale", scale)] }
    var namedChildren: [(String, any Module)] {
        [("wte", wte), ("blocks", blocks), ("ln_f", lnF), ("lm_head", lmHead)]
    }
}

private func blockNames(_ i: Int) -> [String] {
    ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight", "attn.c_proj.bias",
     "mlp.0.weight", "mlp.0.bias", "mlp.2.weight", "mlp.2.bias"].map { "blocks.\(i).\($0)" }
}

final class ModuleTests: XCTestCase {
    func testParameterNamesFollowPyTorchPathsAndTiedWeightsCountOnce() {
        let model = TinyGPT()
        let names = model.namedParameters().map(\.0)
        XCTAssertEqual(names, ["scale", "wte.weight"] + blockNames(0) + blockNames(1) + ["ln_f.weight"])
        // Per block: LN 2·8, c_attn 8·24 + 24, c_proj 8·8 + 8, mlp 8·32 + 32 + 32·8 + 8.
        let perBlock = 16 + (192 + 24) + (64 + 8) + (256 + 32 + 256 + 8)
        XCTAssertEqual(perBlock, 856)
        XCTAssertEqual(model.parameterCount, 1 + 11 * 8 + 2 * perBlock + 8)
        // The checkpoint view lists the tied tensor under both names, as torch's state_dict does.
        let stateNames = model.stateTensors().map(\.0)
        XCTAssertEqual(stateNames, names + ["lm_head.weight"])
        XCTAssertTrue(model.stateTensors().last!.1 === model.wte.weight)
        XCTAssertEqual(model.namedModules().map(\.0).prefix(6),
                       ["", "wte", "blocks", "blocks.0", "blocks.0.ln_1", "blocks.0.attn"])
        XCTAssertTrue(model.parameters.allSatisfy(\.requiresGrad))
        XCTAssertTrue(model.namedBuffers().isEmpty)
    }

    func testSequentialNamesAndBatchNormBuffers() {
        var g = RandomGenerator(seed: 2)
        let net = Sequential(Conv2d(3, 4, kernelSize: 3, padding: 1, bias: false, generator: &g), BatchNorm2d(4),
                             LeakyReLU(0.2), Flatten(), Linear(4 * 5 * 5, 2, generator: &g))
        XCTAssertEqual(net.namedParameters().map(\.0), ["0.weight", "1.weight", "1.bias", "4.weight", "4.bias"])
        XCTAssertEqual(net.namedBuffers().map(\.0), ["1.running_mean", "1.running_var", "1.num_batches_tracked"])
        XCTAssertEqual(net.stateTensors().map(\.0),
                       ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
                        "4.weight", "4.bias"])
        XCTAssertEqual(net.parameterCount, 4 * 3 * 9 + 4 + 4 + 100 * 2 + 2)
        XCTAssertEqual(net(randomTensor([2, 3, 5, 5])).shape, [2, 2])
    }

    func testTrainAndEvalReachEveryDescendant() {
        let model = TinyGPT()
        XCTAssertTrue(model.namedModules().allSatisfy { $0.1.isTraining })
        model.eval()
        XCTAssertTrue(model.namedModules().allSatisfy { !$0.1.isTraining })
        XCTAssertEqual(model.namedModules().count, 1 + 1 + 1 + 2 * (1 + 1 + 3 + 5) + 1 + 1)
        // Dropout deep inside is now the identity.
        let mlp = model.blocks[1].mlp
        let x = randomTensor([3, 8])
        let y1 = mlp(x), y2 = mlp(x)
        XCTAssertEqual(y1.scalars, y2.scalars)
        model.train()
        XCTAssertTrue(model.blocks[1].mlp[3].isTraining)
        let d = Dropout(0.5)
        let ones = Tensor.ones([1000])
        let dropped = d(ones).scalars
        XCTAssertTrue(dropped.allSatisfy { $0 == 0 || $0 == 2 })
        XCTAssertEqual(Double(dropped.filter { $0 == 0 }.count), 500, accuracy: 80)
        d.eval()
        XCTAssertEqual(d(ones).scalars, ones.scalars)
    }

    func testZeroGradClearsEveryParameter() {
        let model = TinyGPT()
        for p in model.parameters { p.grad = Tensor.ones(p.shape) }
        model.zeroGrad()
        XCTAssertTrue(model.parameters.allSatisfy { $0.grad == nil })
    }

    func testLoadStateRoundTripCopiesIntoExistingStorage() throws {
        let source = TinyGPT(seed: 1), target = TinyGPT(seed: 2)
        XCTAssertNotEqual(source.blocks[0].attn.cAttn.weight.scalars, target.blocks[0].attn.cAttn.weight.scalars)
        let storageBefore = target.stateTensors().map { ObjectIdentifier($0.1.storage) }
        // A checkpoint: copies, as a file loader would produce.
        let checkpoint = Dictionary(uniqueKeysWithValues: source.stateTensors().map { ($0.0, $0.1.detachedCopy()) })
        let report = try target.loadState(checkpoint)
        XCTAssertEqual(report, StateLoadReport())
        for ((n1, a), (n2, b)) in zip(source.stateTensors(), target.stateTensors()) {
            XCTAssertEqual(n1, n2)
            XCTAssertEqual(a.scalars, b.scalars, n1)
        }
        XCTAssertEqual(target.stateTensors().map { ObjectIdentifier($0.1.storage) }, storageBefore, "parameters keep their storage")
        XCTAssertTrue(target.lmHead.weight === target.wte.weight, "tying survives loading")
        XCTAssertTrue(target.parameters.allSatisfy(\.requiresGrad))
    }

    func testLoadStateBuffersOfBatchNorm() throws {
        let a = BatchNorm2d(3), b = BatchNorm2d(3)
        _ = a(randomTensor([4, 3, 2, 2], seed: 5, scale: 3) + 1)
        XCTAssertEqual(a.numBatchesTracked!.item, 1)
        try b.loadState(Dictionary(uniqueKeysWithValues: a.stateTensors()))
        XCTAssertEqual(b.runningMean!.scalars, a.runningMean!.scalars)
        XCTAssertEqual(b.runningVar!.scalars, a.runningVar!.scalars)
        XCTAssertEqual(b.numBatchesTracked!.item, 1)
    }

    func testLoadStateErrorsNameTheProblemsAndChangeNothing() throws {
        let model = TinyGPT()
        var state = Dictionary(uniqueKeysWithValues: TinyGPT(seed: 9).stateTensors().map { ($0.0, $0.1.detachedCopy()) })
        let before = model.stateTensors().map { $0.1.scalars }
        state["blocks.1.attn.c_proj.bias"] = nil
        state["blocks.0.attn.c_proj.weight"] = Tensor.zeros([8, 9])
        state["transformer.wpe.weight"] = Tensor.zeros([4, 8])
        XCTAssertThrowsError(try model.loadState(state)) { error in
            guard let e = error as? StateLoadError else { return XCTFail("unexpected error \(error)") }
            XCTAssertEqual(e.missingNames, ["blocks.1.attn.c_proj.bias"])
            XCTAssertEqual(e.unexpectedNames, ["transformer.wpe.weight"])
            XCTAssertEqual(e.shapeMismatches, [.init(name: "blocks.0.attn.c_proj.weight", expected: [8, 8], found: [8, 9])])
            let text = e.description
            for piece in ["missing: blocks.1.attn.c_proj.bias", "unexpected: transformer.wpe.weight",
                          "size mismatch for blocks.0.attn.c_proj.weight", "[8, 9]", "[8, 8]"] {
                XCTAssertTrue(text.contains(piece), "\(piece) not in: \(text)")
            }
        }
        XCTAssertEqual(model.stateTensors().map { $0.1.scalars }, before, "a refused load changes nothing")

        // Non-strict: missing and unexpected names are reported, a shape mismatch is still an error.
        XCTAssertThrowsError(try model.loadState(state, strict: false)) { error in
            let e = error as! StateLoadError
            XCTAssertTrue(e.missingNames.isEmpty && e.unexpectedNames.isEmpty)
            XCTAssertEqual(e.shapeMismatches.count, 1)
        }
        state["blocks.0.attn.c_proj.weight"] = nil
        let report = try model.loadState(state, strict: false)
        XCTAssertEqual(report.missingNames, ["blocks.0.attn.c_proj.weight", "blocks.1.attn.c_proj.bias"])
        XCTAssertEqual(report.unexpectedNames, ["transformer.wpe.weight"])
        XCTAssertEqual(model.wte.weight.scalars, state["wte.weight"]!.scalars)
        XCTAssertEqual(model.blocks[1].attn.cProj.bias!.scalars, before[model.stateTensors().firstIndex { $0.0 == "blocks.1.attn.c_proj.bias" }!])
    }

    // MARK: initialisation statistics (PyTorch defaults)

    /// Uniform(±bound) samples: inside the bound, reaching near it, mean ≈ 0, std ≈ bound/√3.
    private func assertUniform(_ t: Tensor, bound: Float, _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        let v = t.scalars.map(Double.init)
        let n = Double(v.count)
        let mean = v.reduce(0, +) / n
        let std = (v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / n).squareRoot()
        XCTAssertLessThanOrEqual(v.map(abs).max()!, Double(bound), what, file: file, line: line)
        XCTAssertGreaterThan(v.map(abs).max()!, 0.98 * Double(bound), what, file: file, line: line)
        XCTAssertEqual(mean, 0, accuracy: 4 * Double(bound) / (3 * n).squareRoot(), "\(what) mean", file: file, line: line)
        XCTAssertEqual(std, Double(bound) / 3.0.squareRoot(), accuracy: 0.03 * Double(bound), "\(what) std", file: file, line: line)
    }

    func testDefaultInitialisationsMatchPyTorch() {
        var g = RandomGenerator(seed: 3)
        let linear = Linear(400, 300, generator: &g)
        XCTAssertEqual(linear.weight.shape, [300, 400])
        assertUniform(linear.weight, bound: 1 / 20, "Linear weight")   // kaiming_uniform(a=√5): 1/√fan_in
        assertUniform(linear.bias!, bound: 1 / 20, "Linear bias")

        let conv = Conv2d(16, 32, kernelSize: 3, generator: &g)       // fan_in 16·3·3 = 144
        XCTAssertEqual(conv.weight.shape, [32, 16, 3, 3])
        assertUniform(conv.weight, bound: 1 / 12, "Conv2d weight")

        let deconv = ConvTranspose2d(64, 16, kernelSize: 4, stride: 2, padding: 1, generator: &g)
        XCTAssertEqual(deconv.weight.shape, [64, 16, 4, 4])
        assertUniform(deconv.weight, bound: 1 / 16, "ConvTranspose2d weight")   // fan_in = dim 1 · k² = 16·16, not 64·16
        XCTAssertLessThanOrEqual(deconv.bias!.scalars.map(abs).max()!, 1 / 16)

        let conv1 = Conv1d(10, 20, kernelSize: 5, generator: &g)        // fan_in 50
        assertUniform(conv1.weight, bound: 1 / Float(50).squareRoot(), "Conv1d weight")
        let deconv1 = ConvTranspose1d(20, 25, kernelSize: 4, generator: &g)   // fan_in 25·4 = 100
        XCTAssertEqual(deconv1.weight.shape, [20, 25, 4])
        assertUniform(deconv1.weight, bound: 0.1, "ConvTranspose1d weight")

        let emb = Embedding(500, 64, generator: &g)
        let e = emb.weight.scalars.map(Double.init)
        let mean = e.reduce(0, +) / Double(e.count)
        XCTAssertEqual(mean, 0, accuracy: 0.03)
        XCTAssertEqual((e.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(e.count)).squareRoot(), 1, accuracy: 0.02)

        let ln = LayerNorm(6)
        XCTAssertEqual(ln.weight.scalars, [1, 1, 1, 1, 1, 1])
        XCTAssertEqual(ln.bias!.scalars, [0, 0, 0, 0, 0, 0])
        let bn = BatchNorm2d(3)
        XCTAssertEqual(bn.weight!.scalars, [1, 1, 1])
        XCTAssertEqual(bn.bias!.scalars, [0, 0, 0])
        XCTAssertEqual(bn.runningMean!.scalars, [0, 0, 0])
        XCTAssertEqual(bn.runningVar!.scalars, [1, 1, 1])
        XCTAssertEqual(bn.numBatchesTracked!.shape, [])

        // Same seed, same model; the DefaultRNG forms advance the default generator.
        var g1 = RandomGenerator(seed: 4), g2 = RandomGenerator(seed: 4)
        XCTAssertEqual(Linear(5, 3, generator: &g1).weight.scalars, Linear(5, 3, generator: &g2).weight.scalars)
        DefaultRNG.seed(8)
        let d1 = Linear(5, 3).weight.scalars
        let d2 = Linear(5, 3).weight.scalars
        DefaultRNG.seed(8)
        XCTAssertEqual(Linear(5, 3).weight.scalars, d1)
        XCTAssertNotEqual(d1, d2)
    }

    // MARK: forward passes

    func testLinearForwardByHandOnAnyLeadingShape() {
        let linear = Linear(weight: Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6]), bias: Tensor(shape: [2], data: [10, 20]))
        XCTAssertEqual(linear(Tensor(shape: [3], data: [1, 0, -1])).scalars, [10 - 2, 20 - 2])
        let x = Tensor(shape: [2, 1, 3], data: [1, 1, 1, 0, 1, 0])
        let y = linear(x)
        XCTAssertEqual(y.shape, [2, 1, 2])
        XCTAssertEqual(y.scalars, [16, 35, 12, 25])
        assertGradientsMatch([randomTensor([4, 3], seed: 8), linear.weight, linear.bias!]) { inputs in
            inputs[0].matmul(inputs[1], transposeB: true) + inputs[2]
        }
        let noBias = Linear(3, 2, bias: false)
        XCTAssertNil(noBias.bias)
        XCTAssertEqual(noBias.namedParameters().map(\.0), ["weight"])
    }

    func testBatchNormTrainingUpdatesRunningStatisticsAndEvalUsesThem() {
        let bn = BatchNorm1d(2)
        // (B=4, C=2): channel 0 values 1,2,3,4 (mean 2.5, unbiased var 5/3); channel 1 all 7 (var 0).
        let x = Tensor(shape: [4, 2], data: [1, 7, 2, 7, 3, 7, 4, 7])
        let y = bn(x)
        let sd = (1.25 + 1e-5).squareRoot()
        assertClose(y.scalars, [Float(-1.5 / sd), 0, Float(-0.5 / sd), 0, Float(0.5 / sd), 0, Float(1.5 / sd), 0], rtol: 1e-5, atol: 1e-5)
        assertClose(bn.runningMean!.scalars, [0.25, 0.7], rtol: 1e-6, atol: 1e-7)
        assertClose(bn.runningVar!.scalars, [Float(0.9 + 0.1 * 5.0 / 3), 0.9], rtol: 1e-6, atol: 1e-7)
        XCTAssertEqual(bn.numBatchesTracked!.item, 1)
        bn.eval()
        let z = bn(x)
        XCTAssertEqual(bn.numBatchesTracked!.item, 1, "evaluation does not count batches")
        let rv = bn.runningVar!.scalars, rm = bn.runningMean!.scalars
        XCTAssertEqual(z[0, 0], (1 - rm[0]) / (rv[0] + 1e-5).squareRoot(), accuracy: 1e-5)

        // momentum nil: cumulative average, the first batch's statistics replace the initial ones.
        let cumulative = BatchNorm1d(2, momentum: nil)
        _ = cumulative(x)
        assertClose(cumulative.runningMean!.scalars, [2.5, 7], rtol: 1e-6, atol: 1e-6)
    }

    func testConvolutionLayersProduceTorchShapes() {
        var g = RandomGenerator(seed: 12)
        // DCGAN generator's first and last layers.
        let up = ConvTranspose2d(16, 8, kernelSize: 4, stride: 1, padding: 0, bias: false, generator: &g)
        XCTAssertEqual(up(randomTensor([2, 16, 1, 1])).shape, [2, 8, 4, 4])
        let up2 = ConvTranspose2d(8, 3, kernelSize: 4, stride: 2, padding: 1, generator: &g)
        XCTAssertEqual(up2(randomTensor([2, 8, 4, 4])).shape, [2, 3, 8, 8])
        let odd = ConvTranspose2d(3, 2, kernelSize: (3, 3), stride: (2, 2), padding: (1, 1), outputPadding: (1, 1), generator: &g)
        XCTAssertEqual(odd(randomTensor([1, 3, 5, 5])).shape, [1, 2, 10, 10])
        let down = Conv2d(3, 8, kernelSize: 4, stride: 2, padding: 1, generator: &g)
        XCTAssertEqual(down(randomTensor([2, 3, 8, 8])).shape, [2, 8, 4, 4])
        let c1 = Conv1d(4, 6, kernelSize: 3, stride: 2, padding: 1, generator: &g)
        XCTAssertEqual(c1(randomTensor([2, 4, 9])).shape, [2, 6, 5])
        let t1 = ConvTranspose1d(6, 4, kernelSize: 4, stride: 2, padding: 1, generator: &g)
        XCTAssertEqual(t1(randomTensor([2, 6, 5])).shape, [2, 4, 10])
        let unflatten = Unflatten(axis: 1, sizes: [4, 2, 2])
        XCTAssertEqual(unflatten(randomTensor([3, 16])).shape, [3, 4, 2, 2])
    }

    func testActivationModulesMatchTheirOps() {
        let x = Tensor(shape: [5], data: [-2, -0.5, 0, 0.5, 2])
        XCTAssertEqual(ReLU()(x).scalars, [0, 0, 0, 0.5, 2])
        XCTAssertEqual(LeakyReLU(0.2)(x).scalars, [-0.4, -0.1, 0, 0.5, 2])
        XCTAssertEqual(Tanh()(x).scalars, x.tanh().scalars)
        XCTAssertEqual(Sigmoid()(x).scalars, x.sigmoid().scalars)
        XCTAssertEqual(GELU()(x).scalars, x.gelu().scalars)
        XCTAssertEqual(Identity()(x).scalars, x.scalars)
    }
}

/// Children by reflection, and the check that finds a child a hand-written list forgot.
final class ModuleReflectionTests: XCTestCase {
    final class Pair: Module {
        var isTraining = true
        let first = Linear(2, 3, generator: &ModuleReflectionTests.g)
        let second: Linear? = Linear(3, 1, generator: &ModuleReflectionTests.g)
        let absent: Linear? = nil
        let scale: Float = 2
    }
    final class Forgetful: Module {
        var isTraining = true
        let kept = Linear(2, 2, generator: &ModuleReflectionTests.g)
        let forgotten = Linear(2, 2, generator: &ModuleReflectionTests.g)
        var namedChildren: [(String, any Module)] { [("kept", kept)] }
    }
    nonisolated(unsafe) static var g = RandomGenerator(seed: 3)

    func testStoredModulesAreChildrenInDeclarationOrder() {
        let pair = Pair()
        XCTAssertEqual(pair.namedChildren.map(\.0), ["first", "second"])
        XCTAssertEqual(pair.namedParameters().map(\.0), ["first.weight", "first.bias", "second.weight", "second.bias"])
        XCTAssertEqual(pair.unregisteredChildren(), [])
    }

    func testAForgottenChildIsReported() {
        let f = Forgetful()
        XCTAssertEqual(f.unregisteredChildren(), ["forgotten"])
        XCTAssertEqual(f.parameterCount, 6, "only the registered child is trained")
    }
}
