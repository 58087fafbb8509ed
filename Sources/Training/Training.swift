// Training — the one training loop shared by every Forge model family (GAN, VAE, char transformer,
// classifier), with its run folder, metrics, checkpoints and progress display. Nothing in this file
// knows what a model computes.
//
// How a model family plugs in
// ---------------------------
// 1. Conform a small class to `TrainingTask`. It owns the model, its optimizers, its data iterator
//    and its random generators, and it answers:
//      * `step()`                       — run one optimisation step, return the named scalars
//                                         (losses, accuracies, …) in `metricNames` order;
//      * `beginEpoch(_:skippingSteps:)` — prepare the data order of an epoch (reproducibly from the
//                                         epoch number; skip the steps a resumed run already did);
//      * `evaluate()`                   — optional: held-out scalars (`evaluationNames`), run every
//                                         `TrainingOptions.evaluateEvery` steps and at the end;
//      * `epochEnded(epoch:step:)`      — write per-epoch artefacts (sample grids, text samples).
//    plus what a checkpoint must hold: `modules`, `optimizers`, `generators` (exact RNG state),
//    `configJSON` (enough to rebuild the model) and `extraMetadata` (e.g. class names).
// 2. Build `TrainingOptions` (a run folder, epochs, steps and/or a time budget, resume) and call
//    `TrainingLoop(task:options:).run()`.
//
// The loop then provides, for every family alike:
//   * the run folder (`RunDirectory`): checked writable before the first step, locked against a
//     second run (flock), cleared of temporary files a killed run left;
//   * `ProgressBar`: a live one-line bar on a terminal (step/total, items/s, ETA, scalars), plain
//     lines every N steps when stdout is not a TTY;
//   * `MetricsLog`: `metrics.csv` (step, epoch, wall_s, items_per_s, lr, every scalar) and `loss.png`;
//   * `Checkpoint`: `checkpoint.safetensors` (modules, optimizer state, RNG words, position, config),
//     written atomically at every epoch end, on a fixed cadence, and when the run stops; `--resume`
//     restores it exactly; `best.safetensors` whenever `bestMetric` improves;
//   * a learning-rate schedule applied before every step (`learningRateSchedule`);
//   * `InterruptFlag`: SIGINT or SIGTERM finishes the current step, saves and returns `.interrupted`;
//   * a non-finite scalar, or one pinned far past any sane value, stops the run with
//     `TrainingError.diverged` naming the step, without saving, so the last good checkpoint survives;
//   * a time budget (`minutes`) stops after the step that crosses it, saving first.
//
// Determinism: the loop itself draws no random numbers. A run that stops and is resumed reproduces
// the uninterrupted run bit for bit as long as the task derives its data order from (seed, epoch)
// or from a generator in `generators`, and keeps all of its randomness there.

import Foundation
import TensorCore
import Models

/// A model family's adapter to `TrainingLoop`: one optimisation step at a time, plus what a
/// checkpoint must hold to resume exactly.
public protocol TrainingTask: AnyObject {
    /// The checkpoint kind stored as `forge.kind` ("gan", "vae", "char", …).
    var kind: String { get }
    /// The configuration that rebuilds the model, as JSON (stored as `forge.config`). A resumed run
    /// must have the same configuration.
    var configJSON: String { get }
    /// Modules saved in checkpoints; their tensors are named `"\(name).\(dotted.path)"`, or by their
    /// own dotted path when the name is "" (the char model keeps nanoGPT's names at the top level).
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
    /// The scalars drawn in `loss.png` (from `metricNames` and `evaluationNames`).
    var plottedMetrics: [String] { get }
    /// Names of the scalars `evaluate()` returns, in order ([] = the task has no evaluation).
    var evaluationNames: [String] { get }
    /// An evaluation scalar whose improvement (lower is better) writes `best.safetensors`, or nil.
    var bestMetric: String? { get }
    /// The learning rate of every optimizer as a function of the step, or nil to leave the rates alone.
    var learningRateSchedule: LRSchedule? { get }
    /// Largest magnitude a step scalar may reach before the run counts as diverged (a GAN's loss at
    /// 1e16 is as broken as a NaN); nil = only NaN/Inf stop the run.
    var divergenceLimit: Double? { get }

    /// Prepares epoch `epoch` (0-based); a resumed run skips the first `skippingSteps` steps.
    func beginEpoch(_ epoch: Int, skippingSteps: Int)
    /// Runs one optimisation step and returns `metricNames.count` scalars.
    func step() -> [Double]
    /// Held-out scalars (`evaluationNames.count` of them), computed without changing the model.
    func evaluate() throws -> [Double]
    /// A short text the model generates at each evaluation (logged to TensorBoard as
    /// `samples/text`), or nil when the task has none. It must not change the model or the task's
    /// random generators.
    func evaluationSample() -> String?
    /// Called after an epoch completes (`completed` true) or when the run stops mid-epoch
    /// (`completed` false), before the checkpoint is written: write samples and the like.
    func epochEnded(epoch: Int, step: Int, completed: Bool) throws
}

extension TrainingTask {
    /// Default: no metadata besides the loop's own.
    public var extraMetadata: [String: String] { [:] }
    /// Default: steps are counted in "samples".
    public var itemName: String { "samples" }
    /// Default: every step and evaluation metric whose name contains "loss".
    public var plottedMetrics: [String] { (metricNames + evaluationNames).filter { $0.lowercased().contains("loss") } }
    /// Default: no evaluation.
    public var evaluationNames: [String] { [] }
    /// Default: no `best.safetensors`.
    public var bestMetric: String? { nil }
    /// Default: the optimizers keep their rates.
    public var learningRateSchedule: LRSchedule? { nil }
    /// Default: a step scalar past 1e8 in magnitude counts as diverged.
    public var divergenceLimit: Double? { 1e8 }
    /// Default: no held-out scalars.
    public func evaluate() throws -> [Double] { [] }
    /// Default: no text sample.
    public func evaluationSample() -> String? { nil }
    /// Default: nothing to write at an epoch's end.
    public func epochEnded(epoch: Int, step: Int, completed: Bool) throws {}
}

/// How long to train and where to write.
///
/// The run folder (`runDirectory`, the CLI's `--out`) holds everything a run writes:
/// `checkpoint.safetensors` (latest, full state), `best.safetensors` (when the task has a best
/// metric), `metrics.csv`, `loss.png`, `config.json` and `samples/` (progress pictures, text, sound).
public struct TrainingOptions: Sendable {
    /// Total epochs of the run (counting epochs done before a resume); nil = no epoch limit.
    public var epochs: Int?
    /// Total optimisation steps of the run (counting steps done before a resume); nil = no step limit.
    public var steps: Int?
    /// Wall-clock budget of this invocation in minutes; nil = no limit.
    public var minutes: Double?
    /// The run folder.
    public var runDirectory: String
    /// Continue from `checkpointPath` when it exists.
    public var resume: Bool
    /// Steps between evaluations (0 = only at the end, when the task has an evaluation).
    public var evaluateEvery: Int
    /// Steps between saves of the latest state besides epoch ends and stops (0 = at evaluations only).
    public var saveEvery: Int
    /// Also save the latest state when this many seconds passed since the last save.
    public var saveIntervalSeconds: Double
    /// Steps between plain progress lines when stdout is not a terminal.
    public var logEvery: Int
    /// Install the SIGINT/SIGTERM handler (off in tests).
    public var handleInterrupts: Bool
    /// Show progress (off in tests).
    public var showProgress: Bool
    /// Whether stdout is a terminal; nil = ask `isatty(1)`.
    public var isTerminal: Bool?
    /// Folder of the run's TensorBoard event files (see `TensorBoardWriter`); nil = none.
    public var tensorBoardDirectory: String? = nil
    /// Metadata written into every checkpoint of the run besides the task's own, e.g. a fine-tuned
    /// run's lineage (`FineTuning.metadata`). A resumed run keeps the lineage and frozen parameters
    /// its checkpoint records.
    public var extraMetadata: [String: String] = [:]
    /// The data-parallel job this process is a rank of (`DataParallelGroup.fromEnvironment()`); nil or
    /// one rank = a single process. The task must then be a `DataParallelTrainingTask`.
    public var dataParallel: DataParallelGroup? = nil

    /// Options for a run in `runDirectory`; at least one of `epochs`, `steps` and `minutes` must be given (see `problem()`).
    public init(runDirectory: String, epochs: Int? = nil, steps: Int? = nil, minutes: Double? = nil,
                resume: Bool = false, evaluateEvery: Int = 0, saveEvery: Int = 0, saveIntervalSeconds: Double = 300,
                logEvery: Int = 50, handleInterrupts: Bool = true, showProgress: Bool = true, isTerminal: Bool? = nil) {
        self.runDirectory = runDirectory
        self.epochs = epochs
        self.steps = steps
        self.minutes = minutes
        self.resume = resume
        self.evaluateEvery = evaluateEvery
        self.saveEvery = saveEvery
        self.saveIntervalSeconds = saveIntervalSeconds
        self.logEvery = logEvery
        self.handleInterrupts = handleInterrupts
        self.showProgress = showProgress
        self.isTerminal = isTerminal
    }

    /// The latest full state: `runDirectory/checkpoint.safetensors`.
    public var checkpointPath: String { RunDirectory.checkpointPath(in: runDirectory) }
    /// The best state by the task's `bestMetric`: `runDirectory/best.safetensors`.
    public var bestPath: String { runDirectory + "/best.safetensors" }
    /// Progress pictures, text and sound: `runDirectory/samples`.
    public var samplesDirectory: String { RunDirectory.samplesDirectory(in: runDirectory) }

    /// Why these options cannot work, as a `TrainingError.invalidValue`, or nil.
    public func problem() -> TrainingError? {
        if epochs == nil && steps == nil && minutes == nil {
            return .invalidConfiguration("give a number of epochs, a number of steps or a time budget in minutes")
        }
        if let e = epochs, e < 1 { return .invalidValue(field: "epochs", value: "\(e)", requirement: "at least 1") }
        if let s = steps, s < 1 { return .invalidValue(field: "steps", value: "\(s)", requirement: "at least 1") }
        if let m = minutes, !(m > 0 && m.isFinite) { return .invalidValue(field: "minutes", value: "\(m)", requirement: "a positive number") }
        if evaluateEvery < 0 { return .invalidValue(field: "evaluateEvery", value: "\(evaluateEvery)", requirement: "0 or more") }
        if saveEvery < 0 { return .invalidValue(field: "saveEvery", value: "\(saveEvery)", requirement: "0 or more") }
        if logEvery < 1 { return .invalidValue(field: "logEvery", value: "\(logEvery)", requirement: "at least 1") }
        return nil
    }
}

/// Why a run ended without an error.
public enum TrainingOutcome: String, Sendable {
    /// All requested epochs or steps are done.
    case finished
    /// The time budget ran out.
    case timeLimit
    /// SIGINT (Ctrl-C) or SIGTERM.
    case interrupted

    /// The outcome in words for a summary line ("finished", "stopped at the time limit", …).
    public var words: String {
        switch self {
        case .finished: return "finished"
        case .timeLimit: return "stopped at the time limit"
        case .interrupted: return "interrupted"
        }
    }
}

/// What `TrainingLoop.run()` returns.
public struct TrainingSummary: Sendable {
    /// Why the run ended: finished, out of time or interrupted.
    public let outcome: TrainingOutcome
    /// The loop's counters at the end: total steps, epoch, wall time and best value so far (as saved in the checkpoint).
    public let state: TrainingState
    /// The scalars of the last step (empty when no step ran).
    public let lastMetrics: [String: Double]
    /// The scalars of the last evaluation (empty when none ran).
    public let lastEvaluation: [String: Double]
    /// Seconds this invocation trained.
    public let seconds: Double
    /// Items per second over this invocation's steps (the first, warm-up step left out).
    public let itemsPerSecond: Double
    /// The signal that interrupted the run (SIGINT or SIGTERM), when `outcome` is `.interrupted`.
    public let signal: Int32?
    /// Steps in one epoch of this run's data (0 when unknown).
    public var stepsPerEpoch: Int = 0

    /// Epochs trained in total, fractional inside an epoch: 0.9 after 90 % of the first epoch's steps.
    public var epochsTrained: Double {
        stepsPerEpoch > 0 ? Double(state.epoch) + Double(state.stepInEpoch) / Double(stepsPerEpoch) : Double(state.epoch)
    }
}

/// Errors that end a run. Messages name library fields (`learningRate`, `epochs`); the CLI maps
/// `invalidValue`'s field to its flag.
public enum TrainingError: Error, CustomStringConvertible, Equatable {
    /// A scalar came out NaN, infinite, or past the task's divergence limit; the last checkpoint was kept.
    case diverged(step: Int, metric: String, value: Double, checkpoint: String)
    /// The task or the options cannot work.
    case invalidConfiguration(String)
    /// One setting is out of range: `field` (a library name), the value given, what it must be.
    case invalidValue(field: String, value: String, requirement: String)
    /// Another process trains in the same run folder.
    case runFolderBusy(directory: String, holder: String)
    /// The run folder cannot be written.
    case runFolderUnwritable(directory: String, reason: String)

    /// The error as one sentence saying what happened and what to do (lower the rate, choose another folder …).
    public var description: String {
        switch self {
        case let .diverged(step, metric, value, checkpoint):
            let kept = FileManager.default.fileExists(atPath: checkpoint)
                ? "the last good checkpoint \(checkpoint) was kept" : "no checkpoint had been written yet"
            let what = value.isFinite ? "\(metric) = \(value) is past any sane value" : "\(metric) = \(value)"
            return "training diverged: \(what) at step \(step); stopped without saving, \(kept). Lower the learning rate"
        case let .invalidConfiguration(message): return message
        case let .invalidValue(field, value, requirement): return "\(field) must be \(requirement), got \(value)"
        case let .runFolderBusy(directory, holder):
            return "the run folder \(directory) is in use by another training run (\(holder)); wait for it, or choose another folder"
        case let .runFolderUnwritable(directory, reason):
            return "the run folder \(directory) cannot be written: \(reason)"
        }
    }
}

/// Checks a hyper-parameter: `value` must be finite and satisfy `isValid`, else `TrainingError.invalidValue`.
public func checkValue(_ value: Double, _ field: String, _ requirement: String, _ isValid: (Double) -> Bool) throws {
    guard value.isFinite, isValid(value) else {
        let shown = value.isFinite && value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : "\(value)"
        throw TrainingError.invalidValue(field: field, value: shown, requirement: requirement)
    }
}
