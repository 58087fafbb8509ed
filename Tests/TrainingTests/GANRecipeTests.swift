import Foundation
import XCTest
import TensorCore
import DataIO
import Models
import Training

/// The stable conditional recipe's training side (GANRecipe.swift): hinge loss against PyTorch, the
/// EMA update and its BatchNorm statistics, configuration compatibility, and exact resume with the
/// new state (EMA weights and counter, spectral-norm u and v vectors).
final class GANRecipeTests: XCTestCase {
    override class func setUp() { BLAS.configure(allowReexec: false) }

    /// Made by Tests/TensorCoreTests/Fixtures/make_gan_recipe_fixtures.py.
    private func hingeFixtures() throws -> [String: Any] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../TensorCoreTests/Fixtures/hinge_fixtures.json")
        let data = try Data(contentsOf: url)
        return try XCTUnwrap(JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    private func floats(_ d: [String: Any], _ key: String) -> [Float] {
        ((d[key] as? [Any]) ?? []).map { Float(($0 as? NSNumber)?.doubleValue ?? .nan) }
    }

    private func assertClose(_ a: [Float], _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-5 + 1e-4 * abs(y), what, file: file, line: line) }
    }

    func testHingeLossesMatchPyTorch() throws {
        let f = try hingeFixtures()
        let realValues = floats(f, "real"), fakeValues = floats(f, "fake")
        let real = Tensor(shape: [realValues.count], data: realValues, requiresGrad: true)
        let fake = Tensor(shape: [fakeValues.count], data: fakeValues, requiresGrad: true)
        let lossD = hingeDiscriminatorLoss(real: real, fake: fake)
        XCTAssertEqual(lossD.item, Float((f["loss_d"] as? NSNumber)?.doubleValue ?? .nan), accuracy: 1e-5)
        lossD.backward()
        assertClose(try XCTUnwrap(real.grad).scalars, floats(f, "grad_real"), "dLossD/dreal")
        assertClose(try XCTUnwrap(fake.grad).scalars, floats(f, "grad_fake_d"), "dLossD/dfake")
        fake.grad = nil
        let lossG = hingeGeneratorLoss(fake: fake)
        XCTAssertEqual(lossG.item, Float((f["loss_g"] as? NSNumber)?.doubleValue ?? .nan), accuracy: 1e-5)
        lossG.backward()
        assertClose(try XCTUnwrap(fake.grad).scalars, floats(f, "grad_fake_g"), "dLossG/dfake")
    }

    private func stableConfig() -> DCGANConfig {
        var c = tinyConfig()
        c.apply(.stable)
        return c
    }

    func testEMAStartsAsACopyAndAveragesWithAWarmingUpDecay() {
        let gan = DCGAN(stableConfig())
        let ema = GeneratorEMA(of: gan.generator, decay: 0.999)
        for ((na, a), (_, g)) in zip(ema.average.stateTensors(), gan.generator.stateTensors()) {
            XCTAssertEqual(a.scalars, g.scalars, na)
            XCTAssertFalse(a === g, "\(na) must be a copy, not the same tensor")
        }
        let before = ema.average.parameters.map(\.scalars)
        // move G: every parameter + 1
        for p in gan.generator.parameters { for i in 0..<p.count { p.mutablePointer[i] += 1 } }
        XCTAssertEqual(ema.currentDecay, 0.1, accuracy: 1e-7)  // min(0.999, (1 + 0)/(10 + 0))
        ema.update(from: gan.generator)
        for (a, (b, g)) in zip(ema.average.parameters, zip(before, gan.generator.parameters)) {
            for i in 0..<a.count { XCTAssertEqual(a.pointer[i], 0.1 * b[i] + 0.9 * g.pointer[i], accuracy: 1e-6) }
        }
        XCTAssertEqual(ema.updateCount.item, 1)
        XCTAssertEqual(ema.currentDecay, 2 / 11, accuracy: 1e-7)
        for _ in 0..<20_000 { ema.updateCount.mutablePointer[0] += 1 }
        XCTAssertEqual(ema.currentDecay, 0.999, "the warm-up ends at the configured decay")
    }

    func testEMABatchNormStatisticsAreTheAveragedGeneratorsOwn() {
        var config = tinyConfig()
        config.apply(.stable)
        config.generatorConditioning = .concatenatedEmbedding  // main.1 is then a plain BatchNorm after the first conv
        let gan = DCGAN(config)
        let ema = GeneratorEMA(of: gan.generator, decay: 0.9)
        ema.recomputeBatchNormStatistics(batches: 1, batchSize: 8, seed: 42)
        // by hand: the first conv's output on the same z and labels, per-channel mean and unbiased variance
        var rng = RandomGenerator(seed: 42)
        let z = Tensor.randn([8, config.nz], generator: &rng)
        let labels = (0..<8).map { $0 % config.classCount }
        let e = withNoGrad { ema.average.labelEmbedding!(labels.map { Int32($0) }, shape: [8]) }
        let h = withNoGrad { ema.average.main.layers[0].forward(Tensor.concat([z, e], axis: 1).reshaped([8, config.nz + config.embedDim, 1, 1])) }
        let bn = ema.average.main.layers[1] as! BatchNorm2d
        let c = h.shape[1], s = h.shape[2] * h.shape[3], n = 8 * s
        for ch in 0..<c {
            var values: [Double] = []
            for b in 0..<8 { for i in 0..<s { values.append(Double(h.pointer[(b * c + ch) * s + i])) } }
            let mean = values.reduce(0, +) / Double(n)
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n - 1)
            XCTAssertEqual(Double(bn.runningMean!.pointer[ch]), mean, accuracy: 1e-5 + 1e-4 * abs(mean))
            XCTAssertEqual(Double(bn.runningVar!.pointer[ch]), variance, accuracy: 1e-5 + 1e-3 * variance)
        }
        XCTAssertFalse(ema.average.isTraining, "left in evaluation mode")
    }

    func testDCGANConfigurationJSONIsUnchangedAndOldJSONDecodes() throws {
        let json = try Checkpoint.jsonString(tinyConfig())
        for key in ["generatorConditioning", "spectralNorm", "loss", "learningRateD", "emaDecay"] {
            XCTAssertFalse(json.contains(key), "a DCGAN's configuration JSON must stay as it was (\(key))")
        }
        let old = #"{"batchSize":8,"beta1":0.5,"beta2":0.999,"channels":1,"classCount":2,"embedDim":4,"imageSize":32,"learningRate":0.0002,"ndf":4,"ngf":4,"nz":8,"seed":7}"#
        XCTAssertEqual(try JSONDecoder().decode(DCGANConfig.self, from: Data(old.utf8)), tinyConfig())
        let stable = stableConfig()
        let roundTrip = try JSONDecoder().decode(DCGANConfig.self, from: Data(try Checkpoint.jsonString(stable).utf8))
        XCTAssertEqual(roundTrip, stable)
        XCTAssertEqual(roundTrip.generatorConditioning, .conditionalBatchNorm)
        XCTAssertEqual(roundTrip.discriminatorLearningRate, 4e-4)
    }

    /// Stop after epoch 2 and resume to 4 = straight to 4, bit for bit, with the stable recipe's state.
    func testStableRecipeResumesExactly() throws {
        let dir = try temporaryFolder(self)
        try makeImageFolder(at: dir + "/data")
        let data = try ImageDataset.load(path: dir + "/data", size: 32, channels: 1, warn: { _ in })
        let straightDir = dir + "/straight", splitDir = dir + "/split"
        let straight = try GANTrainingTask(gan: DCGAN(stableConfig()), data: data, samplesDirectory: straightDir + "/samples")
        _ = try TrainingLoop(task: straight, options: quietOptions(straightDir, epochs: 4), log: { _ in }).run()
        let firstHalf = try GANTrainingTask(gan: DCGAN(stableConfig()), data: data, samplesDirectory: splitDir + "/samples")
        _ = try TrainingLoop(task: firstHalf, options: quietOptions(splitDir, epochs: 2), log: { _ in }).run()
        let secondHalf = try GANTrainingTask(gan: DCGAN(stableConfig()), data: data, samplesDirectory: splitDir + "/samples")
        _ = try TrainingLoop(task: secondHalf, options: quietOptions(splitDir, epochs: 4, resume: true), log: { _ in }).run()

        let a = try SafeTensors.read(URL(fileURLWithPath: straightDir + "/checkpoint.safetensors"))
        let b = try SafeTensors.read(URL(fileURLWithPath: splitDir + "/checkpoint.safetensors"))
        XCTAssertEqual(a.names, b.names)
        for name in ["generator_ema.num_updates", "generator_ema.average.main.0.weight", "generator_ema.average.conditional_norms.0.weight",
                     "generator.conditional_norms.0.bn.running_mean", "discriminator.main.0.parametrizations.weight.0._u",
                     "discriminator.main.0.parametrizations.weight.0._v", "discriminator.projection.parametrizations.weight.original"] {
            XCTAssertTrue(a.names.contains(name), name)
        }
        XCTAssertEqual(a.tensors["generator_ema.num_updates"]?.scalars, [16])
        for name in a.names {
            XCTAssertEqual(a.tensors[name]!.scalars, b.tensors[name]!.scalars, "\(name) differs after resume")
        }
        XCTAssertNotEqual(a.tensors["generator_ema.average.main.0.weight"]!.scalars, a.tensors["generator.main.0.weight"]!.scalars,
                          "the average is not the generator")
        XCTAssertEqual(try FileIO.readBytes(straightDir + "/samples/epoch_004.png"), try FileIO.readBytes(splitDir + "/samples/epoch_004.png"))
    }
}
