import XCTest
import Foundation
import TensorCore
import Models
import Training

/// The run folder: one run at a time, checked before training, cleared of a killed run's temporaries;
/// and the loop's answers to SIGTERM and to values that explode without turning NaN.
final class RunDirectoryTests: XCTestCase {
    /// A second run on the same folder is refused, naming the holder's pid; after the first ends, it may start.
    func testASecondRunOnTheSameFolderIsRefused() throws {
        let dir = try temporaryFolder(self)
        let first = try RunDirectory(dir)
        XCTAssertThrowsError(try TrainingLoop(task: LineFitTask(), options: quietOptions(dir, epochs: 1), log: { _ in }).run()) { error in
            guard case let TrainingError.runFolderBusy(directory, holder) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(directory, dir)
            XCTAssertEqual(holder, "pid \(getpid())")
            XCTAssertTrue("\(error)".contains("in use by another training run"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/checkpoint.safetensors"), "the refused run wrote nothing")
        first.release()
        XCTAssertEqual(try TrainingLoop(task: LineFitTask(), options: quietOptions(dir, epochs: 1), log: { _ in }).run().outcome, .finished)
    }

    /// Temporary files of atomic writes that a killed run left are removed when the next run starts.
    func testStaleTemporariesAreRemovedAtStart() throws {
        let dir = try temporaryFolder(self)
        try FileManager.default.createDirectory(atPath: dir + "/samples", withIntermediateDirectories: true)
        let stale = [dir + "/.checkpoint.safetensors.tmp-123-456", dir + "/samples/.loss.png.tmp-1-2"]
        for path in stale { XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(count: 1000))) }
        let keep = dir + "/notes.txt"
        XCTAssertTrue(FileManager.default.createFile(atPath: keep, contents: Data("mine".utf8)))
        _ = try TrainingLoop(task: LineFitTask(), options: quietOptions(dir, epochs: 1), log: { _ in }).run()
        for path in stale { XCTAssertFalse(FileManager.default.fileExists(atPath: path), path) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: keep))
    }

    /// A run folder that cannot be created is an error before the first step.
    func testUnwritableFolderIsFoundBeforeTraining() throws {
        let dir = try temporaryFolder(self)
        let blocker = dir + "/file"
        XCTAssertTrue(FileManager.default.createFile(atPath: blocker, contents: Data()))
        let task = LineFitTask()
        XCTAssertThrowsError(try TrainingLoop(task: task, options: quietOptions(blocker + "/run", epochs: 1), log: { _ in }).run()) { error in
            guard case TrainingError.runFolderUnwritable = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(task.stepsRun, 0)
    }

    /// SIGTERM (docker stop, systemd, SLURM) saves and stops like Ctrl-C, and says which signal it was.
    func testSIGTERMSavesAfterTheCurrentStep() throws {
        let dir = try temporaryFolder(self)
        let task = LineFitTask()
        task.onStep = { step in
            if step == 3 { kill(getpid(), SIGTERM) }  // a real signal to this process, caught by the loop's handler
            return nil
        }
        let summary = try TrainingLoop(task: task, options: quietOptions(dir, epochs: 10, interrupts: true), log: { _ in }).run()
        XCTAssertEqual(summary.outcome, .interrupted)
        XCTAssertEqual(summary.signal, SIGTERM)
        XCTAssertEqual(summary.state.step, 3)
        XCTAssertEqual(try Checkpoint.load(dir + "/checkpoint.safetensors").state.step, 3)
        InterruptFlag.reset()
    }

    /// A loss pinned far past any sane value stops the run as a NaN would (a GAN at --lr 1e6 reached
    /// loss_g 2e16 with finite numbers and used to "finish").
    func testExplodingButFiniteValuesStopTheRun() throws {
        let dir = try temporaryFolder(self)
        let task = LineFitTask()
        task.onStep = { $0 == 5 ? 2e16 : nil }
        XCTAssertThrowsError(try TrainingLoop(task: task, options: quietOptions(dir, epochs: 3), log: { _ in }).run()) { error in
            guard case let TrainingError.diverged(step, _, value, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(step, 5)
            XCTAssertEqual(value, 2e16)
            XCTAssertTrue("\(error)".contains("past any sane value"), "\(error)")
        }
    }

    /// Bad loop options are refused with the field that is wrong.
    func testBadLengthsAreRefused() throws {
        let dir = try temporaryFolder(self)
        for (options, field) in [(TrainingOptions(runDirectory: dir, epochs: 0), "epochs"), (TrainingOptions(runDirectory: dir, steps: -5), "steps"),
                                 (TrainingOptions(runDirectory: dir, minutes: .nan), "minutes")] {
            XCTAssertThrowsError(try TrainingLoop(task: LineFitTask(), options: options, log: { _ in }).run()) { error in
                guard case let TrainingError.invalidValue(f, _, _) = error else { return XCTFail("\(error)") }
                XCTAssertEqual(f, field)
            }
        }
    }
}
