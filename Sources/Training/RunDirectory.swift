import Foundation

/// The run folder of a training run (the CLI's `--out`): where the files are, and the guard that
/// keeps a second process out of it.
///
///     DIR/checkpoint.safetensors   latest full state (resume from it)
///     DIR/best.safetensors         best state by the task's evaluation (char, VAE)
///     DIR/metrics.csv, loss.png    every step's scalars, and their curves
///     DIR/config.json              the model configuration and the run's settings
///     DIR/samples/                 progress pictures, text and sound
///     DIR/.lock                    held (flock) while a run trains here
public final class RunDirectory {
    /// The run folder's path, as given.
    public let path: String
    private var lockDescriptor: Int32 = -1

    /// `DIR/checkpoint.safetensors`, the latest full state a resume starts from.
    public static func checkpointPath(in directory: String) -> String { directory + "/checkpoint.safetensors" }
    /// `DIR/samples`, where tasks write their progress pictures, text and sound.
    public static func samplesDirectory(in directory: String) -> String { directory + "/samples" }

    /// Creates the folder, checks that files can be written into it, takes the lock (another live
    /// run here is `TrainingError.runFolderBusy` naming its pid) and removes the temporary files a
    /// killed run left behind (`.NAME.tmp-*`, written by the atomic writes).
    public init(_ path: String) throws {
        self.path = path
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw TrainingError.runFolderUnwritable(directory: path, reason: RunDirectory.reason(error))
        }
        let lockPath = path + "/.lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw TrainingError.runFolderUnwritable(directory: path, reason: String(cString: strerror(errno)))
        }
        if flock(fd, LOCK_EX | LOCK_NB) != 0 {
            var buffer = [UInt8](repeating: 0, count: 64)
            let n = pread(fd, &buffer, 63, 0)
            close(fd)
            let holder = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
            throw TrainingError.runFolderBusy(directory: path, holder: holder.isEmpty ? "another process" : holder)
        }
        lockDescriptor = fd
        // The pid, for the message a second run prints; also proves the folder takes writes.
        let text = Array("pid \(getpid())\n".utf8)
        if ftruncate(fd, 0) != 0 || pwrite(fd, text, text.count, 0) != text.count {
            let reason = String(cString: strerror(errno))
            close(fd)
            lockDescriptor = -1
            throw TrainingError.runFolderUnwritable(directory: path, reason: reason)
        }
        removeStaleTemporaries()
    }

    deinit { release() }

    /// Gives up the lock (also done when the object goes away or the process ends).
    public func release() {
        guard lockDescriptor >= 0 else { return }
        flock(lockDescriptor, LOCK_UN)
        close(lockDescriptor)
        lockDescriptor = -1
    }

    /// Temporary files of atomic writes (`.NAME.tmp-…`) in the folder and its `samples/`: only a
    /// killed writer leaves them, and while we hold the lock no writer of this run is alive.
    func removeStaleTemporaries() {
        for folder in [path, RunDirectory.samplesDirectory(in: path)] {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { continue }
            for name in names where name.hasPrefix(".") && name.contains(".tmp-") {
                try? FileManager.default.removeItem(atPath: folder + "/" + name)
            }
        }
    }

    static func reason(_ error: Error) -> String {
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        return ns.localizedDescription
    }
}
