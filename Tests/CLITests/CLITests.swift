import XCTest
import Foundation

/// The `forge` binary as a user runs it: exit codes and the message for each bad input the CLI
/// rejects, and a tiny end-to-end training run. The binary is the one this test build made
/// (beside the test bundle in .build/<configuration>/).
final class CLITests: CLITestCase {
    private func text(_ dir: String) throws -> String {
        let path = dir + "/input.txt"
        let line = "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak.\n"
        try String(repeating: line, count: 60).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Every bad value exits 2 with `forge: error:` and the flag's name — before anything trains.
    func testBadTrainingValuesAreRefusedNamingTheFlag() throws {
        let dir = folder()
        let data = try text(dir)
        let tiny = ["train", "char", "--data", data, "--layers", "1", "--heads", "2", "--embd", "16", "--block", "8", "--batch", "4",
                    "--warmup", "1", "--out", dir + "/run"]
        for (extra, flag) in [(["--lr", "0"], "--lr"), (["--lr=-1"], "--lr"), (["--lr", "nan"], "--lr"), (["--iters=-5"], "--steps"),
                              (["--dropout", "1.5"], "--dropout"), (["--minutes", "0"], "--minutes"), (["--heads", "3"], "--embd"),
                              (["--tensorboard", dir + "/tb", "--no-tensorboard"], "--no-tensorboard")] {
            let (status, _, stderr) = try run(tiny + extra)
            XCTAssertEqual(status, 2, "\(extra): \(stderr)")
            XCTAssertTrue(stderr.hasPrefix("forge: error: "), "\(extra): \(stderr)")
            XCTAssertTrue(stderr.contains(flag), "\(extra) should name \(flag): \(stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/checkpoint.safetensors"))
    }

    /// A block whose attention alone needs terabytes is refused with the figure and the flag to change.
    func testAHugeBlockIsRefusedBeforeAllocating() throws {
        let dir = folder()
        let (status, _, stderr) = try run(["train", "char", "--data", try text(dir), "--block", "100000", "--out", dir + "/run"])
        XCTAssertEqual(status, 2, stderr)
        XCTAssertTrue(stderr.contains("GiB") && stderr.contains("--block"), stderr)
    }

    /// `--eval-every 0` evaluates only at the last step; a run stopped by `--minutes` before it has
    /// no val loss and no best.safetensors, and its summary says so instead of "best val loss nan → best.safetensors".
    func testARunStoppedBeforeAnyEvaluationClaimsNoBestCheckpoint() throws {
        let dir = folder()
        let (status, stdout, stderr) = try run(["train", "char", "--data", try text(dir), "--layers", "1", "--heads", "2", "--embd", "16",
                                                "--block", "8", "--batch", "4", "--iters", "100000000", "--eval-every", "0",
                                                "--minutes", "0.01", "--out", dir + "/run", "--no-tensorboard"])
        XCTAssertEqual(status, 0, stderr)
        XCTAssertTrue(stdout.contains("time limit"), stdout)
        XCTAssertTrue(stdout.contains("no val loss measured"), stdout)
        XCTAssertFalse(stdout.contains("nan"), stdout)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/checkpoint.safetensors"))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/best.safetensors"))
    }

    /// A tiny char run trains, writes its run folder, resumes with more steps, and refuses a resume
    /// that would change the learning rate.
    func testCharRunFolderResumeAndContradictingFlag() throws {
        let dir = folder()
        let data = try text(dir)
        let tiny = ["train", "char", "--data", data, "--layers", "1", "--heads", "2", "--embd", "16", "--block", "8", "--batch", "4",
                    "--warmup", "1", "--eval-every", "5", "--eval-iters", "1", "--out", dir + "/run",
                    "--tensorboard", dir + "/runs/run"]
        let (s1, out1, err1) = try run(tiny + ["--iters", "10"])
        XCTAssertEqual(s1, 0, err1)
        XCTAssertTrue(out1.contains("finished"), out1)
        for f in ["checkpoint.safetensors", "best.safetensors", "metrics.csv", "loss.png", "config.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/" + f), f)
        }
        func eventFiles() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: dir + "/runs/run")) ?? []).filter { $0.contains("tfevents") }
        }
        XCTAssertEqual(eventFiles().count, 1, "the TensorBoard run")
        let (s2, out2, err2) = try run(tiny + ["--iters", "15", "--resume"])
        XCTAssertEqual(s2, 0, err2)
        XCTAssertEqual(eventFiles().count, 2, "a resumed run adds an event file")
        XCTAssertTrue(out2.contains("resumed from") && out2.contains("step 15"), out2)
        let (s3, _, err3) = try run(tiny + ["--iters", "20", "--resume", "--lr", "1e12"])
        XCTAssertEqual(s3, 2)
        XCTAssertTrue(err3.contains("--lr") && err3.contains("the checkpoint has"), err3)
        // the run folder is also a --checkpoint
        let (s4, sample, err4) = try run(["sample", "char", "--checkpoint", dir + "/run", "--prompt", "First", "--length", "20"])
        XCTAssertEqual(s4, 0, err4)
        XCTAssertTrue(sample.hasPrefix("First"), sample)
        // \n in --prompt is a newline, as in `forge generate text`
        let (s5, sample5, err5) = try run(["sample", "char", "--checkpoint", dir + "/run", "--prompt", "First\\n", "--length", "5"])
        XCTAssertEqual(s5, 0, err5)
        XCTAssertTrue(sample5.hasPrefix("First\n"), sample5)
    }

    /// `forge eval char` scores a text's validation split; a split shorter than one block of the
    /// checkpoint is refused naming --data (it used to print a loss of 0).
    func testEvalCharRefusesATextShorterThanOneBlock() throws {
        let dir = folder()
        let shipped = packageFolder + "/checkpoints/shakespeare-char.safetensors"
        let line = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n"
        try String(repeating: line, count: 4).write(toFile: dir + "/short.txt", atomically: true, encoding: .utf8)
        let (s1, out1, err1) = try run(["eval", "char", "--checkpoint", shipped, "--data", dir + "/short.txt"])
        XCTAssertNotEqual(s1, 0, out1)
        XCTAssertTrue(err1.contains("--data") && err1.contains("validation split"), err1)
        XCTAssertFalse(out1.contains("val loss"), out1)
        try String(repeating: line, count: 100).write(toFile: dir + "/long.txt", atomically: true, encoding: .utf8)
        let (s2, out2, err2) = try run(["eval", "char", "--checkpoint", shipped, "--data", dir + "/long.txt"])
        XCTAssertEqual(s2, 0, err2)
        let loss = out2.split(separator: " ").dropFirst(2).first.flatMap { Double($0) }
        XCTAssertTrue(out2.hasPrefix("val loss "), out2)
        XCTAssertNotNil(loss, out2)
        XCTAssertGreaterThan(loss ?? 0, 0, out2)   // a repeated line is easy, but not free
        XCTAssertLessThan(loss ?? 99, log(65.0), out2)
    }

    /// Bad sampling values exit 2 naming the flag.
    func testBadSamplingValues() throws {
        for (extra, flag) in [(["--temperature", "nan"], "--temperature"), (["--temperature", "-1"], "--temperature"),
                              (["--top-p", "1.5"], "--top-p"), (["--top-k", "-1"], "--top-k"), (["--length", "0"], "--length")] {
            let (status, _, stderr) = try run(["sample", "char", "--length", "5"] + extra)
            XCTAssertEqual(status, 2, "\(extra): \(stderr)")
            XCTAssertTrue(stderr.contains(flag), "\(extra): \(stderr)")
        }
    }

    /// Generation settings the library refuses come back naming the CLI's flag (the library names
    /// its own field; the CLI maps it), with exit 2 and nothing written.
    func testBadGenerationValuesNameTheFlag() throws {
        let dir = folder()
        let gan = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TrainingTests/Fixtures/legacy/gan.safetensors").path
        for (arguments, expected) in [
            (["generate", "images", "--checkpoint", gan, "--per-class", "0", "--out", dir + "/a"], "--per-class must be positive"),
            (["generate", "images", "--checkpoint", gan, "--count", "5", "--only", "9", "--out", dir + "/b"], "--only 9 is outside"),
            (["sample", "gan", "--checkpoint", gan, "--interpolate", "1,2", "--steps", "1", "--out", dir + "/c.png"], "--steps must be at least 2"),
        ] {
            let (status, _, stderr) = try run(arguments)
            XCTAssertEqual(status, 2, "\(arguments): \(stderr)")
            XCTAssertTrue(stderr.contains("forge: error: " + expected), "\(arguments): \(stderr)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/c.png"))
    }

    /// The same seed gives the same bits at any thread count: a char model wide enough that its
    /// GEMMs are split across workers and its reductions run in chunks, and the MLP VAE (whose
    /// skinny 20×400×128 weight gradient once fell to OpenBLAS's small-matrix kernels when split),
    /// trained with FORGE_THREADS=1 and 2, write identical tensors.
    func testResultsDoNotDependOnTheThreadCount() throws {
        let dir = folder()
        let data = try text(dir)
        let fashion = "/usr/share/datasets/fashion-mnist"
        let vaeData = FileManager.default.fileExists(atPath: fashion) ? fashion
            : URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("DataIOTests/Fixtures/png").path
        let runs: [(String, [String])] = [
            ("char", ["train", "char", "--data", data, "--layers", "1", "--heads", "4", "--embd", "128", "--block", "32", "--batch", "16",
                      "--steps", "3", "--warmup", "1", "--eval-every", "0", "--no-tensorboard"]),
            // Fashion-MNIST when the machine has it (batch 128: the skinny GEMMs of the bug), else the PNG fixtures
            ("vae", ["train", "vae", "--data", vaeData, "--steps", "3", "--batch", "128", "--no-tensorboard"]),
        ]
        for (kind, arguments) in runs {
            var payloads: [[String: Data]] = []
            for threads in ["1", "2"] {
                let out = dir + "/\(kind)-\(threads)"
                let (status, stdout, stderr) = try run(arguments + ["--out", out], environment: ["FORGE_THREADS": threads])
                XCTAssertEqual(status, 0, "\(kind) \(threads) threads: \(stderr)")
                // 3 steps are a fraction of an epoch (the summary says how much, in words), except on the
                // 21 PNG fixtures a machine without Fashion-MNIST falls back to: there each step is an epoch
                let fraction = kind == "vae" && vaeData != fashion ? #"3 epochs"# : #"0\.[0-9]+ epochs"#
                XCTAssertNotNil(stdout.range(of: "finished after " + fraction + #" \(step 3\)"#, options: .regularExpression), stdout)
                payloads.append(try safetensorsPayloads(out + "/checkpoint.safetensors"))
            }
            XCTAssertFalse(payloads[0].isEmpty, kind)
            let differing = payloads[0].keys.filter { payloads[0][$0] != payloads[1][$0] }.sorted()
            XCTAssertEqual(differing, [], "\(kind): tensors that differ between 1 and 2 threads")
        }
    }

    /// A checkpoint of the wrong kind, or a file that is not one, is a clear error with exit 2.
    func testWrongCheckpointsAreClearErrors() throws {
        let dir = folder()
        let junk = dir + "/junk.safetensors"
        try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: junk))
        let (s1, _, e1) = try run(["sample", "gan", "--checkpoint", junk])
        XCTAssertEqual(s1, 2, e1)
        XCTAssertTrue(e1.contains(junk), e1)
        let (s2, _, e2) = try run(["sample", "gan", "--checkpoint", dir + "/missing.safetensors"])
        XCTAssertEqual(s2, 2, e2)
        XCTAssertTrue(e2.contains("no such file"), e2)
    }

    /// kill -9 at random moments of a run that saves every step (so many kills land inside a
    /// checkpoint write): after each kill the checkpoint loads, the next run clears the temporaries
    /// and resumes, and the run ends at its last step with no stray files.
    func testKill9AtRandomMomentsLosesNothing() throws {
        let dir = folder()
        let data = try text(dir)
        let run = dir + "/run"
        let args = ["train", "char", "--data", data, "--layers", "1", "--heads", "2", "--embd", "32", "--block", "16", "--batch", "8",
                    "--warmup", "1", "--eval-every", "25", "--eval-iters", "1", "--save-every", "1", "--iters", "2000",
                    "--no-tensorboard", "--out", run]
        var g = SystemRandomNumberGenerator()
        var kills = 0
        for round in 0..<6 {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try forge)
            process.arguments = args + (round > 0 ? ["--resume"] : [])
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            usleep(UInt32.random(in: 300_000...1_200_000, using: &g))
            if process.isRunning { kill(process.processIdentifier, SIGKILL); kills += 1 }
            process.waitUntilExit()
            let checkpoint = run + "/checkpoint.safetensors"
            if FileManager.default.fileExists(atPath: checkpoint) {
                let (status, _, stderr) = try self.run(["sample", "char", "--checkpoint", checkpoint, "--length", "5", "--prompt", "F"])
                XCTAssertEqual(status, 0, "round \(round): the checkpoint does not load after kill -9: \(stderr)")
            }
        }
        let (status, out, stderr) = try self.run(args + ["--resume"])
        XCTAssertEqual(status, 0, stderr)
        XCTAssertTrue(out.contains("finished at step 2000") || out.contains("nothing to train"), out)
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: run).filter { $0.contains(".tmp-") }
        XCTAssertEqual(leftovers, [], "stray temporary files after \(kills) kills")
        XCTAssertGreaterThan(kills, 0, "no kill landed: the run was faster than the delays")
    }

    /// A full disk (a 200 KB tmpfs; needs root, as CI is) is a clear error with exit 4 and leaves no
    /// temporary files, for training, text generation and sampling.
    func testFullDiskIsAClearErrorAndLeavesNoTemporaries() throws {
        try XCTSkipUnless(getuid() == 0, "mounting a small tmpfs needs root (CI runs as root)")
        let dir = folder()
        let data = try text(dir)
        let disk = dir + "/disk"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=200k", "tmpfs", disk]
        try mount.run()
        mount.waitUntilExit()
        try XCTSkipUnless(mount.terminationStatus == 0, "mount -t tmpfs failed here")
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [disk]
            try? umount.run()
            umount.waitUntilExit()
        }
        // training: the checkpoint (~600 KB for this model) cannot fit
        let (s1, _, e1) = try run(["train", "char", "--data", data, "--layers", "2", "--heads", "2", "--embd", "64", "--block", "16",
                                   "--batch", "4", "--warmup", "1", "--iters", "3", "--no-tensorboard", "--out", disk + "/run"])
        XCTAssertEqual(s1, 4, e1)
        XCTAssertTrue(e1.lowercased().contains("no space left"), e1)
        // text generation from the shipped model
        let (s2, _, e2) = try run(["generate", "text", "--count", "400", "--length", "200", "--out", disk + "/text",
                                   "--checkpoint", packageFolder + "/checkpoints/shakespeare-char.safetensors"])
        XCTAssertNotEqual(s2, 0, e2)
        XCTAssertTrue(e2.lowercased().contains("no space left"), e2)
        // a big sample grid from an image checkpoint
        let gan = packageFolder + "/Tests/TrainingTests/Fixtures/legacy/gan.safetensors"
        let (s3, _, e3) = try run(["sample", "gan", "--checkpoint", gan, "--count", "4096", "--out", disk + "/grid.png"])
        XCTAssertNotEqual(s3, 0, e3)
        XCTAssertTrue(e3.lowercased().contains("no space left"), e3)
        // sound: a tiny WaveGAN trained (outside the full disk) on generated clips, then generate audio
        let clips = dir + "/clips"
        try FileManager.default.createDirectory(atPath: clips, withIntermediateDirectories: true)
        for k in 0..<8 {
            try wav(samples: (0..<4096).map { Int16(8000 * sin(Double($0) * 0.05 * Double(k + 1))) }, to: clips + "/\(k).wav")
        }
        let (s4, _, e4) = try run(["train", "gan", "--data", clips, "--ngf", "4", "--ndf", "4", "--batch", "8", "--steps", "1",
                                   "--no-tensorboard", "--out", dir + "/wavegan"])
        XCTAssertEqual(s4, 0, e4)
        let (s5, _, e5) = try run(["generate", "audio", "--checkpoint", dir + "/wavegan", "--count", "64", "--out", disk + "/audio"])
        XCTAssertNotEqual(s5, 0, e5)
        XCTAssertTrue(e5.lowercased().contains("no space left"), e5)
        let enumerator = FileManager.default.enumerator(atPath: disk)
        var temporaries: [String] = []
        while let name = enumerator?.nextObject() as? String {
            if name.contains(".tmp-") { temporaries.append(name) }
        }
        XCTAssertEqual(temporaries, [])
    }

    /// A mono 16-bit 8 kHz WAV file.
    private func wav(samples: [Int16], to path: String) throws {
        func le32(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24 & 0xFF)] }
        func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
        let data = samples.flatMap { le16(Int(UInt16(bitPattern: $0))) }
        var bytes = Array("RIFF".utf8) + le32(36 + data.count) + Array("WAVEfmt ".utf8) + le32(16) + le16(1) + le16(1)
        bytes += le32(8000) + le32(16000) + le16(2) + le16(16) + Array("data".utf8) + le32(data.count) + data
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}
