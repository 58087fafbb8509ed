import XCTest
import Foundation
import DataIO
import TensorCore

/// `mpirun -np 2 forge train char` against one process with the same global batch: the proof that
/// data-parallel training computes what a single process computes. Skipped, with the reason, when
/// Open MPI's mpirun is not installed (`make test` installs it).
final class DataParallelCLITests: CLITestCase {
    /// mpirun on PATH (or in /usr/bin), else a skip naming what to install.
    private func mpirun() throws -> String {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/bin"
        for dir in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/mpirun") {
            return "\(dir)/mpirun"
        }
        throw XCTSkip("mpirun is not installed (Debian: apt-get install openmpi-bin libopenmpi-dev): data-parallel tests skipped")
    }

    /// Runs `mpirun -np ranks forge arguments…` as root if need be, one thread per rank; returns
    /// (exit status, stdout, stderr).
    private func runParallel(_ ranks: Int, _ arguments: [String], in directory: String,
                             environment extra: [String: String] = [:]) throws -> (Int32, String, String) {
        // --allow-run-as-root: test machines and containers often run as root, which Open MPI refuses by default
        let arguments = ["--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)", try forge] + arguments
        // containers often forbid the cross-memory attach that Open MPI's shared-memory transport tries first
        let environment = ["FORGE_THREADS": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"].merging(extra) { _, new in new }
        return try runExecutable(try mpirun(), arguments, in: directory, environment: environment)
    }

    /// A small text with some structure, long enough for blocks of 16.
    private func corpus(in directory: String) throws -> String {
        let words = ["the", "king", "speaks", "and", "queen", "answers", "to", "her", "lord", "now", "go", "forth"]
        var text = "", state: UInt64 = 12345
        for _ in 0..<3000 {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            text += words[Int(state >> 33) % words.count] + ((state >> 20) % 7 == 0 ? ".\n" : " ")
        }
        let path = directory + "/tiny.txt"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    private let tinyRun = ["--layers", "1", "--heads", "2", "--embd", "16", "--block", "16", "--batch", "4", "--steps", "8",
                           "--warmup", "2", "--lr", "0.01", "--min-lr", "0.001", "--dropout", "0", "--eval-every", "4",
                           "--eval-iters", "3", "--log-every", "1", "--no-tensorboard"]

    /// The loss column of metrics.csv and the evaluation rows, by step.
    private func losses(_ runDirectory: String) throws -> (train: [Double], eval: [String]) {
        let text = try String(contentsOfFile: runDirectory + "/metrics.csv", encoding: .utf8)
        let lines = text.split(separator: "\n").map(String.init)
        let header = lines[0].split(separator: ",").map(String.init)
        let column = try XCTUnwrap(header.firstIndex(of: "loss"), "metrics.csv header \(header)")
        var train: [Double] = [], eval: [String] = []
        for line in lines.dropFirst() {
            let fields = line.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            if let v = Double(fields[column]) { train.append(v) } else { eval.append(line) }
        }
        return (train, eval)
    }

    func testTwoRanksMatchOneProcessWithTheSameGlobalBatch() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try corpus(in: dir)
        let (single, singleOut, singleErr) = try run(["train", "char", "--data", data, "--out", dir + "/single"] + tinyRun, in: dir)
        XCTAssertEqual(single, 0, singleOut + singleErr)
        let (parallel, out, err) = try runParallel(2, ["train", "char", "--data", data, "--out", dir + "/parallel"] + tinyRun, in: dir)
        XCTAssertEqual(parallel, 0, out + err)
        // rank 0 alone prints
        XCTAssertEqual(out.components(separatedBy: "data parallel: 2 ranks").count - 1, 1, out)
        XCTAssertEqual(out.components(separatedBy: "\ndata: ").count + (out.hasPrefix("data: ") ? 1 : 0) - 1, 1, out)

        let a = try losses(dir + "/single"), b = try losses(dir + "/parallel")
        XCTAssertEqual(a.train.count, 8)
        XCTAssertEqual(b.train.count, 8)
        XCTAssertNotEqual(a.train.first, a.train.last, "the loss should move in 8 steps at lr 0.01")
        for (step, (x, y)) in zip(a.train, b.train).enumerated() {
            XCTAssertEqual(x, y, accuracy: 2e-5 * abs(x), "loss at step \(step + 1): one process \(x), two ranks \(y)")
        }
        XCTAssertEqual(a.eval.count, b.eval.count)

        let one = try SafeTensors.read(URL(fileURLWithPath: dir + "/single/checkpoint.safetensors"))
        let two = try SafeTensors.read(URL(fileURLWithPath: dir + "/parallel/checkpoint.safetensors"))
        XCTAssertEqual(one.names, two.names)
        var largest = 0.0, compared = 0
        for name in one.names where name.hasPrefix("rng.") {
            // the data, evaluation and dropout generators end where a single process's end
            XCTAssertEqual(try one.int64Array(name), try two.int64Array(name), name)
        }
        // the weights and AdamW's moments
        for name in one.names where !name.hasPrefix("rng.") && one.entries[name]?.dtype == .F32 {
            let x = try one.tensor(name), y = try two.tensor(name)
            XCTAssertEqual(x.shape, y.shape, name)
            for (p, q) in zip(x.scalars, y.scalars) { largest = max(largest, Double(abs(p - q))) }
            compared += x.count
        }
        XCTAssertGreaterThan(compared, 1000)
        XCTAssertLessThan(largest, 1e-4, "largest weight difference after 8 steps")
        func savedStep(_ file: SafeTensorsFile) throws -> Int? {
            let json = try JSONSerialization.jsonObject(with: Data((file.metadata["forge.state"] ?? "{}").utf8)) as? [String: Any]
            return json?["step"] as? Int
        }
        XCTAssertEqual(try savedStep(two), 8)
        XCTAssertEqual(try savedStep(one), try savedStep(two))
    }

    /// Reducing buckets while backward runs changes no bit: with 4 KB buckets (many buckets, most
    /// reduced on the communication thread before backward ends) the checkpoint equals the one of a
    /// run that reduces after backward (FORGE_OVERLAP=0), tensor for tensor.
    func testOverlappedReductionGivesTheSameWeightsAsReducingAfterBackward() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try corpus(in: dir)
        for (run, overlap, words) in [("overlapped", "1", "reduced while backward runs"), ("after", "0", "reduced after backward")] {
            let (status, out, err) = try runParallel(2, ["train", "char", "--data", data, "--out", dir + "/" + run] + tinyRun, in: dir,
                                                     environment: ["FORGE_BUCKET_MB": "0.004", "FORGE_OVERLAP": overlap])
            XCTAssertEqual(status, 0, out + err)
            XCTAssertTrue(out.contains("gradients " + words), out)
        }
        let a = try safetensorsPayloads(dir + "/overlapped/checkpoint.safetensors")
        let b = try safetensorsPayloads(dir + "/after/checkpoint.safetensors")
        XCTAssertGreaterThan(a.count, 10)
        XCTAssertEqual(a.keys.sorted(), b.keys.sorted())
        for (name, bytes) in a { XCTAssertEqual(bytes, b[name], name) }
    }

    /// A run started by 2 ranks and resumed by 4, or by one process, continues the same run: the
    /// global batch stays `--batch`, so steps 9–16 have the losses, and the checkpoint the weights, of a
    /// single process resumed from its own step 8 (the learning-rate schedule follows `--steps`, so
    /// the reference is stopped at step 8 too).
    func testResumingWithAnotherNumberOfRanksContinuesTheSameRun() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try corpus(in: dir)
        func arguments(_ run: String, steps: Int, resume: Bool = false) -> [String] {
            var a = ["train", "char", "--data", data, "--out", dir + "/" + run] + tinyRun
            a[a.firstIndex(of: "--steps")! + 1] = String(steps)
            return a + (resume ? ["--resume"] : [])
        }
        for (run, first, second) in [("reference", 1, 1), ("two-then-four", 2, 4), ("two-then-one", 2, 1)] {
            for (ranks, steps, resume) in [(first, 8, false), (second, 16, true)] {
                let (status, out, err) = ranks == 1 ? try self.run(arguments(run, steps: steps, resume: resume), in: dir, environment: ["FORGE_THREADS": "1"])
                    : try runParallel(ranks, arguments(run, steps: steps, resume: resume), in: dir)
                XCTAssertEqual(status, 0, "\(run), \(ranks) rank(s): " + out + err)
            }
        }
        let reference = try losses(dir + "/reference")
        XCTAssertEqual(reference.train.count, 16)
        for run in ["two-then-four", "two-then-one"] {
            let other = try losses(dir + "/" + run)
            XCTAssertEqual(other.train.count, 16, run)
            for (step, (x, y)) in zip(reference.train, other.train).enumerated() {
                XCTAssertEqual(x, y, accuracy: 2e-5 * abs(x), "\(run): loss at step \(step + 1): \(x) in the reference, \(y)")
            }
            let d = try largestDifference(dir + "/reference/checkpoint.safetensors", dir + "/" + run + "/checkpoint.safetensors")
            XCTAssertGreaterThan(d.compared, 1000)
            XCTAssertLessThan(d.value, 1e-4, "\(run): largest relative difference after 16 steps, \(d.worst)")
        }
    }

    /// `kill -9` of rank 1 in the middle of a run that saves every 5 steps: mpirun ends the job within
    /// seconds with a non-zero status naming the signal, and the checkpoint left behind loads and
    /// resumes (it is written to a temporary file and renamed).
    func testKillingARankEndsTheJobWithinSecondsAndLeavesALoadableCheckpoint() throws {
        let dir = folder()
        let data = try corpus(in: dir)
        try killRankOne(of: ["train", "char", "--data", data, "--out", dir + "/run", "--save-every", "5"] + tinyRun, in: dir)
    }

    /// The same for the GAN, whose step has two players and two optimizers: the job ends within seconds
    /// and the checkpoint left behind resumes.
    func testKillingARankOfAGANRunEndsTheJobWithinSecondsAndLeavesALoadableCheckpoint() throws {
        let dir = folder()
        let data = try imageFolder(in: dir)
        try killRankOne(of: ["train", "gan", "--data", data, "--out", dir + "/run", "--save-every", "5"] + tinyGAN, in: dir)
    }

    /// Runs `arguments` (with a `--steps` value, replaced by a huge one) on 2 ranks, kills rank 1 with
    /// SIGKILL once a checkpoint exists, checks that mpirun ends within seconds naming the signal, and
    /// resumes the checkpoint left behind for 2 more steps in one process.
    private func killRankOne(of originalArguments: [String], in dir: String) throws {
        let mpirun = try mpirun()
        var arguments = originalArguments
        arguments[arguments.firstIndex(of: "--steps")! + 1] = "1000000"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mpirun)
        process.arguments = ["--allow-run-as-root", "-np", "2", try forge] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(
            ["FORGE_THREADS": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"]) { $1 }
        // files, not pipes: the killed rank's partner would hold a pipe open
        _ = FileManager.default.createFile(atPath: dir + "/out.txt", contents: nil)
        _ = FileManager.default.createFile(atPath: dir + "/err.txt", contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/out.txt"))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir + "/err.txt"))
        try process.run()
        defer { if process.isRunning { kill(-process.processIdentifier, SIGKILL); process.terminate() } }

        // wait until a checkpoint exists and training goes on, then find rank 1 among mpirun's children
        let checkpoint = dir + "/run/checkpoint.safetensors"
        var rankOne: pid_t?
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, rankOne == nil {
            usleep(200_000)
            guard FileManager.default.fileExists(atPath: checkpoint) else { continue }
            for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
                guard let pid = pid_t(entry), let environment = FileManager.default.contents(atPath: "/proc/\(entry)/environ") else { continue }
                let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                if variables.contains("OMPI_COMM_WORLD_RANK=1"), variables.contains(where: { $0.hasPrefix("OMPI_COMM_WORLD_SIZE=2") }),
                   let command = try? String(contentsOfFile: "/proc/\(entry)/cmdline", encoding: .utf8), command.contains(dir) {
                    rankOne = pid
                }
            }
        }
        let victim = try XCTUnwrap(rankOne, "no rank 1 running with a checkpoint after 60 s: " + ((try? String(contentsOfFile: dir + "/err.txt", encoding: .utf8)) ?? ""))
        usleep(500_000)
        let killed = Date()
        XCTAssertEqual(kill(victim, SIGKILL), 0)
        while process.isRunning, Date().timeIntervalSince(killed) < 30 { usleep(50_000) }
        let seconds = Date().timeIntervalSince(killed)
        print(String(format: "rank 1 killed; mpirun ended %.2f s later", seconds))
        XCTAssertFalse(process.isRunning, "mpirun still runs 30 s after rank 1 was killed")
        XCTAssertLessThan(seconds, 15, "the job ends within seconds")
        XCTAssertNotEqual(process.terminationStatus, 0)
        let err = try String(contentsOfFile: dir + "/err.txt", encoding: .utf8)
        XCTAssertTrue(err.contains("signal 9") || err.contains("Killed"), err)

        // what is left loads, and resumes from its step
        let saved = try SafeTensors.read(URL(fileURLWithPath: checkpoint))
        let state = try JSONSerialization.jsonObject(with: Data((saved.metadata["forge.state"] ?? "{}").utf8)) as? [String: Any]
        let step = try XCTUnwrap(state?["step"] as? Int)
        XCTAssertGreaterThanOrEqual(step, 5)
        arguments[arguments.firstIndex(of: "--steps")! + 1] = String(step + 2)
        let (status, out, resumeErr) = try run(arguments + ["--resume"], in: dir, environment: ["FORGE_THREADS": "1"])
        XCTAssertEqual(status, 0, out + resumeErr)
        XCTAssertTrue(out.contains("step \(step + 2)"), out)
    }

    /// A folder of two classes, 11 and 10 random 32×32 grey PNGs: with the 10 % held out, 19 training
    /// images in batches of 8, 8 and 3, so every epoch ends on a batch that splits unevenly over 2 ranks.
    /// `count` sine clips of 4,096 samples at 8 kHz in `directory/clips` (clip k at `frequency`·(k + 1)
    /// radians per sample), the sound data of the audio tests.
    private func clipFolder(in directory: String, count: Int, amplitude: Double, frequency: Double) throws {
        try FileManager.default.createDirectory(atPath: directory + "/clips", withIntermediateDirectories: true)
        for k in 0..<count {
            let samples = (0..<4096).map { Float(amplitude * sin(Double($0) * frequency * Double(k + 1))) }
            try AudioIO.writeWAV(AudioClip(samples: samples, channels: 1, sampleRate: 8000), to: directory + "/clips/\(k).wav")
        }
    }

    private func imageFolder(in directory: String) throws -> String {
        var g = RandomGenerator(seed: 7)
        for (name, count) in [("a", 11), ("b", 10)] {
            try FileManager.default.createDirectory(atPath: "\(directory)/images/\(name)", withIntermediateDirectories: true)
            for i in 0..<count {
                let image = Tensor.uniform([1, 32, 32], low: 0, high: 1, generator: &g)
                try ImageCodec.writePNG(image, to: "\(directory)/images/\(name)/\(i).png")
            }
        }
        return directory + "/images"
    }

    /// The VAE's loss is a sum over the batch: two ranks, each with its rows of every global batch and
    /// its rows of the one noise draw, sum their gradients and train what one process trains, the
    /// uneven last batch of each epoch included.
    func testTwoRanksTrainTheVAEAsOneProcessDoes() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try imageFolder(in: dir)
        let common = ["train", "vae", "--data", data, "--conditional", "--batch", "8", "--epochs", "2", "--log-every", "1", "--no-tensorboard"]
        let (single, singleOut, singleErr) = try run(common + ["--out", dir + "/single"], in: dir, environment: ["FORGE_THREADS": "1"])
        XCTAssertEqual(single, 0, singleOut + singleErr)
        let (parallel, out, err) = try runParallel(2, common + ["--out", dir + "/parallel"], in: dir)
        XCTAssertEqual(parallel, 0, out + err)
        XCTAssertEqual(out.components(separatedBy: "data parallel: 2 ranks").count - 1, 1, out)
        XCTAssertEqual(out.components(separatedBy: "====> Epoch: 2").count - 1, 1, "rank 0 alone prints: \(out)")
        let a = try losses(dir + "/single"), b = try losses(dir + "/parallel")
        XCTAssertEqual(a.train.count, 6)
        XCTAssertEqual(b.train.count, 6)
        for (step, (x, y)) in zip(a.train, b.train).enumerated() {
            XCTAssertEqual(x, y, accuracy: 2e-5 * abs(x), "−ELBO per image at step \(step + 1): one process \(x), two ranks \(y)")
        }
        // relative to the value's size: Adam's second moments of a summed loss reach 1e4 and more
        let d = try largestDifference(dir + "/single/checkpoint.safetensors", dir + "/parallel/checkpoint.safetensors")
        XCTAssertGreaterThan(d.compared, 100_000)
        XCTAssertLessThan(d.value, 1e-4, "largest relative difference after 6 steps, \(d.worst)")
    }

    /// The VAE's buckets summed while backward runs change no bit either, and a last batch of one
    /// row on two ranks (19 training images in batches of 6, 6, 6, 1: rank 1 has no rows and runs no backward)
    /// falls back to summing after backward on both ranks, in step, instead of hanging.
    func testVAEOverlappedReductionGivesTheSameWeightsAsReducingAfterBackward() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try imageFolder(in: dir)
        for (run, overlap, words) in [("overlapped", "1", "reduced while backward runs"), ("after", "0", "reduced after backward")] {
            let (status, out, err) = try runParallel(2, ["train", "vae", "--data", data, "--conditional", "--batch", "6", "--epochs", "2",
                                                         "--log-every", "1", "--no-tensorboard", "--out", dir + "/" + run], in: dir,
                                                     environment: ["FORGE_BUCKET_MB": "0.004", "FORGE_OVERLAP": overlap])
            XCTAssertEqual(status, 0, out + err)
            XCTAssertTrue(out.contains("gradients " + words), out)
        }
        XCTAssertEqual(try losses(dir + "/overlapped").train.count, 8)
        let a = try safetensorsPayloads(dir + "/overlapped/checkpoint.safetensors")
        let b = try safetensorsPayloads(dir + "/after/checkpoint.safetensors")
        XCTAssertGreaterThan(a.count, 10)
        XCTAssertEqual(a.keys.sorted(), b.keys.sorted())
        for (name, bytes) in a { XCTAssertEqual(bytes, b[name], name) }
    }

    /// The sound VAE (1-D convs, learned σ) on two ranks trains what one process trains: 10 clips in
    /// batches of 4 (two steps an epoch), 3 epochs, compared step by step and weight by weight.
    func testTwoRanksTrainTheSoundVAEAsOneProcessDoes() throws {
        _ = try mpirun()
        let dir = folder()
        try clipFolder(in: dir, count: 10, amplitude: 0.3, frequency: 0.03)
        let common = ["train", "vae", "--data", dir + "/clips", "--length", "4096", "--hidden", "4", "--latent", "8", "--batch", "4",
                      "--epochs", "3", "--log-every", "1", "--no-tensorboard"]
        let (single, singleOut, singleErr) = try run(common + ["--out", dir + "/single"], in: dir, environment: ["FORGE_THREADS": "1"])
        XCTAssertEqual(single, 0, singleOut + singleErr)
        let (parallel, out, err) = try runParallel(2, common + ["--out", dir + "/parallel"], in: dir)
        XCTAssertEqual(parallel, 0, out + err)
        XCTAssertEqual(out.components(separatedBy: "data parallel: 2 ranks").count - 1, 1, out)
        let a = try losses(dir + "/single"), b = try losses(dir + "/parallel")
        XCTAssertEqual(a.train.count, 6)
        XCTAssertEqual(b.train.count, 6)
        for (step, (x, y)) in zip(a.train, b.train).enumerated() {
            XCTAssertEqual(x, y, accuracy: 2e-5 * abs(x), "−ELBO per clip at step \(step + 1): one process \(x), two ranks \(y)")
        }
        let d = try largestDifference(dir + "/single/checkpoint.safetensors", dir + "/parallel/checkpoint.safetensors")
        XCTAssertGreaterThan(d.compared, 1000)
        XCTAssertLessThan(d.value, 1e-4, "largest relative difference after 6 steps, \(d.worst)")
    }

    /// The WaveGAN on two ranks with --sync-batchnorm trains what one process trains: 8 clips in
    /// batches of 4 (two steps an epoch), 3 epochs, phase shuffle on. The ranks compare their whole
    /// state after every step; metrics.csv and the checkpoint match one process's.
    func testTwoRanksWithSyncBatchNormTrainTheWaveGANAsOneProcessDoes() throws {
        _ = try mpirun()
        let dir = folder()
        try clipFolder(in: dir, count: 8, amplitude: 0.3, frequency: 0.03)
        let common = ["train", "gan", "--data", dir + "/clips", "--ngf", "4", "--ndf", "4", "--batch", "4", "--phase-shuffle", "2",
                      "--epochs", "3", "--log-every", "1", "--sync-batchnorm", "--no-tensorboard"]
        let (single, singleOut, singleErr) = try run(common + ["--out", dir + "/single"], in: dir, environment: ["FORGE_THREADS": "1"])
        XCTAssertEqual(single, 0, singleOut + singleErr)
        let (parallel, out, err) = try runParallel(2, common + ["--out", dir + "/parallel"], in: dir,
                                                   environment: ["FORGE_VERIFY_REPLICAS": "1"])
        XCTAssertEqual(parallel, 0, out + err)
        XCTAssertEqual(out.components(separatedBy: "data parallel: 2 ranks").count - 1, 1, out)
        XCTAssertEqual(out.components(separatedBy: "replicas agree:").count - 1, 6, "a check after each of 6 steps: \(out)")
        for metric in ["loss_d", "loss_g", "d_x"] {
            let a = try column(metric, in: dir + "/single"), b = try column(metric, in: dir + "/parallel")
            XCTAssertEqual(a.count, 6, metric)
            XCTAssertEqual(b.count, 6, metric)
            for (step, (x, y)) in zip(a, b).enumerated() {
                XCTAssertEqual(x, y, accuracy: 1e-4 * max(1, abs(x)), "\(metric) at step \(step + 1): one process \(x), two ranks \(y)")
            }
        }
        let d = try largestDifference(dir + "/single/checkpoint.safetensors", dir + "/parallel/checkpoint.safetensors")
        XCTAssertGreaterThan(d.compared, 10_000)
        XCTAssertTrue(d.names.contains { $0.hasPrefix("discriminator.") && $0.hasSuffix("running_var") }, "D's BatchNorm is compared: \(d.names)")
        XCTAssertLessThan(d.value, 1e-4, "largest relative difference after 6 steps, \(d.worst)")
    }

    /// A folder smaller than one batch warns once, from rank 0, not once per rank.
    func testAFolderSmallerThanABatchWarnsOnceUnderMpirun() throws {
        _ = try mpirun()
        let dir = folder()
        try clipFolder(in: dir, count: 6, amplitude: 0.3, frequency: 0.05)
        let (status, out, err) = try runParallel(2, ["train", "gan", "--data", dir + "/clips", "--ngf", "4", "--ndf", "4", "--steps", "1",
                                                     "--no-tensorboard", "--out", dir + "/wavegan"], in: dir)
        XCTAssertEqual(status, 0, out + err)
        XCTAssertEqual(err.components(separatedBy: "6 clips are fewer than one batch of 64").count - 1, 1, err)
    }

    /// The classifier cannot run data-parallel yet: under mpirun -np 2 it says so, naming the commands
    /// that can, and writes no run folder, rather than two copies training into one folder.
    func testATaskThatCannotRunDataParallelIsRefusedUnderMpirunNamingWhatCan() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try imageFolder(in: dir)
        let (status, out, err) = try runParallel(2, ["train", "classifier", "--data", data, "--batch", "4", "--steps", "1",
                                                     "--no-tensorboard", "--out", dir + "/classifier"], in: dir)
        XCTAssertNotEqual(status, 0, out)
        XCTAssertTrue(err.contains("cannot run data-parallel yet") && err.contains("train char, train vae and train gan can"), err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/classifier/checkpoint.safetensors"))
    }

    // MARK: GAN

    /// A tiny DCGAN on `imageFolder`'s 21 images, 3 steps of a global batch of 8.
    private let tinyGAN = ["--ngf", "8", "--ndf", "8", "--nz", "16", "--embed", "8", "--batch", "8", "--steps", "3",
                           "--log-every", "1", "--no-tensorboard"]

    /// The values of metrics.csv's `name` column, by step.
    private func column(_ name: String, in runDirectory: String) throws -> [Double] {
        let lines = try String(contentsOfFile: runDirectory + "/metrics.csv", encoding: .utf8).split(separator: "\n").map(String.init)
        let header = lines[0].split(separator: ",").map(String.init)
        let k = try XCTUnwrap(header.firstIndex(of: name), "metrics.csv header \(header)")
        return lines.dropFirst().compactMap { Double($0.split(separator: ",", omittingEmptySubsequences: false).map(String.init)[k]) }
    }

    /// The largest |a − b| / max(1, |a|) over the F32 tensors of two checkpoints (same names required),
    /// with the tensor where it occurs and the number of values compared; the generators must be equal.
    private func largestDifference(_ one: String, _ two: String) throws -> (value: Double, worst: String, compared: Int, names: [String]) {
        let a = try SafeTensors.read(URL(fileURLWithPath: one)), b = try SafeTensors.read(URL(fileURLWithPath: two))
        XCTAssertEqual(a.names, b.names)
        for name in a.names where name.hasPrefix("rng.") {
            XCTAssertEqual(try a.int64Array(name), try b.int64Array(name), "\(name): the noise is drawn as one process draws it")
        }
        var largest = 0.0, worst = "", compared = 0
        for name in a.names where !name.hasPrefix("rng.") && a.entries[name]?.dtype == .F32 {
            let x = try a.tensor(name), y = try b.tensor(name)
            XCTAssertEqual(x.shape, y.shape, name)
            for (p, q) in zip(x.scalars, y.scalars) {
                let d = Double(abs(p - q)) / max(1, Double(abs(p)))
                if d > largest { (largest, worst) = (d, "\(name): \(p) vs \(q)") }
            }
            compared += x.count
        }
        return (largest, worst, compared, a.names)
    }

    /// With --sync-batchnorm two ranks train the GAN as one process does: the conditional recipe
    /// (conditional BatchNorm in G, spectral-norm D, EMA) with DiffAugment, the plain DCGAN with
    /// BatchNorm in both players, and the hinge game. Every step the ranks compare their whole state bit for bit
    /// (FORGE_VERIFY_REPLICAS: weights, Adam's moments, spectral-norm u/v, the EMA, the synchronised
    /// running statistics); the checkpoint matches the single process's within 1e-4 relative.
    func testTwoRanksWithSyncBatchNormTrainTheGANAsOneProcessDoes() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try imageFolder(in: dir)
        // The hinge game of the stable recipe runs with dcgan's betas: with its own (0, 0.9) the two runs
        // part by step 2 (largest relative difference 5e-7 after one step, 6e-3 after three; the D outputs
        // of step 2 still agree to 1e-7), float rounding amplified by Adam's undamped steps.
        // Measured with the recipes below: at most 2.2e-7 after 3 steps, so 1e-4 has a wide margin.
        let recipes = [["--recipe", "cbn-sn", "--diff-augment", "on"], ["--recipe", "dcgan", "--conditional", "off"],
                       ["--recipe", "stable", "--beta1", "0.5", "--beta2", "0.999"]]
        for (k, recipe) in recipes.enumerated() {
            let common = ["train", "gan", "--data", data, "--sync-batchnorm"] + recipe + tinyGAN
            let (single, singleOut, singleErr) = try run(common + ["--out", "\(dir)/single\(k)"], in: dir, environment: ["FORGE_THREADS": "1"])
            XCTAssertEqual(single, 0, singleOut + singleErr)
            let (parallel, out, err) = try runParallel(2, common + ["--out", "\(dir)/parallel\(k)"], in: dir,
                                                       environment: ["FORGE_VERIFY_REPLICAS": "1"])
            XCTAssertEqual(parallel, 0, out + err)
            XCTAssertEqual(out.components(separatedBy: "data parallel: 2 ranks").count - 1, 1, out)
            XCTAssertEqual(out.components(separatedBy: "replicas agree:").count - 1, 3, "a check after each of 3 steps: \(out)")
            XCTAssertEqual(out.components(separatedBy: "run folder:").count - 1, 1, "rank 0 alone prints: \(out)")
            for metric in ["loss_d", "loss_g", "d_x"] {
                let a = try column(metric, in: "\(dir)/single\(k)"), b = try column(metric, in: "\(dir)/parallel\(k)")
                XCTAssertEqual(a.count, 3, metric)
                XCTAssertEqual(b.count, 3, metric)
                for (step, (x, y)) in zip(a, b).enumerated() {
                    XCTAssertEqual(x, y, accuracy: 1e-4 * max(1, abs(x)), "\(recipe) \(metric) at step \(step + 1): one process \(x), two ranks \(y)")
                }
            }
            let d = try largestDifference("\(dir)/single\(k)/checkpoint.safetensors", "\(dir)/parallel\(k)/checkpoint.safetensors")
            XCTAssertGreaterThan(d.compared, 10_000)
            if k != 1 {
                XCTAssertTrue(d.names.contains { $0.hasPrefix("generator_ema.") }, "the EMA is compared")
                XCTAssertTrue(d.names.contains { $0.hasPrefix("discriminator.") && $0.hasSuffix("weight.0._u") }, "spectral norm's u is compared: \(d.names)")
            } else {
                XCTAssertTrue(d.names.contains { $0.hasPrefix("discriminator.") && $0.hasSuffix("running_var") }, "D's BatchNorm is compared")
            }
            XCTAssertLessThan(d.value, 1e-4, "\(recipe): largest relative difference after 3 steps, \(d.worst)")
        }
    }

    /// Averaging each player's gradients while its last backward runs changes no bit: with 4 KB
    /// buckets, the non-saturating game (pytorch/examples' recipe) and the hinge game (the stable
    /// recipe) give the checkpoints of runs that average after backward (FORGE_OVERLAP=0), tensor for tensor.
    func testGANOverlappedReductionGivesTheSameWeightsAsReducingAfterBackward() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try imageFolder(in: dir)
        for (k, recipe) in [["--recipe", "dcgan", "--conditional", "off"], ["--recipe", "stable"]].enumerated() {
            for (run, overlap, words) in [("overlapped", "1", "reduced while backward runs"), ("after", "0", "reduced after backward")] {
                let (status, out, err) = try runParallel(2, ["train", "gan", "--data", data, "--out", "\(dir)/\(run)\(k)"] + recipe + tinyGAN,
                                                         in: dir, environment: ["FORGE_BUCKET_MB": "0.004", "FORGE_OVERLAP": overlap])
                XCTAssertEqual(status, 0, out + err)
                XCTAssertTrue(out.contains("gradients " + words), out)
            }
            let a = try safetensorsPayloads("\(dir)/overlapped\(k)/checkpoint.safetensors")
            let b = try safetensorsPayloads("\(dir)/after\(k)/checkpoint.safetensors")
            XCTAssertGreaterThan(a.count, 10)
            XCTAssertEqual(a.keys.sorted(), b.keys.sorted())
            for (name, bytes) in a { XCTAssertEqual(bytes, b[name], "\(recipe): \(name)") }
        }
    }

    /// Without --sync-batchnorm each rank normalises with its own half-batch's statistics (DDP's
    /// default): the run finishes, the ranks still hold identical weights, moments and spectral-norm
    /// buffers after every step, rank 0 alone writes the checkpoint, and the weights differ from one process's.
    func testTwoRanksWithoutSyncBatchNormStayIdenticalButDifferFromOneProcess() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try imageFolder(in: dir)
        let common = ["train", "gan", "--data", data, "--recipe", "dcgan", "--conditional", "off"] + tinyGAN
        let (single, singleOut, singleErr) = try run(common + ["--out", dir + "/single", "--sync-batchnorm"], in: dir,
                                                     environment: ["FORGE_THREADS": "1"])
        XCTAssertEqual(single, 0, "with one process --sync-batchnorm is accepted: " + singleOut + singleErr)
        let (parallel, out, err) = try runParallel(2, common + ["--out", dir + "/parallel"], in: dir, environment: ["FORGE_VERIFY_REPLICAS": "1"])
        XCTAssertEqual(parallel, 0, out + err)
        XCTAssertEqual(out.components(separatedBy: "replicas agree:").count - 1, 3, out)
        XCTAssertEqual(out.components(separatedBy: "run folder:").count - 1, 1, out)
        XCTAssertEqual(try column("loss_d", in: dir + "/parallel").count, 3)
        let d = try largestDifference(dir + "/single/checkpoint.safetensors", dir + "/parallel/checkpoint.safetensors")
        XCTAssertGreaterThan(d.value, 1e-3, "per-rank BatchNorm statistics train differently from one process")
    }

    func testAGANGlobalBatchThatDoesNotSplitIsAnErrorNamingTheFlag() throws {
        _ = try mpirun()
        let dir = folder()
        try assertBatchDoesNotSplit(7, kind: "gan", data: try imageFolder(in: dir), arguments: tinyGAN, in: dir)
    }

    func testAGlobalBatchThatDoesNotSplitIsAnErrorNamingTheFlag() throws {
        _ = try mpirun()
        let dir = folder()
        try assertBatchDoesNotSplit(3, kind: "char", data: try corpus(in: dir), arguments: tinyRun, in: dir)
    }

    /// `mpirun -np 2 forge train KIND … --batch B` with an odd B: exit 2, one message from rank 0 naming
    /// the flag, and no checkpoint written.
    private func assertBatchDoesNotSplit(_ batch: Int, kind: String, data: String, arguments: [String], in dir: String,
                                         file: StaticString = #filePath, line: UInt = #line) throws {
        var arguments = arguments
        arguments[arguments.firstIndex(of: "--batch")! + 1] = String(batch)
        let (status, out, err) = try runParallel(2, ["train", kind, "--data", data, "--out", dir + "/run"] + arguments, in: dir)
        XCTAssertEqual(status, 2, out + err, file: file, line: line)
        XCTAssertTrue(err.contains("--batch \(batch)") && err.contains("multiple of 2"), err, file: file, line: line)
        XCTAssertEqual(err.components(separatedBy: "forge: error:").count - 1, 1, "one message, from rank 0: \(err)", file: file, line: line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/checkpoint.safetensors"), file: file, line: line)
    }

    func testUnderMpirunWithoutALoadableLibmpiTheRunStopsSayingWhatToInstall() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try corpus(in: dir)
        let (status, out, err) = try runParallel(2, ["train", "char", "--data", data, "--out", dir + "/run"] + tinyRun, in: dir,
                                                 environment: ["FORGE_LIBMPI": dir + "/no-such-libmpi.so"])
        XCTAssertEqual(status, 2, out + err)
        XCTAssertTrue(err.contains("cannot use MPI") && err.contains("no-such-libmpi.so") && err.contains("openmpi-bin"), err)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/run/checkpoint.safetensors"))
    }

    // MARK: generation

    /// Every file under `directory` by relative path, with its bytes.
    private func contents(_ directory: String) throws -> [String: Data] {
        var out: [String: Data] = [:]
        let enumerator = try XCTUnwrap(FileManager.default.enumerator(atPath: directory))
        for case let path as String in enumerator {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: directory + "/" + path, isDirectory: &isDirectory), !isDirectory.boolValue {
                out[path] = try Data(contentsOf: URL(fileURLWithPath: directory + "/" + path))
            }
        }
        return out
    }

    /// The same files with the same bytes under both folders.
    private func assertSameFolder(_ one: String, _ two: String, expectedFiles: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        let a = try contents(one), b = try contents(two)
        XCTAssertEqual(a.count, expectedFiles, a.keys.sorted().description, file: file, line: line)
        XCTAssertEqual(a.keys.sorted(), b.keys.sorted(), file: file, line: line)
        for (path, bytes) in a where b[path] != bytes {
            XCTFail("\(path) differs between \(one) and \(two)", file: file, line: line)
        }
    }

    /// Trains the model a generation test draws from: one process, one thread; it must succeed.
    private func trainOneProcess(_ arguments: [String], in dir: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let (status, out, err) = try run(arguments, in: dir, environment: ["FORGE_THREADS": "1"])
        XCTAssertEqual(status, 0, out + err, file: file, line: line)
    }

    /// Runs `arguments` as one process (2 threads) into DIR/single and under mpirun with `ranks` ranks
    /// into DIR/parallel; both must succeed. Returns mpirun's stdout.
    private func generateOnceAndWithRanks(_ ranks: Int, _ arguments: [String], in dir: String,
                                          file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let (single, singleOut, singleErr) = try run(arguments + ["--out", dir + "/single"], in: dir, environment: ["FORGE_THREADS": "2"])
        XCTAssertEqual(single, 0, singleOut + singleErr, file: file, line: line)
        let (parallel, out, err) = try runParallel(ranks, arguments + ["--out", dir + "/parallel"], in: dir)
        XCTAssertEqual(parallel, 0, out + err, file: file, line: line)
        return out
    }

    /// `mpirun -np 3 forge generate images` writes the folder one process writes, byte for byte
    /// (items, class folders, manifest with every sha256): 18 items in batches of 4 are 5 batches,
    /// so the second round has a rank with nothing to do. A resume with 2 ranks after items were
    /// deleted puts the same bytes back.
    func testThreeRanksGenerateTheImageFolderOneProcessGenerates() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try imageFolder(in: dir)
        try trainOneProcess(["train", "gan", "--data", data, "--out", dir + "/gan"] + tinyGAN, in: dir)
        let common = ["generate", "images", "--checkpoint", dir + "/gan", "--per-class", "9", "--batch", "4"]
        let out = try generateOnceAndWithRanks(3, common, in: dir)
        XCTAssertEqual(out.components(separatedBy: "wrote 18 images").count - 1, 1, "rank 0 alone prints: \(out)")
        XCTAssertTrue(out.contains("3 ranks"), out)
        try assertSameFolder(dir + "/single", dir + "/parallel", expectedFiles: 19)

        let names = try contents(dir + "/parallel").keys.filter { $0.hasSuffix(".png") }.sorted()
        for name in [names[0], names[7], names[16]] { try FileManager.default.removeItem(atPath: dir + "/parallel/" + name) }
        let (resumed, resumeOut, resumeErr) = try runParallel(2, common + ["--out", dir + "/parallel", "--resume"], in: dir)
        XCTAssertEqual(resumed, 0, resumeOut + resumeErr)
        XCTAssertTrue(resumeOut.contains("kept 15 from an earlier run"), resumeOut)
        try assertSameFolder(dir + "/single", dir + "/parallel", expectedFiles: 19)
    }

    /// Text items with a checker: rank 0 writes and checks what every rank decodes, so the folder and
    /// the manifest's verdicts (the checker rejects texts with a "k") are one process's.
    func testThreeRanksGenerateTheCheckedTextFolderOneProcessGenerates() throws {
        _ = try mpirun()
        let dir = folder()
        let data = try corpus(in: dir)
        try trainOneProcess(["train", "char", "--data", data, "--out", dir + "/char"] + tinyRun, in: dir)
        let common = ["generate", "text", "--checkpoint", dir + "/char", "--count", "7", "--batch", "2", "--length", "12",
                      "--prompt", "the ", "--validate", "if grep -q k {}; then echo 'has a k' >&2; exit 1; fi", "--out", dir + "/text"]
        let (single, singleOut, singleErr) = try run(common, in: dir, environment: ["FORGE_THREADS": "2"])
        XCTAssertEqual(single, 0, singleOut + singleErr)
        // the checker's messages could name the folder: the parallel run writes to the same path
        try FileManager.default.moveItem(atPath: dir + "/text", toPath: dir + "/single")
        let (parallel, out, err) = try runParallel(3, common, in: dir)
        XCTAssertEqual(parallel, 0, out + err)
        XCTAssertEqual(out.components(separatedBy: "valid: ").count - 1, 1, "rank 0 alone prints: \(out)")
        let manifest = try String(contentsOfFile: dir + "/text/manifest.csv", encoding: .utf8)
        XCTAssertEqual(manifest.split(separator: "\n").count, 8, manifest)
        let rejected = manifest.components(separatedBy: ",false,has a k").count - 1
        XCTAssertEqual(manifest.components(separatedBy: ",true,").count - 1, 7 - rejected, manifest)
        XCTAssertGreaterThan(rejected, 0, "the checker rejects some items: \(manifest)")
        try assertSameFolder(dir + "/single", dir + "/text", expectedFiles: 8 - rejected)
    }

    /// Sound clips from a tiny WaveGAN: 10 clips in batches of 3 over 2 ranks.
    func testTwoRanksGenerateTheAudioFolderOneProcessGenerates() throws {
        _ = try mpirun()
        let dir = folder()
        try clipFolder(in: dir, count: 8, amplitude: 0.25, frequency: 0.05)
        try trainOneProcess(["train", "gan", "--data", dir + "/clips", "--ngf", "4", "--ndf", "4", "--batch", "8",
                             "--steps", "1", "--no-tensorboard", "--out", dir + "/wavegan"], in: dir)
        let common = ["generate", "audio", "--checkpoint", dir + "/wavegan", "--count", "10", "--batch", "3"]
        let out = try generateOnceAndWithRanks(2, common, in: dir)
        XCTAssertTrue(out.contains("2 ranks"), out)
        try assertSameFolder(dir + "/single", dir + "/parallel", expectedFiles: 11)
    }

    /// An error only rank 0 can see (its folder holds other files) stops every rank at once, with one
    /// message, and writes nothing.
    func testAGenerationErrorOnRankZeroStopsEveryRankWithOneMessage() throws {
        _ = try mpirun()
        let dir = folder()
        try FileManager.default.createDirectory(atPath: dir + "/out", withIntermediateDirectories: true)
        try "mine".write(toFile: dir + "/out/notes.txt", atomically: true, encoding: .utf8)
        let checkpoint = packageFolder + "/checkpoints/fashion-cgan.safetensors"
        let start = Date()
        let (status, out, err) = try runParallel(2, ["generate", "images", "--checkpoint", checkpoint, "--count", "8", "--out", dir + "/out"], in: dir)
        XCTAssertNotEqual(status, 0, out + err)
        XCTAssertLessThan(Date().timeIntervalSince(start), 60, "no rank waits for another")
        XCTAssertEqual(err.components(separatedBy: "forge: error:").count - 1, 1, "one message, from rank 0: \(err)")
        XCTAssertTrue(err.contains("not empty"), err)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/out"), ["notes.txt"])
    }
}
