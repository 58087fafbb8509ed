import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Whole-file reads and crash-safe whole-file writes.
public enum FileIO {
    /// The bytes of the file at `path`.
    public static func readBytes(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 { throw DataIOError.io(path: path, message: "cannot open: \(errnoMessage())") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DataIOError.io(path: path, message: "cannot stat: \(errnoMessage())") }
        if (info.st_mode & S_IFMT) == S_IFDIR { throw DataIOError.io(path: path, message: "is a folder, not a file") }
        var bytes = [UInt8]()
        bytes.reserveCapacity(max(0, Int(info.st_size)))
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw DataIOError.io(path: path, message: "read failed: \(errnoMessage())")
            }
            if n == 0 { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return bytes
    }

    /// Writes `bytes` to `path` atomically: the bytes go to a temporary file in the same folder,
    /// which is fsynced and then renamed over `path`, and the folder is fsynced so the rename
    /// itself is durable. A crash at any point leaves either the old file or the new one, never a
    /// partial file.
    public static func writeAtomically(_ bytes: [UInt8], to path: String) throws {
        try writeAtomically(to: path) { temporaryPath in
            let fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
            if fd < 0 { throw DataIOError.io(path: path, message: "cannot create temporary file: \(errnoMessage())") }
            defer { close(fd) }
            var written = 0
            try bytes.withUnsafeBytes { raw in
                while written < raw.count {
                    let n = write(fd, raw.baseAddress! + written, raw.count - written)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw DataIOError.io(path: path, message: "write failed: \(errnoMessage())")
                    }
                    written += n
                }
            }
            if fsync(fd) != 0 { throw DataIOError.io(path: path, message: "fsync failed: \(errnoMessage())") }
        }
    }

    /// Atomic write for producers that write a file by path themselves (e.g. libsndfile):
    /// `produce` writes the temporary path it is given; the file there is fsynced, renamed over
    /// `path`, and the folder fsynced.
    public static func writeAtomically(to path: String, _ produce: (String) throws -> Void) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let temporaryPath = folder + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        do {
            try produce(temporaryPath)
            // Flush again in case the producer did not.
            let fd = open(temporaryPath, O_RDONLY | O_CLOEXEC)
            if fd < 0 { throw DataIOError.io(path: path, message: "temporary file vanished: \(errnoMessage())") }
            let synced = fsync(fd) == 0
            close(fd)
            if !synced { throw DataIOError.io(path: path, message: "fsync failed: \(errnoMessage())") }
            if rename(temporaryPath, path) != 0 {
                throw DataIOError.io(path: path, message: "cannot rename temporary file into place: \(errnoMessage())")
            }
        } catch {
            unlink(temporaryPath)
            throw error
        }
        let folderFD = open(folder.isEmpty ? "." : folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if folderFD >= 0 {
            _ = fsync(folderFD)  // best effort: some file systems refuse fsync on folders
            close(folderFD)
        }
    }

    static func errnoMessage() -> String { String(cString: strerror(errno)) }
}
