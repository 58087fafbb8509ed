import Foundation
import XCTest
import TensorCore
import DataIO
import Models
import Training
import Figures

/// A fresh temporary folder, removed when the test ends.
func temporaryFolder(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "forge-training-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

/// Writes an image folder with two classes ("disc", "bar") of `perClass` 32×32 gray PNGs each:
/// a bright disc or a vertical bar at a random place on a dark noisy background.
func makeImageFolder(at root: String, perClass: Int = 16, seed: UInt64 = 3) throws {
    var g = RandomGenerator(seed: seed)
    for (k, name) in ["disc", "bar"].enumerated() {
        try FileManager.default.createDirectory(atPath: root + "/" + name, withIntermediateDirectories: true)
        for i in 0..<perClass {
            let cx = 8 + g.nextInt(below: 16), cy = 8 + g.nextInt(below: 16)
            var pixels = [Float](repeating: 0, count: 32 * 32)
            for y in 0..<32 {
                for x in 0..<32 {
                    let inside = k == 0 ? (x - cx) * (x - cx) + (y - cy) * (y - cy) < 36 : abs(x - cx) < 3
                    pixels[y * 32 + x] = (inside ? 0.9 : 0.1) + 0.05 * g.nextFloat()
                }
            }
            try ImageCodec.writePNG(PixelImage(width: 32, height: 32, channels: 1, pixels: pixels),
                                    to: root + "/\(name)/\(i).png")
        }
    }
}

/// A tiny conditional DCGAN configuration that trains in milliseconds per step.
func tinyConfig(classes: Int = 2, seed: UInt64 = 7) -> DCGANConfig {
    var c = DCGANConfig()
    c.imageSize = 32
    c.channels = 1
    c.nz = 8
    c.ngf = 4
    c.ndf = 4
    c.embedDim = 4
    c.classCount = classes
    c.batchSize = 8
    c.seed = seed
    return c
}

/// Quiet loop options for tests.
func quietOptions(_ folder: String, epochs: Int? = nil, minutes: Double? = nil, resume: Bool = false,
                  interrupts: Bool = false) -> TrainingOptions {
    TrainingOptions(runDirectory: folder, epochs: epochs, minutes: minutes,  resume: resume, handleInterrupts: interrupts,
                    showProgress: false, isTerminal: false)
}

/// A minimal non-GAN task (fit y = 2x with one Linear layer), to test the loop on its own.
final class LineFitTask: TrainingTask {
    let model: Linear
    let optimizer: Adam
    var rng = RandomGenerator(seed: 5)
    var stepsPerEpoch = 4
    var itemsPerStep: Int { 16 }
    var metricNames: [String] { ["loss"] }
    /// Called with the global step index (1-based) before the step returns, to inject events.
    var onStep: ((Int) -> Double?)? = nil
    var stepsRun = 0
    var delay: TimeInterval = 0
    var epochsEnded: [(Int, Bool)] = []

    init() {
        var g = RandomGenerator(seed: 1)
        model = Linear(1, 1, generator: &g)
        optimizer = Adam(model.parameters, learningRate: 0.05)
    }
    var kind: String { "linefit" }
    var configJSON: String { #"{"what":"linefit"}"# }
    var modules: [(name: String, module: any Module)] { [("model", model)] }
    var optimizers: [(name: String, optimizer: any Optimizer)] { [("model", optimizer)] }
    var generators: [String: RandomGenerator] {
        get { ["data": rng] }
        set { rng = newValue["data"]! }
    }
    func beginEpoch(_ epoch: Int, skippingSteps: Int) {}
    func step() -> [Double] {
        stepsRun += 1
        if delay > 0 { Thread.sleep(forTimeInterval: delay) }
        let x = Tensor.randn([16, 1], generator: &rng)
        optimizer.zeroGrad()
        let loss = mseLoss(model(x), x * 2)
        loss.backward()
        optimizer.step()
        if let forced = onStep?(stepsRun) { return [forced] }
        return [Double(loss.item)]
    }
    func epochEnded(epoch: Int, step: Int, completed: Bool) throws { epochsEnded.append((epoch, completed)) }
}
