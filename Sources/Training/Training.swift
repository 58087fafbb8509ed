// Training — the training loop, checkpoints, metrics and progress display shared by every Forge
// model family (GAN, VAE, char transformer, …). Nothing in this file knows what a model computes.
//
// How a model family plugs in
// ---------------------------
// 1. Conform a small class to `TrainingTask`. It owns the model, its optimizers, its data iterator
//    and its random generators, and it answers three questions:
//      * `step()`                       — run one optimisation step, return the named scalars
//                                         (losses, accuracies, …) in `metricNames` order;
//      * `beginEpoch(_:skippingSteps:)` — prepare the data order of an epoch (reproducibly from the
//                                         epoch number; skip the steps a resumed run already did);
//      * `epochEnded(epoch:step:)`      — write per-epoch artefacts (sample grids, text samples).
//    plus what a checkpoint must hold: `modules`, `optimizers`, `generators` (exact RNG state),
//    `configJSON` (enough to rebuild the model) and `extraMetadata` (e.g. class names).
// 2. Build `TrainingOptions` (epochs and/or a time budget, checkpoint path, output folder, resume)
//    and call `TrainingLoop(task:options:).run()`.
//
// The loop then provides, for every family alike:
//   * `ProgressBar`: a live one-line bar on a terminal (step/total, items/s, ETA, scalars), plain
//     lines every N steps when stdout is not a TTY, and one kept line per epoch;
//   * `MetricsLog`: `metrics.csv` (step, epoch, wall_s, rate, every scalar) and `loss.png`, a plotted
//     curve of `plottedMetrics`, in the output folder;
//   * `Checkpoint`: one safetensors file (modules, optimizer state, RNG words, step/epoch, config),
//     written atomically after every epoch and when the run stops; `--resume` restores it exactly;
//   * `InterruptFlag`: Ctrl-C finishes the current step, saves and returns `.interrupted`
//     (a second Ctrl-C exits at once);
//   * a non-finite scalar stops the run with `TrainingError.nonFinite` naming the step, without
//     saving, so the last good checkpoint survives;
//   * a time budget (`minutes`) stops after the step that crosses it, saving first.
//
// Determinism: the loop itself draws no random numbers. A run that stops after epoch k and is
// resumed reproduces the uninterrupted run bit for bit as long as the task derives its data order
// from (seed, epoch) and keeps all of its randomness in `generators`.

import Foundation
import TensorCore

/// A model family's adapter to `TrainingLoop`: one optimisation step at a time, plus what a
/// checkpoint must hold to resume exactly.
public protocol TrainingTask: AnyObject {
    /// The checkpoint kind stored as `forge.kind` ("gan", "vae", "char", …).
    var kind: String { get }
    /// The configuration that rebuilds the model, as JSON (stored as `forge.config`). A resumed run
    /// must have the same configuration.
    var configJSON: String { get }
    /// Modules saved in checkpoints; their tensors are named `"\(name).\(dotted.path)"`.
    var modules: [(name: String, module: any Module)] { get }
    /// Optimizers saved in checkpoints, as `"optimizer.\(name).state.\(i).\(key)"`.
    var optimizers: [(name: String, optimizer: any Optimizer)] { get }
    /// Every random generator the task draws from, by name; saved as exact words and restored on resume.
    var generators: [String: RandomGenerator] { get set }
    /// Additional metadata entries (e.g. `forge.classes`) written into every checkpoint.
    var extraMetadata: [String: String] { get }

    /// Optimisation steps in one epoch.
    var stepsPerEpoch: Int { get }
    /// Items (samples, tokens) processed per step, for the rate display.
    var itemsPerStep: Int { get }
    /// Name of the items, e.g. "samples" (shown as "samples/s").
    var itemName: String { get }
    /// Names of the scalars `step()` returns, in order.
    var metricNames: [String] { get }
    /// The scalars drawn in `loss.png` (a subset of `metricNames`).
    var plottedMetrics: [String] { get }

    /// Prepares epoch `epoch` (0-based); a resumed run skips the first `skippingSteps` steps.
    func beginEpoch(_ epoch: Int, skippingSteps: Int)
    /// Runs one optimisation step and returns `metricNames.count` scalars.
    func step() -> [Double]
    /// Called after an epoch completes (`completed` true) or when the run stops mid-epoch
    /// (`completed` false), before the checkpoint is written: write samples and the like.
    func epochEnded(epoch: Int, step: Int, completed: Bool) throws
}

extension TrainingTask {
    public var extraMetadata: [String: String] { [:] }
    public var itemName: String { "samples" }
    public var plottedMetrics: [String] { metricNames.filter { $0.lowercased().contains("loss") } }
    public func epochEnded(epoch: Int, step: Int, completed: Bool) throws {}
}

/// How long to train and where to write.
public struct TrainingOptions: Sendable {
    /// Total epochs of the run (counting epochs done before a resume); nil = until `minutes` runs out.
    public var epochs: Int?
    /// Wall-clock budget of this invocation in minutes; nil = no limit.
    public var minutes: Double?
    /// The checkpoint file (`.safetensors`).
    public var checkpointPath: String
    /// Folder for `metrics.csv`, `loss.png` and whatever the task writes.
    public var outputDirectory: String
    /// Continue from `checkpointPath` when it exists.
    public var resume: Bool
    /// Steps between plain progress lines when stdout is not a terminal.
    public var logEvery: Int
    /// Install the Ctrl-C handler (off in tests).
    public var handleInterrupts: Bool
    /// Show progress (off in tests).
    public var showProgress: Bool
    /// Whether stdout is a terminal; nil = ask `isatty(1)`.
    public var isTerminal: Bool?

    public init(epochs: Int? = nil, minutes: Double? = nil, checkpointPath: String, outputDirectory: String,
                resume: Bool = false, logEvery: Int = 50, handleInterrupts: Bool = true, showProgress: Bool = true,
                isTerminal: Bool? = nil) {
        self.epochs = epochs
        self.minutes = minutes
        self.checkpointPath = checkpointPath
        self.outputDirectory = outputDirectory
        self.resume = resume
        self.logEvery = logEvery
        self.handleInterrupts = handleInterrupts
        self.showProgress = showProgress
        self.isTerminal = isTerminal
    }
}

/// Exact position of a run; stored as JSON in `forge.state`.
public struct TrainingState: Codable, Equatable, Sendable {
    /// Optimisation steps done in total.
    public var step: Int = 0
    /// The current epoch (0-based); equals the number of completed epochs when `stepInEpoch` is 0.
    public var epoch: Int = 0
    /// Steps done inside `epoch`.
    public var stepInEpoch: Int = 0
    /// Training wall time in seconds, summed over all invocations.
    public var wallSeconds: Double = 0

    public init(step: Int = 0, epoch: Int = 0, stepInEpoch: Int = 0, wallSeconds: Double = 0) {
        self.step = step
        self.epoch = epoch
        self.stepInEpoch = stepInEpoch
        self.wallSeconds = wallSeconds
    }
}

/// Why a run ended without an error.
public enum TrainingOutcome: String, Sendable {
    /// All requested epochs are done.
    case finished
    /// The time budget ran out.
    case timeLimit
    /// Ctrl-C.
    case interrupted
}

/// What `TrainingLoop.run()` returns.
public struct TrainingSummary: Sendable {
    public let outcome: TrainingOutcome
    public let state: TrainingState
    /// The scalars of the last step (empty when no step ran).
    public let lastMetrics: [String: Double]
    /// Seconds this invocation trained.
    public let seconds: Double
}

/// Errors that end a run.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    /// A scalar came out NaN or infinite; the last checkpoint was kept.
    case nonFinite(step: Int, metric: String, value: Double, checkpoint: String)
    /// The task or the options cannot work.
    case invalidConfiguration(String)

    public var description: String {
        switch self {
        case let .nonFinite(step, metric, value, checkpoint):
            let kept = FileManager.default.fileExists(atPath: checkpoint)
                ? "the last good checkpoint \(checkpoint) was kept" : "no checkpoint had been written yet"
            return "training diverged: \(metric) = \(value) at step \(step); stopped without saving, \(kept)"
        case let .invalidConfiguration(message): return message
        }
    }
}
