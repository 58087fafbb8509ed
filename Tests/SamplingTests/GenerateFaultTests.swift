import Foundation
import XCTest
import TensorCore
import DataIO
import Sampling

/// Runs this test binary again with only `test` selected and `FORGE_FAULT_CHILD=1`; returns the child's
/// stderr, how it ended and its exit status. A fault that traps (libdispatch, a precondition) would kill
/// the whole test process, so the faulty run happens in the child and the parent judges it.
func runFaultChild(_ test: String) throws -> (stderr: String, crashed: Bool, status: Int32) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    process.arguments = [test]
    var env = ProcessInfo.processInfo.environment
    env["FORGE_FAULT_CHILD"] = "1"
    env["SWIFT_BACKTRACE"] = "enable=no"
    process.environment = env
    let errPipe = Pipe()
    process.standardError = errPipe
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let data = errPipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (String(decoding: data, as: UTF8.self), process.terminationReason == .uncaughtSignal, process.terminationStatus)
}

var isFaultChild: Bool { ProcessInfo.processInfo.environment["FORGE_FAULT_CHILD"] == "1" }

/// A stand-in model: gray 16×16 images whose pixels come from the item seed, drawn slowly so the
/// writer queue fails while the generator is still busy (the interleaving of a full disk).
final class SlowNoiseSource: SyntheticImageSource {
    var modelKind: String { "gan" }
    var classNames: [String] { [] }
    var channels: Int { 1 }
    var imageSize: Int { 16 }
    var valueRange: ImageValueRange { .zeroToOne }
    let delay: TimeInterval
    init(delay: TimeInterval) { self.delay = delay }
    func images(seeds: [UInt64], labels: [Int]) -> Tensor {
        Thread.sleep(forTimeInterval: delay)
        return Tensor(shape: [seeds.count, 1, 16, 16], data: seeds.flatMap { seed -> [Float] in
            var g = RandomGenerator(seed: seed)
            return (0..<256).map { _ in Float(g.next() % 256) / 255 }
        })
    }
}

/// `forge generate images` when writing fails (a full disk, an unwritable item path).
final class GenerateFaultTests: XCTestCase {
    private func folder() throws -> String {
        let path = NSTemporaryDirectory() + "forge-generate-fault-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// A write error must come back as a thrown error naming the file. It used to be thrown between the
    /// writer's semaphore wait and signal, and libdispatch killed the process with SIGILL when the writer
    /// was freed; the child below runs that case, so a trap fails this test instead of the test run.
    func testAWriteFailureIsAnErrorNotATrap() throws {
        if isFaultChild { return }
        let (stderr, crashed, status) = try runFaultChild("SamplingTests.GenerateFaultTests/testChildGenerateIntoAnUnwritableItem")
        XCTAssertFalse(crashed, "the generator trapped on a write error:\n\(stderr.suffix(800))")
        XCTAssertEqual(status, 0, "the child's assertions failed:\n\(stderr.suffix(800))")
        // The child really ran and saw the error (an empty test selection would also exit 0).
        XCTAssertTrue(stderr.contains("fault-child: generation failed: cannot write "), "child output:\n\(stderr.suffix(800))")
        XCTAssertTrue(stderr.contains("000007.png"), "the error names the item:\n\(stderr.suffix(800))")
    }

    /// Run only as the child of `testAWriteFailureIsAnErrorNotATrap`. Item 7 (the last of the first
    /// batch of 8) cannot be renamed into place because a non-empty folder holds its name. The source
    /// takes 80 ms per batch and the writer puts items in place once a second, so the failure lands
    /// while a later batch is being drawn, as a full disk's does.
    func testChildGenerateIntoAnUnwritableItem() throws {
        guard isFaultChild else { return }
        let dir = try folder()
        let checkpoint = dir + "/model.bin"
        try FileIO.writeAtomically(Array("stand-in checkpoint".utf8), to: checkpoint)
        let out = dir + "/out"
        try FileManager.default.createDirectory(atPath: out + "/000007.png", withIntermediateDirectories: true)
        try FileIO.writeAtomically([1], to: out + "/000007.png/blocker")
        let generator = try ImageDatasetGenerator(source: SlowNoiseSource(delay: 0.08), checkpointPath: checkpoint,
                                                  options: ImageGenerationOptions(count: 160, batchSize: 8, resume: true),
                                                  outputDirectory: out)
        do {
            _ = try generator.run()
            XCTFail("generation into an unwritable item succeeded")
        } catch {
            FileHandle.standardError.write(Data("fault-child: generation failed: \(error)\n".utf8))
        }
        // Nothing is written after `run` has thrown: the writer's queue is drained before it returns.
        let after = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        Thread.sleep(forTimeInterval: 0.2)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out).sorted(), after)
    }

    /// The case itself: `generate images` into a 1 MB tmpfs: the manifest fits, the items (a 4 KB page each) do not. Needs root to
    /// mount it (CI runs as root); skips with the reason elsewhere.
    func testGenerateImagesOnAFullDiskFailsWithAMessageAndLeavesNoTemporaries() throws {
        if isFaultChild { return }
        guard getuid() == 0 else { throw XCTSkip("mounting a small tmpfs needs root") }
        let mountPoint = try folder()
        guard run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", mountPoint]) == 0 else {
            throw XCTSkip("cannot mount a tmpfs here (no CAP_SYS_ADMIN?)")
        }
        defer { _ = run("/bin/umount", [mountPoint]) }
        setenv("FORGE_FULL_DISK_DIR", mountPoint, 1)
        defer { unsetenv("FORGE_FULL_DISK_DIR") }
        let (stderr, crashed, status) = try runFaultChild("SamplingTests.GenerateFaultTests/testChildGenerateOntoAFullDisk")
        XCTAssertFalse(crashed, "the generator trapped on a full disk:\n\(stderr.suffix(800))")
        XCTAssertEqual(status, 0, "the child's assertions failed:\n\(stderr.suffix(800))")
        XCTAssertTrue(stderr.contains("fault-child: generation failed: ") && stderr.contains("No space left on device"),
                      "child output:\n\(stderr.suffix(800))")
    }

    /// Run only as the child of the full-disk test, in the tmpfs it mounted.
    func testChildGenerateOntoAFullDisk() throws {
        guard isFaultChild, let root = ProcessInfo.processInfo.environment["FORGE_FULL_DISK_DIR"] else { return }
        let checkpoint = root + "/model.bin"
        try FileIO.writeAtomically(Array("stand-in checkpoint".utf8), to: checkpoint)
        let out = root + "/out"
        let generator = try ImageDatasetGenerator(source: SlowNoiseSource(delay: 0.01), checkpointPath: checkpoint,
                                                  options: ImageGenerationOptions(count: 600, batchSize: 16), outputDirectory: out)
        do {
            _ = try generator.run()
            XCTFail("600 items fitted into 1 MB")
        } catch {
            FileHandle.standardError.write(Data("fault-child: generation failed: \(error)\n".utf8))
        }
        let left = try FileManager.default.contentsOfDirectory(atPath: out).filter { $0.contains(".tmp-") }
        XCTAssertEqual(left, [], "temporary files left behind")
        // What is in place is what the manifest records: a resume on a disk with room keeps exactly those.
        let manifest = try DatasetManifest.read(path: out + "/manifest.csv")
        for row in manifest.rows {
            let path = out + "/" + row.file
            if let sha256 = row.sha256 { XCTAssertEqual(try SHA256.hexDigest(ofFile: path), sha256, row.file) }
            else { XCTAssertFalse(FileManager.default.fileExists(atPath: path), "\(row.file) is in place without a recorded hash") }
        }
    }

    private func run(_ tool: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }
}

/// What recording item hashes costs (prints only; `FORGE_BENCH=1 swift test -c release --filter GenerateHashBenchmarks`).
final class GenerateHashBenchmarks: XCTestCase {
    func testManifestRewriteAndGenerationThroughput() throws {
        guard ProcessInfo.processInfo.environment["FORGE_BENCH"] == "1" else { throw XCTSkip("set FORGE_BENCH=1 to run") }
        let dir = NSTemporaryDirectory() + "forge-generate-bench-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let checkpoint = dir + "/model.bin"
        try FileIO.writeAtomically(Array("stand-in checkpoint".utf8), to: checkpoint)
        let count = 10_000
        let generator = try ImageDatasetGenerator(source: SlowNoiseSource(delay: 0), checkpointPath: checkpoint,
                                                  options: ImageGenerationOptions(count: count, batchSize: 100), outputDirectory: dir + "/out")
        var manifest = generator.manifest
        for i in manifest.rows.indices { manifest.rows[i].sha256 = SHA256.hexDigest(Array(String(i).utf8)) }
        var start = Date()
        let text = manifest.csv()
        let csvSeconds = Date().timeIntervalSince(start)
        start = Date()
        try FileIO.writeAtomically(Array(text.utf8), to: dir + "/manifest-copy.csv")
        print(String(format: "manifest of %d rows: %.1f MB, csv() %.3f s, atomic write %.3f s", count, Double(text.utf8.count) / 1e6,
                     csvSeconds, Date().timeIntervalSince(start)))
        let report = try generator.run()
        print(String(format: "generated %d 16x16 noise PNGs: %.0f items/s (%.2f s)", report.written, report.itemsPerSecond, report.seconds))
    }
}
