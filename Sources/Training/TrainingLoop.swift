import Foundation
import TensorCore
import Models
import DataIO

/// Runs a `TrainingTask`: epochs of steps with progress, metrics, evaluations, checkpoints, resume,
/// SIGINT/SIGTERM, a time budget and a divergence guard (see the header of Training.swift).
public final class TrainingLoop {
    /// The task trained: its steps, evaluations, checkpoint contents and samples.
    public let task: any TrainingTask
    /// How long to train, where to write and how often to evaluate, save and log.
    public let options: TrainingOptions
    /// Where status messages go (checkpoint saved, resumed from …); stdout by default.
    public var log: (String) -> Void

    /// A loop over `task` with `options`; `log` replaces stdout as the destination of status messages.
    public init(task: any TrainingTask, options: TrainingOptions, log: ((String) -> Void)? = nil) {
        self.task = task
        self.options = options
        self.log = log ?? { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) }
    }

    /// Trains until the epochs or steps are done, the time budget runs out or a signal arrives;
    /// saves the latest state at every epoch end, on the save cadence and when stopping, and the best
    /// state whenever the task's best metric improves. Throws `TrainingError.diverged` (without
    /// saving) when a scalar turns NaN/Inf or past the task's limit, `TrainingError` for bad options or
    /// a busy or unwritable run folder, and `CheckpointError` when `resume` finds an unusable checkpoint.
    public func run() throws -> TrainingSummary {
        if let problem = options.problem() { throw problem }
        let stepsPerEpoch = task.stepsPerEpoch
        guard stepsPerEpoch > 0 else { throw TrainingError.invalidConfiguration("the task has no steps per epoch (too little data for one batch?)") }
        if let best = task.bestMetric, !task.evaluationNames.contains(best) {
            preconditionFailure("\(type(of: task)).bestMetric \(best) is not one of its evaluationNames")
        }
        let names = task.metricNames
        let evaluationNames = task.evaluationNames
        // Data parallel (see DataParallel.swift): rank 0 alone owns the run folder and prints.
        let group = options.dataParallel.flatMap { $0.size > 1 ? $0 : nil }
        if let group {
            guard let parallelTask = task as? any DataParallelTrainingTask else {
                throw TrainingError.invalidConfiguration("\(task.kind) training cannot run data-parallel yet: run it as one process, without mpirun")
            }
            try parallelTask.joinDataParallel(group)
        }
        let isRoot = group?.isRoot ?? true
        let log: (String) -> Void = isRoot ? self.log : { _ in }
        let folder = isRoot ? try RunDirectory(options.runDirectory) : nil
        defer { folder?.release() }

        var state = TrainingState()
        var inheritedMetadata = options.extraMetadata
        if options.resume, FileManager.default.fileExists(atPath: options.checkpointPath) {
            let saved = try Checkpoint.load(options.checkpointPath, expectedKind: task.kind)
            state = try restore(from: saved)
            // a fine-tuned run stays one: its lineage and its frozen parameters carry over
            for key in [Checkpoint.parentKey, Checkpoint.lineageKey, Checkpoint.frozenKey] {
                if let value = saved.metadata[key] { inheritedMetadata[key] = value }
            }
            let frozen = try saved.stringArray(Checkpoint.frozenKey)
            if !frozen.isEmpty { try FineTuning.freeze(frozen, in: task.modules) }
            log("resumed from \(options.checkpointPath) at step \(state.step) (epoch \(state.epoch + 1))")
        } else if options.resume {
            log("no checkpoint at \(options.checkpointPath): starting a new run")
        }
        if let group {
            // every rank starts from rank 0's weights and optimizer state (a fresh run or a resumed one)
            try group.broadcastValues(task.modules.flatMap { $0.module.namedParameters() }, what: "parameters")
            for (name, optimizer) in task.optimizers { try group.broadcastState(of: optimizer, prefix: "optimizer.\(name).") }
            let overlap = (task as? any DataParallelTrainingTask)?.reducesWhileBackwardRuns == true
            log("data parallel: \(group.size) ranks, \(Threads.count) thread\(Threads.count == 1 ? "" : "s") each; gradients reduced "
                + (overlap ? "while backward runs" : "after backward") + "; rank 0 writes the run folder")
        }
        if let steps = options.steps, state.step >= steps {
            log("the run already has \(state.step) of \(steps) steps: nothing to train")
        }
        if isRoot { try writeConfig() }
        // TensorBoard (nil = off): scalars of every metrics row, the config as text, and the task's media.
        let board = isRoot ? try options.tensorBoardDirectory.map { try TensorBoardWriter(directory: $0) } : nil
        task.tensorBoard = board
        defer { try? board?.close(); task.tensorBoard = nil }
        if options.resume && state.step > 0 { board?.addSessionStart(step: state.step + 1) }  // drops steps logged after the checkpoint
        board?.addText("hparams/config", task.configJSON, step: state.step)

        let metrics = isRoot ? try MetricsLog(directory: options.runDirectory, metricNames: names, evaluationNames: evaluationNames,
                                              plottedMetrics: task.plottedMetrics, resumingAt: options.resume ? state.step : nil) : nil
        let progress = ProgressBar(unit: task.itemName, isTerminal: options.isTerminal ?? (isatty(1) != 0),
                                   plainEvery: options.logEvery,
                                   output: options.showProgress && isRoot ? { FileHandle.standardOutput.write(Data($0.utf8)) } : { _ in })
        if options.handleInterrupts { InterruptFlag.install() }
        defer { if options.handleInterrupts { InterruptFlag.uninstall() } }

        let start = Date()
        let wallBefore = state.wallSeconds
        var elapsed: Double { Date().timeIntervalSince(start) }
        let budget = options.minutes.map { $0 * 60 }
        let schedule = task.learningRateSchedule
        var clock = StepClock()
        var evaluationSeconds: Double? = nil
        var last: [Double] = []
        var lastEvaluation: [Double] = []
        var lastSave = Date()
        var stepsTimed = 0, timedSeconds = 0.0

        func currentRate() -> Double { Double(task.optimizers.first?.optimizer.learningRate ?? .nan) }
        func save(_ path: String? = nil) throws {
            guard isRoot else { return }
            state.wallSeconds = wallBefore + elapsed
            try Checkpoint.save(to: path ?? options.checkpointPath, kind: task.kind, configJSON: task.configJSON, state: state,
                                modules: task.modules, optimizers: task.optimizers, generators: task.generators,
                                extraMetadata: task.extraMetadata.merging(inheritedMetadata) { _, inherited in inherited })
            if path == nil { lastSave = Date() }
        }
        func evaluate() throws {
            let t0 = Date()
            let values = try task.evaluate()
            precondition(values.count == evaluationNames.count, "\(type(of: task)).evaluate() returned \(values.count) values for \(evaluationNames.count) names")
            let dt = Date().timeIntervalSince(t0)
            evaluationSeconds = evaluationSeconds.map { 0.5 * $0 + 0.5 * dt } ?? dt
            lastEvaluation = values
            state.evaluatedStep = state.step
            metrics?.appendEvaluation(step: state.step, epoch: state.epoch + 1, wallSeconds: wallBefore + elapsed,
                                     learningRate: currentRate(), values: values)
            board?.addScalars(Array(zip(evaluationNames, values)), step: state.step)
            if let board, let text = task.evaluationSample() { board.addText("samples/text", text, step: state.step) }
            var line = "step \(state.step): " + zip(evaluationNames, values).map { String(format: "%@ %.4f", $0.0, $0.1) }.joined(separator: ", ")
            if let best = task.bestMetric, let k = evaluationNames.firstIndex(of: best) {
                let value = values[k]
                if value.isFinite && value < (state.bestValue ?? .infinity) {
                    state.bestValue = value
                    state.bestStep = state.step
                    try save(options.bestPath)
                    line += "  → best.safetensors"
                }
            }
            progress.message(line)
            try metrics?.writePlot(title: "\(task.kind) loss")
            try board?.addImageFile("loss", path: metrics?.plotPath ?? "", step: state.step)
            try board?.flush()
            try save()  // the evaluation state (best value, generators) with the weights it describes
        }
        func etaSeconds() -> Double? {
            guard let s = clock.secondsPerStep else { return nil }
            var stepsLeft = Double.infinity
            if let e = options.epochs { stepsLeft = Double((e - state.epoch) * stepsPerEpoch - state.stepInEpoch) }
            if let total = options.steps { stepsLeft = Swift.min(stepsLeft, Double(total - state.step)) }
            var remaining = stepsLeft * s
            if let e = evaluationSeconds, options.evaluateEvery > 0, stepsLeft.isFinite {
                remaining += (stepsLeft / Double(options.evaluateEvery)).rounded(.up) * e
            }
            if let budget { remaining = Swift.min(remaining, Swift.max(0, budget - elapsed)) }
            return remaining.isFinite ? remaining : nil
        }
        func label() -> String {
            if options.steps != nil && options.epochs == nil { return "step" }
            return "epoch \(state.epoch + 1)" + (options.epochs.map { "/\($0)" } ?? "")
        }
        func position() -> (Int, Int) {
            options.steps != nil && options.epochs == nil ? (state.step, options.steps!) : (state.stepInEpoch, stepsPerEpoch)
        }
        func summary(_ outcome: TrainingOutcome) -> TrainingSummary {
            TrainingSummary(outcome: outcome, state: state, lastMetrics: Dictionary(uniqueKeysWithValues: zip(names, last)),
                            lastEvaluation: Dictionary(uniqueKeysWithValues: zip(evaluationNames, lastEvaluation)),
                            seconds: elapsed, itemsPerSecond: timedSeconds > 0 ? Double(stepsTimed * task.itemsPerStep) / timedSeconds : 0,
                            signal: outcome == .interrupted ? InterruptFlag.signal : nil, stepsPerEpoch: stepsPerEpoch)
        }
        func finishLine() {
            let (p, t) = position()
            progress.finishLine(label: label(), position: p, total: t, rate: clock.rate(items: task.itemsPerStep),
                                eta: etaSeconds(), scalars: Array(zip(names, last)))
        }
        func stop(_ outcome: TrainingOutcome) throws -> TrainingSummary {
            finishLine()
            try epochEnded(epoch: state.epoch, step: state.step, completed: false)
            try metrics?.writePlot(title: "\(task.kind) loss")
            try save()
            let why = outcome == .interrupted ? "interrupted" : "stopped at the time limit"
            progress.message("\(why) at step \(state.step) (epoch \(state.epoch + 1)): saved \(options.checkpointPath)")
            return summary(outcome)
        }
        // the task's artefacts (samples) are written by rank 0 alone
        func epochEnded(epoch: Int, step: Int, completed: Bool) throws {
            if isRoot { try task.epochEnded(epoch: epoch, step: step, completed: completed) }
        }
        // Stopping is decided together: one rank alone leaving would leave the others waiting in the
        // next collective. Returns (diverged somewhere, interrupted somewhere, over the budget somewhere).
        var budgetSpent = false
        func stopFlags(diverged: Bool) throws -> (diverged: Bool, interrupted: Bool, overBudget: Bool) {
            let interrupted = options.handleInterrupts && InterruptFlag.isSet
            let over = budget.map { elapsed >= $0 } ?? false
            guard let group else { return (diverged, interrupted, over) }
            let any = try group.anyRank([diverged, interrupted, over])
            return (any[0], any[1], any[2])
        }
        var stepsDone: Bool { options.steps.map { state.step >= $0 } ?? false }
        var epochsDone: Bool { options.epochs.map { state.epoch >= $0 } ?? false }

        while !epochsDone && !stepsDone {
            task.beginEpoch(state.epoch, skippingSteps: state.stepInEpoch)
            while state.stepInEpoch < stepsPerEpoch && !stepsDone {
                if let schedule {
                    let rate = schedule.learningRate(at: state.step)
                    for (_, optimizer) in task.optimizers { optimizer.learningRate = rate }
                }
                if options.evaluateEvery > 0, !evaluationNames.isEmpty, state.step % options.evaluateEvery == 0,
                   state.evaluatedStep != state.step {
                    try evaluate()
                    clock.skipNext()  // the evaluation's time is not a step's
                }
                let t0 = Date()
                let values = task.step()
                let dt = Date().timeIntervalSince(t0)
                precondition(values.count == names.count, "\(type(of: task)).step() returned \(values.count) values for \(names.count) metrics")
                state.step += 1
                state.stepInEpoch += 1
                last = values
                if clock.record(dt) { stepsTimed += 1; timedSeconds += dt }
                let limit = task.divergenceLimit ?? .infinity
                let bad = zip(names, values).first(where: { !$0.1.isFinite || abs($0.1) > limit })
                let flags = try stopFlags(diverged: bad != nil)
                budgetSpent = flags.overBudget
                if flags.diverged {
                    progress.message("")
                    try? metrics?.flush()
                    throw TrainingError.diverged(step: state.step, metric: bad?.0 ?? "a scalar of another rank", value: bad?.1 ?? .nan,
                                                 checkpoint: options.checkpointPath)
                }
                metrics?.append(step: state.step, epoch: state.epoch + 1, wallSeconds: wallBefore + elapsed,
                               rate: clock.rate(items: task.itemsPerStep), learningRate: currentRate(), values: values)
                board?.addScalars(Array(zip(names, values)) + [("lr", currentRate())]
                                  + (clock.secondsPerStep != nil ? [("items_per_s", clock.rate(items: task.itemsPerStep))] : []),
                                  step: state.step)
                let (p, t) = position()
                progress.update(label: label(), position: p, total: t, rate: clock.rate(items: task.itemsPerStep),
                                eta: etaSeconds(), scalars: Array(zip(names, values)))
                if flags.interrupted { return try stop(.interrupted) }
                if budgetSpent {
                    if state.stepInEpoch < stepsPerEpoch && !stepsDone { return try stop(.timeLimit) }
                    break  // the budget ran out on the last step of an epoch or of the run: finish it normally
                }
                if options.saveEvery > 0 && state.step % options.saveEvery == 0
                    || Date().timeIntervalSince(lastSave) >= options.saveIntervalSeconds {
                    try metrics?.flush()
                    try save()
                }
            }
            if state.stepInEpoch == stepsPerEpoch {
                if options.steps == nil || options.epochs != nil { finishLine() }
                let finished = state.epoch
                state.epoch += 1
                state.stepInEpoch = 0
                try epochEnded(epoch: finished, step: state.step, completed: true)
            }
            try metrics?.writePlot(title: "\(task.kind) loss")
            try board?.addImageFile("loss", path: metrics?.plotPath ?? "", step: state.step)
            try save()
            if budgetSpent, !stepsDone, !epochsDone {
                // no extra evaluation, as at a stop inside an epoch: what a timed run records must not
                // depend on whether the budget ran out on an epoch's last step
                progress.message("stopped at the time limit at step \(state.step) (epoch \(state.epoch)): saved \(options.checkpointPath)")
                return summary(.timeLimit)
            }
        }
        // Done: a last evaluation of the final weights, the final samples when the run ended inside an
        // epoch (a step-limited run), and the final state.
        if !evaluationNames.isEmpty && state.evaluatedStep != state.step { try evaluate() }
        if state.stepInEpoch > 0 {
            finishLine()
            try epochEnded(epoch: state.epoch, step: state.step, completed: false)
        }
        try metrics?.writePlot(title: "\(task.kind) loss")
        try save()
        progress.message("finished at step \(state.step): saved \(options.checkpointPath)")
        return summary(.finished)
    }

    /// Puts a saved run back into the task: the configuration must match, then modules, optimizers
    /// and generators are restored; returns the saved position.
    private func restore(from saved: LoadedCheckpoint) throws -> TrainingState {
        guard saved.configJSON == task.configJSON else {
            throw CheckpointError(path: saved.path, message: "was trained with a different configuration:\n  saved: \(saved.configJSON)\n  now:   \(task.configJSON)")
        }
        // A file cut down for sampling (scripts/ship-checkpoint.py, or any weights-only copy) would
        // otherwise resume with fresh Adam moments: a different run, silently.
        if saved.state.step > 0, task.optimizers.contains(where: { $0.optimizer.keepsStateAfterAStep }),
           !saved.tensors.keys.contains(where: { $0.hasPrefix("optimizer.") }) {
            throw CheckpointError(path: saved.path, message: "holds weights but no optimizer state (a copy cut down for sampling), "
                + "so step \(saved.state.step) cannot be resumed exactly; fine-tune from it with --init instead")
        }
        try saved.restore(modules: task.modules)
        try saved.restore(optimizers: task.optimizers)
        var generators = task.generators
        for name in generators.keys {
            // a generator added to a task after the checkpoint was written keeps its fresh seed
            if let g = saved.generators[name] { generators[name] = g }
        }
        task.generators = generators
        return saved.state
    }

    /// `config.json` in the run folder: the kind, the model configuration and the run's lengths.
    private func writeConfig() throws {
        var run: [String: String] = ["kind": task.kind]
        if let e = options.epochs { run["epochs"] = "\(e)" }
        if let s = options.steps { run["steps"] = "\(s)" }
        if let m = options.minutes { run["minutes"] = "\(m)" }
        let text = "{\"kind\": \"\(task.kind)\", \"config\": \(task.configJSON), \"run\": \(try Checkpoint.jsonString(run))}\n"
        try FileIO.writeAtomically(Array(text.utf8), to: options.runDirectory + "/config.json")
    }
}

/// The smoothed seconds per step of a run; the first step (one-off allocation, BLAS warm-up) and
/// the step after an evaluation are left out.
struct StepClock {
    private(set) var secondsPerStep: Double? = nil
    private var skip = 1

    mutating func skipNext() { skip = max(skip, 1) }

    /// Records a step's seconds; returns whether it counted.
    mutating func record(_ seconds: Double) -> Bool {
        if skip > 0 { skip -= 1; return false }
        secondsPerStep = secondsPerStep.map { 0.9 * $0 + 0.1 * seconds } ?? seconds
        return true
    }

    func rate(items: Int) -> Double { secondsPerStep.map { Double(items) / $0 } ?? 0 }
}
