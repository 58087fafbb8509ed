import Foundation
import XCTest
import TensorCore
import DataIO
import Training

/// y = 3x + noise fitted by w·x with plain SGD on fresh mini-batches, x ~ N(0, 2). The loss
/// mean((w·x − y)²) is a parabola in w with curvature a = 2·E[x²] = 4, so an SGD step multiplies the
/// distance to the optimum by (1 − lr·a): it shrinks for lr < 2/a = 0.5 and grows past it. The noise
/// keeps the loss above a floor (0.09), so the curve has a plateau, a descent, a minimum and a blow-up.
final class QuadraticRegressionTask: TrainingTask {
    static let curvature = 4.0
    let model: Linear
    let optimizer: SGD
    var rng = RandomGenerator(seed: 11)
    let batch = 256

    init() {
        model = Linear(weight: Tensor(shape: [1, 1], data: [0], requiresGrad: true), bias: nil)
        optimizer = SGD([ParameterGroup(parameters: model.parameters, learningRate: 0.1, weightDecay: 0)])
    }
    var kind: String { "quadratic" }
    var configJSON: String { "{}" }
    var modules: [(name: String, module: any Module)] { [("model", model)] }
    var optimizers: [(name: String, optimizer: any Optimizer)] { [("model", optimizer)] }
    var generators: [String: RandomGenerator] {
        get { ["data": rng] }
        set { rng = newValue["data"]! }
    }
    var stepsPerEpoch: Int { 50 }
    var itemsPerStep: Int { batch }
    var metricNames: [String] { ["loss"] }
    func beginEpoch(_ epoch: Int, skippingSteps: Int) {}
    func step() -> [Double] {
        let x = Tensor.randn([batch, 1], generator: &rng) * Float(2.0.squareRoot())
        let y = x * 3 + Tensor.randn([batch, 1], generator: &rng) * 0.3
        optimizer.zeroGrad()
        let loss = mseLoss(model(x), y)
        loss.backward()
        optimizer.step()
        return [Double(loss.item)]
    }
}

/// A task with two optimizers and loss_d / loss_g metrics, like a GAN, that records the rates it saw.
final class TwoPlayerTask: TrainingTask {
    let a = Linear(weight: Tensor(shape: [1, 1], data: [1], requiresGrad: true), bias: nil)
    let b = Linear(weight: Tensor(shape: [1, 1], data: [1], requiresGrad: true), bias: nil)
    let optimizerA: SGD, optimizerB: SGD
    var seen: [(Float, Float)] = []
    var epochsBegun: [Int] = []
    init() {
        optimizerA = SGD([ParameterGroup(parameters: a.parameters, learningRate: 1e-3, weightDecay: 0)])
        optimizerB = SGD([ParameterGroup(parameters: b.parameters, learningRate: 4e-3, weightDecay: 0)])
    }
    var kind: String { "two" }
    var configJSON: String { "{}" }
    var modules: [(name: String, module: any Module)] { [("a", a), ("b", b)] }
    var optimizers: [(name: String, optimizer: any Optimizer)] { [("a", optimizerA), ("b", optimizerB)] }
    var generators: [String: RandomGenerator] { get { [:] } set {} }
    var stepsPerEpoch: Int { 3 }
    var itemsPerStep: Int { 1 }
    var metricNames: [String] { ["loss_d", "loss_g", "d_x"] }
    func beginEpoch(_ epoch: Int, skippingSteps: Int) { epochsBegun.append(epoch) }
    func step() -> [Double] {
        seen.append((optimizerA.learningRate, optimizerB.learningRate))
        return [1, 2, 100]
    }
}

final class LearningRateFinderTests: XCTestCase {
    func testSuggestionFallsBelowTheLargestStableRateAndDivergenceIsCaughtJustAboveIt() throws {
        let critical = 2 / QuadraticRegressionTask.curvature   // 0.5
        let result = try LearningRateFinder.run(QuadraticRegressionTask(), options: LearningRateFinderOptions())
        let diverged = try XCTUnwrap(result.divergedAt, "the rate reached 10 = 20× the stable limit, the loss must blow up")
        let stopRate = result.rates[diverged]
        print(String(format: "lr-find quadratic: steepest %.4g, min %.4g, min/10 %.4g, suggested %.4g (%@), stopped at %.4g (step %d); 2/a = %.3g",
                     result.steepestRate ?? .nan, result.minimumRate ?? .nan, result.minimumRateOverTen ?? .nan,
                     result.suggestedRate ?? .nan, result.suggestionRule, stopRate, diverged + 1, critical))
        // Divergence is detected after the rate crosses 2/a, and within 3× of it (the distance to the
        // optimum grows by |1 − lr·a| per step, which is > 2 once lr > 1.5·2/a, and rates grow 9.7% a step).
        XCTAssertGreaterThan(stopRate, critical)
        XCTAssertLessThan(stopRate, 3 * critical)
        // The minimum of the centred loss: on the noise floor somewhere below 2/a, or just past it,
        // where the distance to the optimum grows only slowly at first. Its tenth is well inside the
        // stable range.
        let minimum = try XCTUnwrap(result.minimumRate)
        XCTAssertGreaterThan(minimum, critical / 10)
        XCTAssertLessThan(minimum, 2 * critical)
        XCTAssertLessThan(try XCTUnwrap(result.minimumRateOverTen), critical / 2)
        // The suggestion: a rate that trains (at most half of 2/a, i.e. at most the optimal 1/a) yet is
        // not timid (at least 2/a / 100). Measured: steepest descent 0.0088, minimum 0.155 (/10 = 0.0155),
        // divergence caught at 1.19, for 2/a = 0.5.
        let suggested = try XCTUnwrap(result.suggestedRate)
        XCTAssertLessThan(suggested, critical / 2)
        XCTAssertGreaterThan(suggested, critical / 100)
        // the record is consistent and its rates grow exponentially from the start rate
        XCTAssertEqual(result.rates.count, diverged + 1)
        XCTAssertEqual(result.rates[0], 1e-7, accuracy: 1e-15)
        XCTAssertEqual(result.rates[1] / result.rates[0], Foundation.pow(1e8, 1.0 / 199), accuracy: 1e-9)
    }

    func testEveryOptimizerFollowsTheScheduleKeepingItsRatioAndLossesAreSummed() throws {
        let task = TwoPlayerTask()
        let options = LearningRateFinderOptions(startRate: 1e-4, endRate: 1, steps: 7)
        let result = try LearningRateFinder.run(task, options: options)
        XCTAssertNil(result.divergedAt)
        XCTAssertEqual(task.seen.count, 7)
        for (i, (a, b)) in task.seen.enumerated() {
            XCTAssertEqual(Double(a), options.rate(at: i), accuracy: options.rate(at: i) * 1e-5)
            XCTAssertEqual(Double(b), 4 * options.rate(at: i), accuracy: options.rate(at: i) * 4e-5)
        }
        XCTAssertEqual(result.losses, [Double](repeating: 3, count: 7))   // loss_d + loss_g, not d_x
        XCTAssertEqual(LearningRateFinder.lossName(task.metricNames), "loss_d+loss_g")
        XCTAssertEqual(task.epochsBegun, [0, 1, 2])                     // 7 steps of 3 per epoch
        XCTAssertEqual(options.rate(at: 6), 1, accuracy: 1e-12)
    }

    func testWritesTheCSVAndThePlot() throws {
        let folder = try temporaryFolder(self)
        let result = try LearningRateFinder.run(QuadraticRegressionTask(), options: LearningRateFinderOptions(steps: 120))
        let paths = try LearningRateFinder.write(result, to: folder + "/find", title: "quadratic")
        let lines = try String(contentsOfFile: paths.csv, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.first, "step,lr,loss,smoothed_loss,centred_loss")
        XCTAssertEqual(lines.count, result.rates.count + 1)
        let image = try ImageCodec.load(path: paths.png)
        XCTAssertEqual(image.width, 720)
        XCTAssertEqual(image.height, 420)
    }

    func testBadSettingsAreRefusedNamingTheField() {
        XCTAssertEqual(LearningRateFinderOptions(startRate: 1, endRate: 0.5).problem(),
                       .invalidValue(field: "endRate", value: "0.5", requirement: "a number above startRate (1.0)"))
        XCTAssertEqual(LearningRateFinderOptions(steps: 1).problem(), .invalidValue(field: "steps", value: "1", requirement: "at least 2"))
        XCTAssertThrowsError(try LearningRateFinder.run(QuadraticRegressionTask(), options: LearningRateFinderOptions(startRate: 0)))
    }
}
