import Foundation
import Synchronization

/// Ctrl-C handling for training loops: the first SIGINT sets a flag that the loop reads after each
/// step (so it can save a checkpoint and stop cleanly); a second SIGINT exits at once.
public enum InterruptFlag {
    // An atomic because it is written from a signal handler and read by the loop.
    private static let count = Atomic<Int>(0)

    /// Whether Ctrl-C was pressed since `install()` / `reset()`.
    public static var isSet: Bool { count.load(ordering: .relaxed) > 0 }

    /// Clears the flag (for a new run in the same process).
    public static func reset() { count.store(0, ordering: .relaxed) }

    /// Sets the flag as a SIGINT would (for tests and for callers with their own signal handling).
    public static func raise() { count.add(1, ordering: .relaxed) }

    /// Installs the SIGINT handler and clears the flag.
    public static func install() {
        reset()
        signal(SIGINT) { _ in
            let previous = InterruptFlag.count.add(1, ordering: .relaxed).oldValue
            if previous == 0 {
                let message = "\ninterrupt: finishing this step and saving a checkpoint (Ctrl-C again to quit at once)\n"
                message.utf8CString.withUnsafeBufferPointer { _ = write(2, $0.baseAddress, $0.count - 1) }
            } else {
                _exit(130)  // the user insists: no checkpoint
            }
        }
    }

    /// Restores the default SIGINT behaviour.
    public static func uninstall() { signal(SIGINT, SIG_DFL) }
}
