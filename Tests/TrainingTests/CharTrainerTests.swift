import XCTest
import Foundation
import TensorCore
import DataIO
import Models
import Training
import Figures

/// The package folder (three levels above this file), to find checkpoints/ and ../shared.
let packageFolder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// `../shared/data/text/tinyshakespeare.txt` beside the package, or a skip with the reason.
func tinyShakespeare() throws -> String {
    let path = packageFolder.deletingLastPathComponent().appendingPathComponent("shared/data/text/tinyshakespeare.txt").path
    try XCTSkipUnless(FileManager.default.fileExists(atPath: path), "needs \(path) (../shared beside the package)")
    return path
}

final class CharTrainerTests: XCTestCase {
    private func tinyOptions(iterations: Int) -> CharTrainingOptions {
        var o = CharTrainingOptions()
        (o.layers, o.heads, o.embedding, o.blockSize, o.batchSize) = (1, 2, 16, 8, 4)
        (o.iterations, o.evalEvery, o.evalIterations, o.warmupIterations, o.logEvery) = (iterations, 5, 2, 2, 5)
        o.learningRate = 3e-3
        o.dropout = 0.1  // so resuming must also restore the dropout masks' generator
        return o
    }

    private func folder() throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("forge-char-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    private let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 20)

    private func run(_ task: CharTrainingTask, in dir: String, resume: Bool = false, stopAfter: Int? = nil) throws -> TrainingSummary {
        var options = task.trainingOptions(runDirectory: dir, resume: resume)
        (options.handleInterrupts, options.showProgress) = (true, false)
        InterruptFlag.reset()
        let loop = TrainingLoop(task: task, options: options, log: { _ in })
        if let stopAfter {
            // a task whose step raises the interrupt flag after `stopAfter` steps, as Ctrl-C would
            let stopping = StoppingTask(task, after: stopAfter)
            return try TrainingLoop(task: stopping, options: options, log: { _ in }).run()
        }
        return try loop.run()
    }

    /// A stopped run saves its full state; resuming it reaches the same weights, the same evaluations,
    /// the same best value and the same best.safetensors as an uninterrupted run.
    func testInterruptAndResumeMatchUninterruptedRunIncludingEvaluations() throws {
        let corpus = try TextCorpus(text: text)
        let straightDir = try folder()
        let straight = try CharTrainingTask(corpus: corpus, options: tinyOptions(iterations: 12))
        let s = try run(straight, in: straightDir)
        XCTAssertEqual(s.outcome, .finished)

        let dir = try folder()
        let first = try CharTrainingTask(corpus: corpus, options: tinyOptions(iterations: 12))
        let r1 = try run(first, in: dir, stopAfter: 7)
        XCTAssertEqual(r1.outcome, .interrupted)
        XCTAssertEqual(r1.state.step, 7)
        let resumed = try CharTrainingTask(corpus: corpus, options: tinyOptions(iterations: 12))
        let r2 = try run(resumed, in: dir, resume: true)
        XCTAssertEqual(r2.state.step, 12)
        for ((n, a), (_, b)) in zip(straight.model.namedParameters(), resumed.model.namedParameters()) {
            XCTAssertEqual(a.scalars, b.scalars, n)
        }
        XCTAssertEqual(r2.state.bestValue, s.state.bestValue)
        XCTAssertEqual(r2.state.bestStep, s.state.bestStep)
        XCTAssertEqual(r2.lastEvaluation, s.lastEvaluation)
        // the evaluation rows of both metrics.csv files agree (wall time aside)
        func evaluations(_ d: String) throws -> [String] {
            try String(contentsOfFile: d + "/metrics.csv", encoding: .utf8).split(separator: "\n").dropFirst()
                .filter { $0.hasSuffix(",") == false && $0.split(separator: ",", omittingEmptySubsequences: false)[5].isEmpty }
                .map { row in let c = row.split(separator: ",", omittingEmptySubsequences: false); return ([c[0]] + c[4...]).joined(separator: ",") }
        }
        XCTAssertEqual(try evaluations(dir), try evaluations(straightDir))
        XCTAssertEqual(try evaluations(dir).map { Int($0.split(separator: ",")[0])! }, [0, 5, 10, 12])
        let bestA = try SafeTensors.read(URL(fileURLWithPath: dir + "/best.safetensors"))
        let bestB = try SafeTensors.read(URL(fileURLWithPath: straightDir + "/best.safetensors"))
        XCTAssertEqual(bestA.names.sorted(), bestB.names.sorted())
        for name in bestA.names where bestA.entries[name]?.dtype == .F32 {
            XCTAssertEqual(try bestA.tensor(name).scalars, try bestB.tensor(name).scalars, name)
        }
        for f in ["checkpoint.safetensors", "best.safetensors", "metrics.csv", "loss.png", "config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + f), f)
        }
        let header = try String(contentsOfFile: dir + "/metrics.csv", encoding: .utf8).split(separator: "\n").first
        XCTAssertEqual(header, "step,epoch,wall_s,items_per_s,lr,loss,train_loss,val_loss")
    }

    /// The best checkpoint is a Forge checkpoint of kind "char" that loads with its vocabulary and
    /// keeps nanoGPT's tensor names at the top level; encode names an unknown character or drops it.
    func testBestCheckpointLoadsWithVocabulary() throws {
        let corpus = try TextCorpus(text: text)
        let dir = try folder()
        let task = try CharTrainingTask(corpus: corpus, options: tinyOptions(iterations: 10))
        let summary = try run(task, in: dir)
        XCTAssertLessThan(summary.state.bestValue!, log(Double(corpus.vocabularySize)))
        let ck = try CharCheckpoint.load(path: dir + "/best.safetensors")
        XCTAssertEqual(ck.vocabulary, corpus.vocabulary)
        XCTAssertEqual(ck.model.config, task.model.config)
        XCTAssertEqual(ck.metadata["forge.kind"], "char")
        XCTAssertEqual(ck.metadata["n_head"], "2")
        let names = try SafeTensors.read(URL(fileURLWithPath: dir + "/best.safetensors")).names
        XCTAssertTrue(names.contains("transformer.h.0.attn.c_attn.weight"))
        XCTAssertTrue(names.contains("optimizer.model.state.0.exp_avg"))
        XCTAssertEqual(ck.decode(try ck.encode("lazy dog")), "lazy dog")
        XCTAssertThrowsError(try ck.encode("lazy cat!")) { XCTAssertTrue("\($0)".contains("'!'"), "\($0)") }
        XCTAssertEqual(ck.decode(try ck.encode("dog!", skipUnknown: true)), "dog")
        let val = try evaluateCharLoss(ck.model, tokens: corpus.validationTokens)
        XCTAssertTrue(val.isFinite && val > 0)
        // Whole blocks only: a tail shorter than a block is not scored, and a stream without one whole
        // block (and its next character) is refused rather than scored 0.
        let T = ck.model.config.blockSize
        let stream = Array(corpus.trainTokens.prefix(2 * T + 1 + T / 2))
        XCTAssertEqual(stream.count, 2 * T + 1 + T / 2)
        XCTAssertEqual(try evaluateCharLoss(ck.model, tokens: stream), try evaluateCharLoss(ck.model, tokens: Array(stream.prefix(2 * T + 1))))
        let one = try evaluateCharLoss(ck.model, tokens: Array(stream.prefix(T + 1)))
        let direct = withNoGrad { ck.model.forward(Array(stream[0..<T]), targets: Array(stream[1...T]), batch: 1, length: T).loss.item }
        XCTAssertEqual(one, Double(direct), accuracy: 1e-6)
        XCTAssertThrowsError(try evaluateCharLoss(ck.model, tokens: Array(stream.prefix(T)))) { error in
            guard case let TrainingError.invalidValue(field, _, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "tokens")
        }
    }

    /// Out-of-range values are refused before anything trains, naming the field.
    func testBadValuesAreRefused() throws {
        let corpus = try TextCorpus(text: text)
        for (change, field) in [({ (o: inout CharTrainingOptions) in o.learningRate = 0 }, "learningRate"),
                                ({ $0.learningRate = -1 }, "learningRate"), ({ $0.learningRate = .nan }, "learningRate"),
                                ({ $0.iterations = -5 }, "iterations"), ({ $0.dropout = 1 }, "dropout"),
                                ({ $0.heads = 3 }, "embedding")] as [((inout CharTrainingOptions) -> Void, String)] {
            var o = tinyOptions(iterations: 4)
            change(&o)
            XCTAssertThrowsError(try CharTrainingTask(corpus: corpus, options: o)) { error in
                guard case let TrainingError.invalidValue(f, _, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(f, field)
            }
        }
    }

    /// The memory estimate grows with the block as T² and refuses absurd configurations.
    func testMemoryEstimateOfAHugeBlockIsHuge() {
        var o = tinyOptions(iterations: 1)
        o.blockSize = 100_000
        XCTAssertGreaterThan(o.trainingMemoryEstimate(vocabSize: 65), 1e11)  // far past any machine: refused
        o.blockSize = 64
        XCTAssertLessThan(o.trainingMemoryEstimate(vocabSize: 65), 1e8)
    }

    /// The shipped model (checkpoints/shakespeare-char.safetensors) predicts held-out Shakespeare well:
    /// on the first 16K characters of the validation split its loss is far below the 4.17 of chance.
    func testShippedModelOnTinyShakespeare() throws {
        let text = try tinyShakespeare()
        let shipped = packageFolder.appendingPathComponent("checkpoints/shakespeare-char.safetensors").path
        let ck = try CharCheckpoint.load(path: shipped)
        let corpus = try TextCorpus(path: text)
        XCTAssertEqual(ck.vocabulary, corpus.vocabulary)
        let loss = try evaluateCharLoss(ck.model, tokens: Array(corpus.validationTokens.prefix(16_384)))
        XCTAssertLessThan(loss, 1.8, "shipped model val loss \(loss)")
        XCTAssertLessThan(try FileManager.default.attributesOfItem(atPath: shipped)[.size] as! Int, 15_000_000)
    }
}

/// Wraps a task and raises the interrupt flag after `after` steps (what Ctrl-C does between steps).
final class StoppingTask: TrainingTask {
    let inner: any TrainingTask
    let after: Int
    private var count = 0
    init(_ inner: any TrainingTask, after: Int) { (self.inner, self.after) = (inner, after) }
    var kind: String { inner.kind }
    var configJSON: String { inner.configJSON }
    var modules: [(name: String, module: any Module)] { inner.modules }
    var optimizers: [(name: String, optimizer: any Optimizer)] { inner.optimizers }
    var generators: [String: RandomGenerator] {
        get { inner.generators }
        set { inner.generators = newValue }
    }
    var extraMetadata: [String: String] { inner.extraMetadata }
    var stepsPerEpoch: Int { inner.stepsPerEpoch }
    var itemsPerStep: Int { inner.itemsPerStep }
    var metricNames: [String] { inner.metricNames }
    var evaluationNames: [String] { inner.evaluationNames }
    var plottedMetrics: [String] { inner.plottedMetrics }
    var bestMetric: String? { inner.bestMetric }
    var learningRateSchedule: LRSchedule? { inner.learningRateSchedule }
    func beginEpoch(_ epoch: Int, skippingSteps: Int) { inner.beginEpoch(epoch, skippingSteps: skippingSteps) }
    func step() -> [Double] {
        count += 1
        if count == after { InterruptFlag.raise() }
        return inner.step()
    }
    func evaluate() throws -> [Double] { try inner.evaluate() }
    func epochEnded(epoch: Int, step: Int, completed: Bool) throws { try inner.epochEnded(epoch: epoch, step: step, completed: completed) }
}
