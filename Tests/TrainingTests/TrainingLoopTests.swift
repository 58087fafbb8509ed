import Foundation
import XCTest
import TensorCore
import DataIO
import Training
import Models
import Figures

final class TrainingLoopTests: XCTestCase {
    func testLossFallsAndFilesAreWritten() throws {
        let dir = try temporaryFolder(self)
        let task = LineFitTask()
        let summary = try TrainingLoop(task: task, options: quietOptions(dir, epochs: 5), log: { _ in }).run()
        XCTAssertEqual(summary.outcome, .finished)
        XCTAssertEqual(summary.state, TrainingState(step: 20, epoch: 5, stepInEpoch: 0, wallSeconds: summary.state.wallSeconds))
        XCTAssertEqual(task.epochsEnded.map(\.0), [0, 1, 2, 3, 4])
        XCTAssertTrue(task.epochsEnded.allSatisfy(\.1))

        let csv = try String(contentsOfFile: dir + "/metrics.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.first, "step,epoch,wall_s,items_per_s,lr,loss")
        XCTAssertEqual(csv.count, 21)
        let losses = csv.dropFirst().map { Double($0.split(separator: ",")[5])! }
        XCTAssertLessThan(losses.suffix(4).reduce(0, +), losses.prefix(4).reduce(0, +) * 0.5, "loss should fall")
        XCTAssertEqual(csv.last?.split(separator: ",").prefix(2).joined(separator: ","), "20,5")

        let plot = try ImageCodec.load(path: dir + "/loss.png")
        XCTAssertEqual(plot.width, 720)
        XCTAssertEqual(plot.height, 420)
        XCTAssertEqual(plot.channels, 3)
        // the first series is drawn in the first palette colour (31, 120, 181)
        var blue = 0
        for y in 0..<plot.height { for x in 0..<plot.width where abs(plot[x, y, 0] - 0.12) < 0.02 && abs(plot[x, y, 2] - 0.71) < 0.02 { blue += 1 } }
        XCTAssertGreaterThan(blue, 100, "the loss curve should be drawn")

        let saved = try Checkpoint.load(dir + "/checkpoint.safetensors", expectedKind: "linefit")
        XCTAssertEqual(saved.state.step, 20)
        XCTAssertEqual(saved.generators["data"], task.rng)
        XCTAssertEqual(Set(try SafeTensors.read(URL(fileURLWithPath: dir + "/checkpoint.safetensors")).names),
            ["model.weight", "model.bias", "optimizer.model.state.0.step",
            "optimizer.model.state.0.exp_avg", "optimizer.model.state.0.exp_avg_sq", "optimizer.model.state.1.step",
            "optimizer.model.state.1.exp_avg", "optimizer.model.state.1.exp_avg_sq", "rng.data"])
        XCTAssertEqual(saved.tensors["model.weight"]?.scalars, task.model.weight.scalars)
    }

    func testNonFiniteLossStopsAndKeepsLastGoodCheckpoint() throws {
        let dir = try temporaryFolder(self)
        let task = LineFitTask()
        task.onStep = { $0 == 7 ? .nan : nil }  // epoch 2, step 3 of 4
        let loop = TrainingLoop(task: task, options: quietOptions(dir, epochs: 3), log: { _ in })
        XCTAssertThrowsError(try loop.run()) { error in
            guard case let TrainingError.diverged(step, metric, value, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(step, 7)
            XCTAssertEqual(metric, "loss")
            XCTAssertTrue(value.isNaN)
            XCTAssertTrue("\(error)".contains("at step 7"), "\(error)")
            XCTAssertTrue("\(error)".contains("was kept"), "\(error)")
        }
        XCTAssertEqual(task.stepsRun, 7)
        // the checkpoint is the one written after epoch 1, untouched
        XCTAssertEqual(try Checkpoint.load(dir + "/checkpoint.safetensors").state.step, 4)
    }

    func testInfiniteLossIsCaughtToo() throws {
        let dir = try temporaryFolder(self)
        let task = LineFitTask()
        task.onStep = { $0 == 2 ? .infinity : nil }
        XCTAssertThrowsError(try TrainingLoop(task: task, options: quietOptions(dir, epochs: 1), log: { _ in }).run()) {
            XCTAssertEqual($0 as? TrainingError, .diverged(step: 2, metric: "loss", value: .infinity, checkpoint: dir + "/checkpoint.safetensors"))
            XCTAssertTrue("\($0)".contains("no checkpoint had been written yet"))
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/checkpoint.safetensors"))
    }

    func testTimeBudgetStopsMidEpochAndSaves() throws {
        let dir = try temporaryFolder(self)
        let task = LineFitTask()
        task.stepsPerEpoch = 1000
        task.delay = 0.01
        let summary = try TrainingLoop(task: task, options: quietOptions(dir, minutes: 0.003), log: { _ in }).run()  // 0.18 s
        XCTAssertEqual(summary.outcome, .timeLimit)
        XCTAssertGreaterThan(summary.state.step, 3)
        XCTAssertLessThan(summary.state.step, 100)
        XCTAssertEqual(task.epochsEnded.last?.1, false, "a mid-epoch stop still writes samples")
        let saved = try Checkpoint.load(dir + "/checkpoint.safetensors")
        XCTAssertEqual(saved.state.step, summary.state.step)
        XCTAssertEqual(saved.state.stepInEpoch, summary.state.step)
        XCTAssertEqual(saved.state.epoch, 0)
    }

    func testInterruptSavesAfterTheCurrentStep() throws {
        let dir = try temporaryFolder(self)
        let task = LineFitTask()
        task.onStep = { step in
            if step == 6 { InterruptFlag.raise() }  // as if Ctrl-C arrived during step 6
            return nil
        }
        let summary = try TrainingLoop(task: task, options: quietOptions(dir, epochs: 10, interrupts: true), log: { _ in }).run()
        XCTAssertEqual(summary.outcome, .interrupted)
        XCTAssertEqual(summary.state.step, 6)
        XCTAssertEqual(try Checkpoint.load(dir + "/checkpoint.safetensors").state, summary.state)
        InterruptFlag.reset()
    }

    func testResumeMidEpochMatchesStraightRun() throws {
        let straightDir = try temporaryFolder(self), splitDir = try temporaryFolder(self)
        let straight = LineFitTask()
        _ = try TrainingLoop(task: straight, options: quietOptions(straightDir, epochs: 3), log: { _ in }).run()

        let first = LineFitTask()
        first.onStep = { step in
            if step == 6 { InterruptFlag.raise() }
            return nil
        }
        _ = try TrainingLoop(task: first, options: quietOptions(splitDir, epochs: 3, interrupts: true), log: { _ in }).run()
        InterruptFlag.reset()
        let second = LineFitTask()
        let summary = try TrainingLoop(task: second, options: quietOptions(splitDir, epochs: 3, resume: true), log: { _ in }).run()
        XCTAssertEqual(summary.state.step, 12)
        XCTAssertEqual(second.stepsRun, 6)
        XCTAssertEqual(second.model.weight.scalars, straight.model.weight.scalars)
        XCTAssertEqual(second.model.bias!.scalars, straight.model.bias!.scalars)
        // metrics.csv of the split run has the same 12 steps
        let csv = try String(contentsOfFile: splitDir + "/metrics.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.dropFirst().map { $0.split(separator: ",")[0] }, (1...12).map { Substring(String($0)) })
    }

    func testResumeRefusesAnotherKindOrConfiguration() throws {
        let dir = try temporaryFolder(self)
        let task = LineFitTask()
        _ = try TrainingLoop(task: task, options: quietOptions(dir, epochs: 1), log: { _ in }).run()
        final class OtherConfig: TrainingTaskWrapper { override var configJSON: String { #"{"what":"other"}"# } }
        XCTAssertThrowsError(try TrainingLoop(task: OtherConfig(), options: quietOptions(dir, epochs: 2, resume: true), log: { _ in }).run()) {
            XCTAssertTrue("\($0)".contains("different configuration"), "\($0)")
        }
        XCTAssertThrowsError(try Checkpoint.load(dir + "/checkpoint.safetensors", expectedKind: "gan")) {
            XCTAssertTrue("\($0)".contains("holds a \"linefit\" model, not a \"gan\" one"), "\($0)")
        }
    }

    /// A checkpoint cut down to its weights (as scripts/ship-checkpoint.py ships them) samples, but a
    /// resume from it would start Adam afresh: refused, naming --init, with the file left as it was.
    func testResumeRefusesAWeightsOnlyCheckpoint() throws {
        let dir = try temporaryFolder(self)
        _ = try TrainingLoop(task: LineFitTask(), options: quietOptions(dir, epochs: 1), log: { _ in }).run()
        let path = dir + "/checkpoint.safetensors"
        let full = try SafeTensors.read(URL(fileURLWithPath: path))
        XCTAssertTrue(full.names.contains { $0.hasPrefix("optimizer.") })
        var items: [SafeTensors.Item] = []
        for name in full.names where !name.hasPrefix("optimizer.") {
            if name.hasPrefix("rng.") { items.append(.int64(name, shape: [4], values: try full.int64Array(name))) }
            else { items.append(.float32(name, full.tensors[name]!)) }
        }
        try SafeTensors.write(items: items, metadata: full.metadata, to: URL(fileURLWithPath: path))
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try TrainingLoop(task: LineFitTask(), options: quietOptions(dir, epochs: 2, resume: true), log: { _ in }).run()) {
            XCTAssertTrue("\($0)".contains("no optimizer state") && "\($0)".contains("--init"), "\($0)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), before)
    }

    func testCheckpointKeepsFullRandomWordsAndMetadata() throws {
        let dir = try temporaryFolder(self)
        let g = RandomGenerator(stateWords: [UInt64.max, 1 << 63, 12_345_678_901_234_567_891, 1])
        let model = Linear(3, 2)
        try Checkpoint.save(to: dir + "/a/b/c.safetensors", kind: "test", configJSON: "{}", state: TrainingState(step: 3, epoch: 1, stepInEpoch: 1, wallSeconds: 2.5),
                            modules: [("net", model)], generators: ["g": g], extraMetadata: ["forge.classes": #"["a","b"]"#])
        let saved = try Checkpoint.load(dir + "/a/b/c.safetensors")
        XCTAssertEqual(saved.generators["g"]?.stateWords, g.stateWords)
        XCTAssertEqual(saved.state, TrainingState(step: 3, epoch: 1, stepInEpoch: 1, wallSeconds: 2.5))
        XCTAssertEqual(try saved.stringArray("forge.classes"), ["a", "b"])
        XCTAssertEqual(saved.metadata["forge.kind"], "test")
        let other = Linear(3, 2)
        try saved.restore(modules: [("net", other)])
        XCTAssertEqual(other.weight.scalars, model.weight.scalars)
        // a module of another shape: nothing changes and the error names the tensor and both shapes
        let wrong = Linear(4, 2)
        let before = wrong.weight.scalars
        XCTAssertThrowsError(try saved.restore(modules: [("net", wrong)])) {
            XCTAssertTrue("\($0)".contains("net.weight has shape [2, 3] in the file, the model needs [2, 4]"), "\($0)")
        }
        XCTAssertEqual(wrong.weight.scalars, before)
    }

    func testProgressLinesWhenNotATerminal() {
        var out: [String] = []
        let bar = ProgressBar(unit: "samples", isTerminal: false, plainEvery: 5) { out.append($0) }
        for i in 1...12 { bar.update(label: "epoch 1/2", position: i, total: 12, rate: 100, eta: 75, scalars: [("loss", 0.5)]) }
        bar.finishLine(label: "epoch 1/2", position: 12, total: 12, rate: 100, eta: 0, scalars: [("loss", 0.25)])
        XCTAssertEqual(out, ["epoch 1/2 5/12 100.0 samples/s ETA 1:15 loss 0.5000\n",
                             "epoch 1/2 10/12 100.0 samples/s ETA 1:15 loss 0.5000\n",
                             "epoch 1/2 12/12 100.0 samples/s ETA 0:00 loss 0.2500\n"])
        XCTAssertEqual(ProgressBar.clock(3725), "1:02:05")
    }

    func testProgressBarRedrawsOneLineOnATerminal() {
        var out = ""
        let bar = ProgressBar(unit: "tokens", isTerminal: true) { out += $0 }
        bar.update(label: "epoch 1", position: 5, total: 10, rate: 2000, eta: nil, scalars: [])
        bar.finishLine(label: "epoch 1", position: 10, total: 10, rate: 2000, eta: 0, scalars: [])
        XCTAssertTrue(out.hasPrefix("\repoch 1 [##########..........] 5/10 2000.0 tokens/s ETA --:--"), out)
        XCTAssertTrue(out.hasSuffix("\repoch 1 [####################] 10/10 2000.0 tokens/s ETA 0:00\n"), out)
        XCTAssertEqual(out.filter { $0 == "\n" }.count, 1)
    }
}

/// LineFitTask with overridable configuration (for the mismatch test).
class TrainingTaskWrapper: TrainingTask {
    let inner = LineFitTask()
    var kind: String { inner.kind }
    var configJSON: String { inner.configJSON }
    var modules: [(name: String, module: any Module)] { inner.modules }
    var optimizers: [(name: String, optimizer: any Optimizer)] { inner.optimizers }
    var generators: [String: RandomGenerator] {
        get { inner.generators }
        set { inner.generators = newValue }
    }
    var stepsPerEpoch: Int { inner.stepsPerEpoch }
    var itemsPerStep: Int { inner.itemsPerStep }
    var metricNames: [String] { inner.metricNames }
    func beginEpoch(_ epoch: Int, skippingSteps: Int) {}
    func step() -> [Double] { inner.step() }
}
