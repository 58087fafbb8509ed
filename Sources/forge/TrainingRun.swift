import ArgumentParser
import Foundation
import DataIO
import TensorCore
import Models
import Training
import Sampling

// What every `forge train …` command shares: the run folder and length flags (`RunFlags`), the
// default seed, and the loop call that maps outcomes to exit codes (`runTraining`).

/// The seed every command uses when `--seed` is not given (nanoGPT's).
let defaultSeed: UInt64 = 1337

/// The flags of a training run, the same for every kind.
struct RunFlags: ParsableArguments {
    @Option(help: ArgumentHelp("Run folder: checkpoint.safetensors (latest), best.safetensors, metrics.csv, loss.png, config.json, samples/.",
                               discussion: "Default checkpoints/KIND-DATA, e.g. checkpoints/gan-fashion-mnist."),
            completion: .directory)
    var out: String?
    @Option(parsing: .unconditional, help: "Total epochs (counting those before a resume).") var epochs: Int?
    @Option(name: [.customLong("steps"), .customLong("iters")], parsing: .unconditional, help: "Total optimisation steps (counting those before a resume); --iters is the same flag.")
    var steps: Int?
    @Option(parsing: .unconditional, help: "Stop after this many minutes of this invocation, saving first.") var minutes: Double?
    @Option(help: "Seed of the weights, data order and noise (default 1337).") var seed: UInt64?
    @Flag(help: "Continue the run saved in --out.") var resume = false
    @Option(parsing: .unconditional, help: "Steps between progress lines when stdout is not a terminal.") var logEvery: Int?
    @Option(parsing: .unconditional, help: "Steps between saves of the latest state, besides epoch ends, evaluations, stops and every 5 minutes (0 = none).")
    var saveEvery: Int = 0
    @Option(help: ArgumentHelp("Folder of the run's TensorBoard event files (scalars, sample images and sounds, the config).",
                               discussion: "Default runs/NAME, NAME being the run folder's name; look with `tensorboard --logdir runs`."),
            completion: .directory)
    var tensorboard: String?
    @Flag(help: "Write no TensorBoard event files.") var noTensorboard = false
    @Option(name: .customLong("init"), help: ArgumentHelp("Fine-tune: start from this checkpoint's weights (a file or run folder) on --data.",
                                                          discussion: "The architecture is the checkpoint's (a shape flag that contradicts it is an error); the optimizer and the learning-rate schedule start afresh unless --init-optimizer. Every checkpoint of the run records the parent's file name, sha256 and step (see `forge info`)."),
            completion: .file())
    var initCheckpoint: String?
    @Flag(help: "With --init: keep the checkpoint's optimizer state (Adam moments) instead of a fresh optimizer.") var initOptimizer = false
    @Option(name: .customLong("freeze"), help: ArgumentHelp("With --init: keep the parameters whose dotted name matches this glob fixed (repeatable), e.g. 'wte.*', 'h.0.*', 'generator.*'.",
                                                            discussion: "A pattern matches a whole name or its tail after a dot; the run prints how many parameters each matched; a pattern matching none is an error."))
    var freeze: [String] = []
    @Flag(help: "char with --init: add the characters of --data that the checkpoint's vocabulary lacks (new embedding rows, initialized as in training).")
    var extendVocab = false
    @Flag(help: ArgumentHelp("char with --init: lengthen the context to --block, longer than the checkpoint's.",
                             discussion: "Position p past the old block starts as a copy of saved position p mod the old block, so the first old-block positions compute what the parent computes; fine-tune for the model to tell the copies apart."))
    var extendBlock = false
    @Flag(help: "Conditional gan/vae with --init: data with other classes re-initializes the class embeddings and class-conditioned layers, keeping the rest.")
    var newClasses = false

    func validate() throws {
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1, got \(epochs)") }
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1, got \(steps)") }
        if let minutes, !(minutes > 0 && minutes.isFinite) { throw ValidationError("--minutes must be a positive number, got \(minutes)") }
        if let logEvery, logEvery < 1 { throw ValidationError("--log-every must be at least 1, got \(logEvery)") }
        if saveEvery < 0 { throw ValidationError("--save-every must be 0 or more, got \(saveEvery)") }
        if noTensorboard, let tensorboard { throw ValidationError("--tensorboard \(tensorboard) and --no-tensorboard contradict each other: give one") }
        if let tensorboard, tensorboard.isEmpty { throw ValidationError("--tensorboard needs a folder, got an empty path") }
        if let initCheckpoint, resume {
            throw ValidationError("--init \(initCheckpoint) starts a new run from a checkpoint's weights and --resume continues the run in --out: give one")
        }
        if initCheckpoint == nil {
            for (flag, given) in [("--init-optimizer", initOptimizer), ("--freeze", !freeze.isEmpty), ("--extend-vocab", extendVocab), ("--extend-block", extendBlock),
                                  ("--new-classes", newClasses)] where given {
                throw ValidationError("\(flag) is a fine-tuning flag: it needs --init CKPT")
            }
        }
    }

    /// Refuses the fine-tuning flags a command does not support (`supported`: e.g. ["--init", "--freeze"]).
    func refuseFineTuningFlags(except supported: Set<String>, command: String) throws {
        let given: [(String, Bool)] = [("--init", initCheckpoint != nil), ("--init-optimizer", initOptimizer), ("--freeze", !freeze.isEmpty),
                                       ("--extend-vocab", extendVocab), ("--extend-block", extendBlock), ("--new-classes", newClasses)]
        if let (flag, _) = given.first(where: { $0.1 && !supported.contains($0.0) }) {
            throw ValidationError("\(flag) is not supported by \(command)")
        }
    }

    /// The TrainingOptions metadata of a fine-tuned run from `parent`, after freezing `--freeze`'s
    /// parameters of `modules` and saying what was frozen and where the weights came from.
    func startFineTuning(parent: LoadedCheckpoint, modules: [(name: String, module: any Module)]) throws -> [String: String] {
        say("fine-tuning from \(parent.path) (step \(parent.state.step))" + (initOptimizer ? " with its optimizer state" : ", fresh optimizer and schedule"))
        if !freeze.isEmpty {
            let frozen = try FineTuning.freeze(freeze, in: modules)
            for (pattern, names) in frozen.matches {
                let shown = names.prefix(4).joined(separator: ", ") + (names.count > 4 ? ", …" : "")
                say("--freeze \(pattern): \(names.count) parameter tensor\(names.count == 1 ? "" : "s") (\(shown))")
            }
            say(String(format: "frozen: %d tensors, %d of %d values (%.1f%%)", frozen.tensorCount, frozen.valueCount, frozen.totalValueCount,
                       100 * Double(frozen.valueCount) / Double(max(frozen.totalValueCount, 1))))
        }
        return try FineTuning.metadata(parent: parent, frozen: freeze)
    }

    /// A flag given with --init whose value contradicts the checkpoint's: an error naming both values.
    func refuseInitContradictions(_ changes: [(String, String?, String)]) throws {
        let differing = changes.compactMap { flag, given, saved -> String? in
            guard let given, given != saved, Double(given).flatMap({ g in Double(saved).map { $0 == g } }) != true else { return nil }
            return "\(flag) \(given) (the checkpoint has \(saved))"
        }
        guard !differing.isEmpty else { return }
        throw ValidationError("--init takes the architecture from \(initCheckpoint ?? "the checkpoint"), but " + differing.joined(separator: ", ")
                              + " contradicts it; drop the flag")
    }

    var seedValue: UInt64 { seed ?? defaultSeed }

    /// `--out`, or `checkpoints/KIND-DATA` (DATA: the data folder's or file's name without extension).
    func runDirectory(kind: String, data: String) -> String {
        if let out { return out }
        var name = URL(fileURLWithPath: data).standardizedFileURL.lastPathComponent
        if name.hasSuffix(".txt") { name = String(name.dropLast(4)) }
        return "checkpoints/\(kind)-\(name.isEmpty ? "data" : name)"
    }

    /// With `--resume` and a checkpoint in the run folder, the config saved in it (whose kind must be
    /// `kind`); otherwise nil, for a new run.
    func savedConfig<C: Decodable>(_ type: C.Type, kind: String, runDirectory: String) throws -> C? {
        let path = RunDirectory.checkpointPath(in: runDirectory)
        guard resume, FileManager.default.fileExists(atPath: path) else { return nil }
        return try Checkpoint.load(path, expectedKind: kind).config(as: type)
    }

    /// The loop options: `--epochs` / `--steps` / `--minutes`, or `defaultEpochs` when none is given.
    func options(runDirectory: String, defaultEpochs: Int, logEvery defaultLogEvery: Int) -> TrainingOptions {
        let noLength = epochs == nil && steps == nil && minutes == nil
        var options = TrainingOptions(runDirectory: runDirectory, epochs: noLength ? defaultEpochs : epochs, steps: steps,
                                      minutes: minutes, resume: resume, saveEvery: saveEvery, logEvery: logEvery ?? defaultLogEvery)
        options.tensorBoardDirectory = tensorBoardDirectory(runDirectory: runDirectory)
        return options
    }

    /// `--tensorboard`, or `runs/NAME` with NAME the run folder's last path component; nil with `--no-tensorboard`.
    func tensorBoardDirectory(runDirectory: String) -> String? {
        if noTensorboard { return nil }
        if let tensorboard { return tensorboard }
        let name = URL(fileURLWithPath: runDirectory).standardizedFileURL.lastPathComponent
        return "runs/" + (name.isEmpty || name == "/" ? "run" : name)
    }
}

/// `--resume` continues the saved run: a flag given now whose value differs from the checkpoint's
/// is an error naming both values (rather than silently winning or losing). `changes` lists
/// (flag, the value given or nil when the flag was not given, the saved value).
func refuseResumeChanges(_ changes: [(String, String?, String)]) throws {
    let differing = changes.compactMap { flag, given, saved -> String? in
        guard let given, given != saved, Double(given).flatMap({ g in Double(saved).map { $0 == g } }) != true else { return nil }
        return "\(flag) \(given) (the checkpoint has \(saved))"
    }
    guard !differing.isEmpty else { return }
    throw ValidationError("--resume continues the saved run, but " + differing.joined(separator: ", ")
                          + " would change it; drop the flag, or start a new run in another --out")
}

/// Exit codes of every forge command (also in `forge --help` and the README).
enum ForgeExit {
    /// Bad flags, data or checkpoint.
    static let badInput: Int32 = 2
    /// Training diverged (NaN/Inf or exploding values); the last good checkpoint is kept.
    static let diverged: Int32 = 3
    /// The run folder or an output cannot be used: busy (another run holds it), unwritable, disk full.
    static let output: Int32 = 4
    /// After SIGINT (130) or SIGTERM (143) a run saves its state and exits with 128 + the signal.
    static func interrupted(_ signal: Int32) -> Int32 { 128 + signal }

    static let table = """
        Exit codes: 0 done (finished or stopped at --minutes), 1 unexpected error, 2 bad flags, data or \
        checkpoint, 3 training diverged (the last good checkpoint is kept), 4 the run folder or an output \
        cannot be used (busy, unwritable, disk full), 130 / 143 stopped by SIGINT / SIGTERM after saving.
        """
}

/// The library's field names in `TrainingError.invalidValue`, as the flags a user types.
let flagForField: [String: String] = [
    "learningRate": "--lr", "minLearningRate": "--min-lr", "iterations": "--iters", "warmupIterations": "--warmup",
    "decayIterations": "--decay-iters", "decayStart": "--decay-start", "batchSize": "--batch", "evalEvery": "--eval-every", "evalIterations": "--eval-iters",
    "weightDecay": "--weight-decay", "gradClip": "--grad-clip", "beta1": "--beta1", "beta2": "--beta2", "dropout": "--dropout",
    "logEvery": "--log-every", "layers": "--layers", "heads": "--heads", "embedding": "--embd", "blockSize": "--block",
    "epochs": "--epochs", "steps": "--steps", "minutes": "--minutes", "saveEvery": "--save-every", "evaluateEvery": "--eval-every",
    "heldOutFraction": "--val-split", "perClass": "--per-class", "only": "--only",
    "trials": "--trials", "eta": "--eta", "budgetMinutes": "--budget-minutes",
]

/// A library error as the user should read it: field names become flags.
func userMessage(_ error: Error) -> String {
    if case let TrainingError.invalidValue(field, value, requirement) = error {
        return "\(flagForField[field] ?? field) must be \(requirement), got \(value)"
    }
    if let e = error as? SamplingError, let field = e.field, let problem = e.problem {
        return "\(flagForField[field] ?? field) \(problem)"
    }
    if case let DataParallelError.batchNotDivisible(batch, ranks) = error {
        let lower = batch / ranks * ranks, upper = lower + ranks
        return "--batch \(batch) is the global batch, split over \(ranks) MPI ranks of --batch ÷ \(ranks) rows each: give a multiple of \(ranks) "
            + "(e.g. \(lower > 0 ? "\(lower) or " : "")\(upper)) or another number of ranks (mpirun -np)"
    }
    if let e = error as? CharTransformerError, e.description.contains("no n_head") {
        return "\(e.description) (--heads)"
    }
    if let file = fileError(error) { return file }
    return "\(error)"
}

/// A Foundation file error (a full disk, a missing folder, no permission) as "cannot write PATH:
/// reason" instead of an NSCocoaErrorDomain dump; nil for other errors.
func fileError(_ error: Error) -> String? {
    guard let cocoa = error as? CocoaError else { return nil }
    let path = cocoa.filePath ?? cocoa.url?.path ?? "a file"
    var reason = cocoa.localizedDescription
    if let underlying = cocoa.underlying as NSError?, underlying.domain == NSPOSIXErrorDomain {
        reason = String(cString: strerror(Int32(underlying.code)))
    } else if cocoa.code == .fileWriteOutOfSpace {
        reason = "no space left on device"
    }
    let verb = (256...511).contains(cocoa.code.rawValue) ? "read" : "write"  // Cocoa file-read codes are 256–511
    return "cannot \(verb) \(path): \(reason)"
}

/// The exit code for a library error.
func forgeExitCode(for error: Error) -> Int32 {
    switch error {
    case TrainingError.diverged: return ForgeExit.diverged
    case TrainingError.runFolderBusy, TrainingError.runFolderUnwritable: return ForgeExit.output
    case is TensorBoardError: return ForgeExit.output  // the --tensorboard folder or its event file cannot be written
    case let e as DataIOError:
        // a missing input is bad input; any other I/O failure is the output side (disk full, permissions)
        if case let .io(_, message) = e { return message.lowercased().contains("no such file") ? ForgeExit.badInput : ForgeExit.output }
        return ForgeExit.badInput
    case is CocoaError: return ForgeExit.output
    case DataParallelError.communication: return 1
    case is DataParallelError: return ForgeExit.badInput  // MPI missing, a batch that does not split, ranks that disagree
    case is TrainingError, is CheckpointError, is VocabularyMismatchError, is CharTransformerError, is UnknownCharacterError, is SamplingError,
         is StateLoadError, is OptimizerStateError: return ForgeExit.badInput
    default: return 1
    }
}

/// The loop part of every `forge train …` command: runs the shared training loop and lets the family
/// print its summary; errors and interrupts become the exit codes of `ForgeExit`.
func runTraining(_ task: any TrainingTask, _ options: TrainingOptions, report: (TrainingSummary) throws -> Void) throws {
    if let group = options.dataParallel, group.size > 1 { return try runDataParallelTraining(task, options, group: group, report: report) }
    if let ranks = DataParallelGroup.launchedWorldSize, ranks > 1 {
        // N copies of a single-process run would fight over one run folder
        throw ValidationError("forge train \(task.kind) cannot run data-parallel yet (train char, train vae and train gan can): run it without mpirun, or with -np 1")
    }
    let summary = try TrainingLoop(task: task, options: options).run()
    try report(summary)
    say("run folder: \(options.runDirectory) (checkpoint.safetensors, metrics.csv, loss.png, samples/)")
    if summary.outcome == .interrupted { throw ExitCode(ForgeExit.interrupted(summary.signal ?? SIGINT)) }
}

/// "1h02m03s", "2m05s", "4.2s".
func formatDuration(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return s >= 3600 ? String(format: "%dh%02dm%02ds", s / 3600, s / 60 % 60, s % 60)
        : s >= 60 ? String(format: "%dm%02ds", s / 60, s % 60) : String(format: "%.1fs", seconds)
}

/// The summary line's start: "finished after 3 epochs (step 2811), 2m05s this run", "stopped at the
/// time limit after 0.9 epochs (step 52), …".
func outcomeWords(_ summary: TrainingSummary) -> String {
    let s = summary.state
    let epochs = summary.epochsTrained
    // Whole epochs as integers; inside an epoch one decimal, or two below 0.1 so a short run does not read "0.0".
    let number = s.stepInEpoch == 0 ? "\(s.epoch)" : String(format: epochs < 0.095 ? "%.2f" : "%.1f", epochs)
    let epochText = "after \(number) epoch\(number == "1" ? "" : "s")"
    return "\(summary.outcome.words) \(epochText) (step \(s.step)), \(formatDuration(summary.seconds)) this run"
}

/// The batch size for `count` training items: `requested`, or `count` with a warning on stderr when the
/// data holds fewer than one batch (PyTorch's DataLoader likewise yields one short batch), so a small
/// folder trains with the defaults. Fewer than 2 items are left to the task's own error. `warn`
/// prints the warning (under mpirun, rank 0's `printError` and nothing on the other ranks).
func batchSizeFitting(_ requested: Int, items count: Int, noun: String, warn: (String) -> Void = printError) -> Int {
    guard count < requested, count >= 2 else { return requested }
    warn("warning: \(count) \(noun) are fewer than one batch of \(requested): training with one batch of \(count) per step (--batch \(count))")
    return count
}

/// `runTraining` as one rank of an `mpirun` job. Rank 0 prints the summary and the errors. An error
/// every rank meets at the same step (a divergence, a batch that does not split) ends each rank
/// after MPI_Finalize with the usual exit code; any other error may strike one rank alone, whose
/// partners would wait for it forever, so it ends the whole job with MPI_Abort and that exit code.
private func runDataParallelTraining(_ task: any TrainingTask, _ options: TrainingOptions, group: DataParallelGroup,
                                     report: (TrainingSummary) throws -> Void) throws {
    let summary: TrainingSummary
    do {
        summary = try TrainingLoop(task: task, options: options).run()
    } catch {
        let collective: Bool
        switch error {
        case TrainingError.diverged, DataParallelError.batchNotDivisible, DataParallelError.mismatch: collective = true
        default: collective = false
        }
        if collective {
            group.finalize()
            if group.isRoot { throw error }
            throw ExitCode(forgeExitCode(for: error))
        }
        let code = forgeExitCode(for: error)
        FileHandle.standardError.write(Data("forge: error: rank \(group.rank) of \(group.size): \(userMessage(error))\n".utf8))
        group.abort(code: code == 1 ? 1 : code)
    }
    group.finalize()
    guard group.isRoot else {
        if summary.outcome == .interrupted { throw ExitCode(ForgeExit.interrupted(summary.signal ?? SIGINT)) }
        return
    }
    try report(summary)
    say("run folder: \(options.runDirectory) (checkpoint.safetensors, metrics.csv, loss.png, samples/); \(group.size) ranks")
    say(String(format: "allreduce on rank 0: %.2f s of this run's %.2f s (%.1f %%, waiting for slower ranks included)",
               group.allreduceSeconds, summary.seconds, 100 * group.allreduceSeconds / max(summary.seconds, 1e-9)))
    if summary.outcome == .interrupted { throw ExitCode(ForgeExit.interrupted(summary.signal ?? SIGINT)) }
}
