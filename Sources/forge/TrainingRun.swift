import ArgumentParser
import DataIO
import Training

/// The loop part of every `forge train …` command: runs the shared training loop, lets the family
/// print its summary, and maps the outcomes to exit codes the same way everywhere — 130 after a
/// Ctrl-C save, 3 when training diverged (NaN/Inf; the last good checkpoint is kept), 2 for an
/// unreadable checkpoint or data file.
func runTraining(_ task: any TrainingTask, _ options: TrainingOptions, report: (TrainingSummary) throws -> Void) throws {
    do {
        let summary = try TrainingLoop(task: task, options: options).run()
        try report(summary)
        say("checkpoint: \(options.checkpointPath)")
        if summary.outcome == .interrupted { throw ExitCode(130) }
    } catch let error as TrainingError {
        printError("forge: \(error)")
        throw ExitCode(3)
    } catch let error as CheckpointError {
        printError("forge: \(error)")
        throw ExitCode(2)
    } catch let error as DataIOError {
        printError("forge: \(error)")
        throw ExitCode(2)
    }
}
