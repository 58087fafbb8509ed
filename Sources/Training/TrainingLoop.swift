import Foundation
import TensorCore

/// Runs a `TrainingTask`: epochs of steps with progress, metrics, checkpoints, resume, Ctrl-C,
/// a time budget and a divergence guard (see the header of Training.swift).
public final class TrainingLoop {
    public let task: any TrainingTask
    public let options: TrainingOptions
    /// Where status messages go (checkpoint saved, resumed from …); stdout by default.
    public var log: (String) -> Void

    public init(task: any TrainingTask, options: TrainingOptions, log: ((String) -> Void)? = nil) {
        self.task = task
        self.options = options
        self.log = log ?? { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) }
    }

    /// Trains until the epochs are done, the time budget runs out or Ctrl-C; saves a checkpoint at
    /// every epoch end and when stopping. Throws `TrainingError.nonFinite` (without saving) when a
    /// scalar turns NaN/Inf, and `CheckpointError` when `resume` finds an unusable checkpoint.
    public func run() throws -> TrainingSummary {
        guard options.epochs != nil || options.minutes != nil else {
            throw TrainingError.invalidConfiguration("give a number of epochs or a time budget in minutes")
        }
        if let e = options.epochs, e < 1 { throw TrainingError.invalidConfiguration("epochs must be at least 1, got \(e)") }
        if let m = options.minutes, !(m > 0) { throw TrainingError.invalidConfiguration("minutes must be positive, got \(m)") }
        let stepsPerEpoch = task.stepsPerEpoch
        guard stepsPerEpoch > 0 else { throw TrainingError.invalidConfiguration("the task has no steps per epoch (too little data for one batch?)") }
        let names = task.metricNames

        var state = TrainingState()
        if options.resume, FileManager.default.fileExists(atPath: options.checkpointPath) {
            let saved = try Checkpoint.load(options.checkpointPath, expectedKind: task.kind)
            guard saved.configJSON == task.configJSON else {
                throw CheckpointError(path: saved.path, message: "was trained with a different configuration:\n  saved: \(saved.configJSON)\n  now:   \(task.configJSON)")
            }
            try saved.restore(modules: task.modules)
            try saved.restore(optimizers: task.optimizers)
            var generators = task.generators
            for name in generators.keys {
                guard let g = saved.generators[name] else {
                    throw CheckpointError(path: saved.path, message: "has no state for random generator \"\(name)\"")
                }
                generators[name] = g
            }
            task.generators = generators
            state = saved.state
            log("resumed from \(saved.path) at epoch \(state.epoch + (state.stepInEpoch > 0 ? 1 : 0)), step \(state.step)")
        } else if options.resume {
            log("no checkpoint at \(options.checkpointPath): starting a new run")
        }

        let metrics = try MetricsLog(directory: options.outputDirectory, metricNames: names,
                                     plottedMetrics: task.plottedMetrics,
                                     rateName: "\(task.itemName)_per_s", resumingAt: options.resume ? state.step : nil)
        let progress = ProgressBar(unit: task.itemName, isTerminal: options.isTerminal ?? (isatty(1) != 0),
                                   plainEvery: options.logEvery,
                                   output: options.showProgress ? { FileHandle.standardOutput.write(Data($0.utf8)) } : { _ in })
        if options.handleInterrupts { InterruptFlag.install() }
        defer { if options.handleInterrupts { InterruptFlag.uninstall() } }

        let start = Date()
        let wallBefore = state.wallSeconds
        var elapsed: Double { Date().timeIntervalSince(start) }
        let budget = options.minutes.map { $0 * 60 }
        var stepSeconds: Double? = nil   // smoothed seconds per step
        var last: [Double] = []
        var lastStepEnd = start

        func save() throws {
            state.wallSeconds = wallBefore + elapsed
            try Checkpoint.save(to: options.checkpointPath, kind: task.kind, configJSON: task.configJSON, state: state,
                                modules: task.modules, optimizers: task.optimizers, generators: task.generators,
                                extraMetadata: task.extraMetadata)
        }
        func summary(_ outcome: TrainingOutcome) -> TrainingSummary {
            TrainingSummary(outcome: outcome, state: state,
                            lastMetrics: Dictionary(uniqueKeysWithValues: zip(names, last)), seconds: elapsed)
        }
        func etaSeconds() -> Double? {
            guard let s = stepSeconds else { return nil }
            var remaining: Double? = nil
            if let e = options.epochs { remaining = Double((e - state.epoch) * stepsPerEpoch - state.stepInEpoch) * s }
            if let budget { remaining = Swift.min(remaining ?? .infinity, Swift.max(0, budget - elapsed)) }
            return remaining
        }
        func label() -> String { "epoch \(state.epoch + 1)" + (options.epochs.map { "/\($0)" } ?? "") }
        func rate() -> Double { stepSeconds.map { Double(task.itemsPerStep) / $0 } ?? 0 }
        func stop(_ outcome: TrainingOutcome) throws -> TrainingSummary {
            progress.finishLine(label: label(), position: state.stepInEpoch, total: stepsPerEpoch, rate: rate(),
                                eta: 0, scalars: Array(zip(names, last)))
            try task.epochEnded(epoch: state.epoch, step: state.step, completed: false)
            try metrics.writePlot()
            try save()
            progress.message("\(outcome == .interrupted ? "interrupted" : "time budget reached") at epoch \(state.epoch + 1), step \(state.step): saved \(options.checkpointPath)")
            return summary(outcome)
        }

        while options.epochs.map({ state.epoch < $0 }) ?? true {
            task.beginEpoch(state.epoch, skippingSteps: state.stepInEpoch)
            while state.stepInEpoch < stepsPerEpoch {
                let values = task.step()
                precondition(values.count == names.count, "\(type(of: task)).step() returned \(values.count) values for \(names.count) metrics")
                state.step += 1
                state.stepInEpoch += 1
                last = values
                let now = Date()
                let dt = now.timeIntervalSince(lastStepEnd)
                lastStepEnd = now
                // The first step pays one-off costs (allocation, BLAS warm-up); skip it in the rate.
                if state.stepInEpoch > 1 || stepSeconds != nil { stepSeconds = stepSeconds.map { 0.9 * $0 + 0.1 * dt } ?? dt }
                if let bad = zip(names, values).first(where: { !$0.1.isFinite }) {
                    progress.message("")
                    try? metrics.flush()
                    throw TrainingError.nonFinite(step: state.step, metric: bad.0, value: bad.1, checkpoint: options.checkpointPath)
                }
                metrics.append(step: state.step, epoch: state.epoch + 1, wallSeconds: wallBefore + elapsed, rate: rate(), values: values)
                progress.update(label: label(), position: state.stepInEpoch, total: stepsPerEpoch, rate: rate(),
                                eta: etaSeconds(), scalars: Array(zip(names, values)))
                if options.handleInterrupts && InterruptFlag.isSet { return try stop(.interrupted) }
                if let budget, elapsed >= budget {
                    if state.stepInEpoch < stepsPerEpoch { return try stop(.timeLimit) }
                    break  // the budget ran out on the last step of the epoch: finish the epoch normally
                }
            }
            progress.finishLine(label: label(), position: state.stepInEpoch, total: stepsPerEpoch, rate: rate(),
                                eta: etaSeconds(), scalars: Array(zip(names, last)))
            let finished = state.epoch
            state.epoch += 1
            state.stepInEpoch = 0
            try task.epochEnded(epoch: finished, step: state.step, completed: true)
            try metrics.writePlot()
            try save()
            if let budget, elapsed >= budget {
                progress.message("time budget reached after epoch \(finished + 1), step \(state.step): saved \(options.checkpointPath)")
                return summary(.timeLimit)
            }
        }
        progress.message("finished \(state.epoch) epochs, step \(state.step): saved \(options.checkpointPath)")
        return summary(.finished)
    }
}
