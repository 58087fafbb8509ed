import Foundation
import Synchronization

/// SIGINT (Ctrl-C) and SIGTERM (what `docker stop`, systemd and SLURM send) for training loops: the
/// first signal sets a flag that the loop reads after each step, so it can save a checkpoint and stop
/// cleanly; a second one exits at once with 128 + the signal number.
public enum InterruptFlag {
    // Atomics because they are written from a signal handler and read by the loop.
    private static let count = Atomic<Int>(0)
    private static let lastSignal = Atomic<Int32>(0)

    /// Whether a signal arrived since `install()` / `reset()`.
    public static var isSet: Bool { count.load(ordering: .relaxed) > 0 }

    /// The signal that set the flag (SIGINT or SIGTERM), or nil.
    public static var signal: Int32? {
        let s = lastSignal.load(ordering: .relaxed)
        return s == 0 ? nil : s
    }

    /// Clears the flag (for a new run in the same process).
    public static func reset() {
        count.store(0, ordering: .relaxed)
        lastSignal.store(0, ordering: .relaxed)
    }

    /// Sets the flag as a SIGINT would (for tests and for callers with their own signal handling).
    public static func raise(_ signal: Int32 = SIGINT) {
        lastSignal.store(signal, ordering: .relaxed)
        count.add(1, ordering: .relaxed)
    }

    /// Installs the SIGINT and SIGTERM handlers and clears the flag.
    public static func install() {
        reset()
        let handler: @convention(c) (Int32) -> Void = { signo in
            InterruptFlag.lastSignal.store(signo, ordering: .relaxed)
            let previous = InterruptFlag.count.add(1, ordering: .relaxed).oldValue
            if previous == 0 {
                let message = "\ninterrupted: finishing this step and saving a checkpoint (once more to quit at once)\n"
                message.utf8CString.withUnsafeBufferPointer { _ = write(2, $0.baseAddress, $0.count - 1) }
            } else {
                _exit(128 + signo)  // the user insists: no checkpoint
            }
        }
        Foundation.signal(SIGINT, handler)
        Foundation.signal(SIGTERM, handler)
    }

    /// Restores the default SIGINT and SIGTERM behaviour.
    public static func uninstall() {
        Foundation.signal(SIGINT, SIG_DFL)
        Foundation.signal(SIGTERM, SIG_DFL)
    }
}
