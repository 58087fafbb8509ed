import Foundation
import XCTest
import TensorCore
import DataIO
import Models
import Training
import Figures

/// The TensorBoard event files: CRC-32C and TFRecord framing checked in Swift, then the files read
/// by the real `tensorboard` package (Fixtures/read_tensorboard.py).
///
/// The Python tests use, in this order: the interpreter in `FORGE_TENSORBOARD_PYTHON`; the venv
/// `/tmp/forge-tensorboard-venv` when `import tensorboard` works there; with
/// `FORGE_TENSORBOARD_INSTALL=1`, that venv made by `python3 -m venv` and `pip install tensorboard`
/// (39 s on a loaded 2-core machine, once). Otherwise they skip with the reason and the command
/// that makes the venv: a plain `make test` on a fresh machine does not spend that time.
final class TensorBoardTests: XCTestCase {
    // MARK: checksums and framing, in Swift

    func testCRC32CKnownVectors() {
        // RFC 3720 (iSCSI) B.4 and the usual check value
        XCTAssertEqual(CRC32C.checksum(Array("123456789".utf8)), 0xE306_9283)
        XCTAssertEqual(CRC32C.checksum([UInt8]()), 0)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0, count: 32)), 0x8A91_36AA)
        XCTAssertEqual(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)), 0x62A8_AB43)
        XCTAssertEqual(CRC32C.checksum((0..<32).map { UInt8($0) }), 0x46DD_794E)
        // the masked form, as tensorboard's masked_crc32c(b"123456789") gives it
        XCTAssertEqual(CRC32C.masked(Array("123456789".utf8)), 0xC78A_B0E5)
    }

    func testEventFileIsFramedRecordsStartingWithTheFileVersion() throws {
        let dir = try temporaryFolder(self)
        let writer = try TensorBoardWriter(directory: dir + "/tb")
        writer.addScalar("loss", 1.5, step: 3)
        writer.addText("notes", "hello", step: 3)
        let png = try ImageCodec.encodePNG(PixelImage(width: 2, height: 1, channels: 1, pixels: [0, 1]))
        try writer.addImage("plot", png: png, step: 3)
        try writer.addImage("plot", png: png, step: 3)  // the same picture at the same step: left out
        try writer.addImage("plot", png: png, step: 4)
        try writer.close()
        let name = (writer.path as NSString).lastPathComponent
        XCTAssertTrue(name.hasPrefix("events.out.tfevents."), name)
        XCTAssertTrue(name.hasSuffix(".\(getpid())"), name)
        let records = try readRecords(writer.path)
        XCTAssertEqual(records.count, 5)
        XCTAssertNotNil(find(Array("brain.Event:2".utf8), in: records[0]))
        XCTAssertNotNil(find(Array("loss".utf8), in: records[1]))
        // simple_value (field 2, 32-bit) = 1.5 as little-endian float
        XCTAssertNotNil(find([0x15] + withUnsafeBytes(of: Float(1.5).bitPattern.littleEndian) { Array($0) }, in: records[1]))
        // a second writer in the same folder (a resumed run) starts its own file
        let again = try TensorBoardWriter(directory: dir + "/tb")
        try again.close()
        XCTAssertNotEqual(again.path, writer.path)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/tb").filter { $0.contains("tfevents") }.count, 2)
    }

    /// What a killed run keeps: events reach the file at `flush()` or once the flush interval has
    /// passed when an event arrives, without `close()`.
    func testEventsReachTheFileWithoutClose() throws {
        let dir = try temporaryFolder(self)
        let writer = try TensorBoardWriter(directory: dir, flushIntervalSeconds: 3600)
        writer.addScalar("loss", 1, step: 1)
        XCTAssertEqual(try readRecords(writer.path).count, 1, "only the file_version event before a flush")
        try writer.flush()
        XCTAssertEqual(try readRecords(writer.path).count, 2)
        writer.flushIntervalSeconds = 0
        writer.addScalar("loss", 2, step: 2)
        XCTAssertEqual(try readRecords(writer.path).count, 3, "an interval that has passed flushes by itself")
    }

    func testAFolderUnderAFileIsAClearError() throws {
        let dir = try temporaryFolder(self)
        FileManager.default.createFile(atPath: dir + "/plain", contents: Data("x".utf8))
        XCTAssertThrowsError(try TensorBoardWriter(directory: dir + "/plain/tb")) {
            XCTAssertEqual("\($0)", "the TensorBoard folder \(dir)/plain/tb cannot be created: \(dir)/plain is a file, not a folder")
        }
    }

    func testWriterRefusesBytesThatAreNotPNGOrWAV() throws {
        let writer = try TensorBoardWriter(directory: try temporaryFolder(self))
        XCTAssertThrowsError(try writer.addImage("x", png: Array("GIF89a not a png at all....".utf8), step: 1)) {
            XCTAssertTrue("\($0)".contains("not a PNG"), "\($0)")
        }
        XCTAssertThrowsError(try writer.addAudio("y", wav: Array("RIFF....AVI LIST".utf8), step: 1)) {
            XCTAssertTrue("\($0)".contains("not a WAV"), "\($0)")
        }
    }

    // MARK: read by tensorboard

    /// A tiny GAN trained for 2 epochs, then resumed to 3, with TensorBoard on; plus audio written
    /// directly. tensorboard's EventAccumulator must see every metric row's scalars at increasing
    /// steps, the grid's pixels, the WAV's samples and the config text.
    func testTensorBoardReadsScalarsImagesAudioAndTextOfAResumedRun() throws {
        let python = try tensorBoardPython()
        let dir = try temporaryFolder(self)
        try makeImageFolder(at: dir + "/data")
        let data = try ImageDataset.load(path: dir + "/data", size: 32, channels: 1, warn: { _ in })
        let logdir = dir + "/runs/gan"
        var task = try GANTrainingTask(gan: DCGAN(tinyConfig()), data: data, samplesDirectory: dir + "/run/samples")
        var options = quietOptions(dir + "/run", epochs: 2)
        options.tensorBoardDirectory = logdir
        _ = try TrainingLoop(task: task, options: options, log: { _ in }).run()
        XCTAssertNil(task.tensorBoard, "the loop hands the writer back when it ends")
        task = try GANTrainingTask(gan: DCGAN(tinyConfig()), data: data, samplesDirectory: dir + "/run/samples")
        options = quietOptions(dir + "/run", epochs: 3, resume: true)
        options.tensorBoardDirectory = logdir
        let summary = try TrainingLoop(task: task, options: options, log: { _ in }).run()
        XCTAssertEqual(summary.state.step, 12)
        let eventFiles = try FileManager.default.contentsOfDirectory(atPath: logdir).filter { $0.contains("tfevents") }
        XCTAssertEqual(eventFiles.count, 2, "a resumed run appends a new file: \(eventFiles)")

        // audio: a 0.1 s 440 Hz sine at 8 kHz written as WAV and logged from the file
        let sine = (0..<800).map { 0.5 * sin(2 * Float.pi * 440 * Float($0) / 8000) }
        try AudioIO.writeWAV(AudioClip(samples: sine, channels: 1, sampleRate: 8000), to: dir + "/sine.wav")
        let audioWriter = try TensorBoardWriter(directory: logdir)
        try audioWriter.addAudioFile("samples/clip_0", path: dir + "/sine.wav", step: 13)
        try audioWriter.close()

        let read = try accumulate(python, logdir: logdir, work: dir)

        // scalars: every step row of metrics.csv, with its value, under the column's name
        let csv = try String(contentsOfFile: dir + "/run/metrics.csv", encoding: .utf8).split(separator: "\n").map(String.init)
        let header = csv[0].split(separator: ",").map(String.init)
        let rows = csv.dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false).map { Double($0) } }
        let scalars = try XCTUnwrap(read["scalars"] as? [String: [[Double]]])
        for name in task.metricNames + ["lr"] {
            let k = try XCTUnwrap(header.firstIndex(of: name))
            let expected = rows.compactMap { row in row[k].map { [row[0]!, $0] } }
            let logged = try XCTUnwrap(scalars[name], "no scalar \(name) in \(scalars.keys.sorted())")
            XCTAssertEqual(logged.map { $0[0] }, (1...12).map(Double.init), name)
            XCTAssertEqual(expected.count, 12, name)
            for (got, want) in zip(logged, expected) {
                XCTAssertEqual(got[1], want[1], accuracy: 1e-5 * max(1, abs(want[1])), "\(name) at step \(got[0])")
            }
        }
        XCTAssertEqual(scalars["lr"]?.first?[1] ?? 0, Double(Float(tinyConfig().learningRate)), accuracy: 1e-9)
        let rates = try XCTUnwrap(scalars["items_per_s"])
        XCTAssertFalse(rates.isEmpty)
        XCTAssertTrue(rates.allSatisfy { $0[1] > 0 })

        // images: the fixed-noise grid of the last epoch decodes to the final generator's grid
        let images = try XCTUnwrap(read["images"] as? [String: [[String: Any]]])
        let grids = try XCTUnwrap(images["samples/fixed_noise_grid"], "images: \(images.keys.sorted())")
        XCTAssertEqual(grids.compactMap { $0["step"] as? Int }, [4, 8, 12])
        let last = try XCTUnwrap(grids.last)
        let decoded = try ImageCodec.load(path: dir + "/tb-dump/" + XCTUnwrap(last["file"] as? String))
        // the grid as the task writes it: a conditional model's rows carry their class names
        let expected = try LabelledGrid.image(images: task.fixedSamples(), rowLabels: task.classNames,
                                              columns: task.gridColumns)
        XCTAssertEqual([decoded.width, decoded.height, decoded.channels], [expected.width, expected.height, expected.channels])
        XCTAssertEqual(last["width"] as? Int, expected.width)
        XCTAssertEqual(last["height"] as? Int, expected.height)
        let worst = zip(decoded.pixels, expected.pixels).map { abs($0 - (min(1, max(0, $1)) * 255).rounded() / 255) }.max() ?? 1
        XCTAssertLessThan(worst, 1e-4, "the logged grid is not the generator's grid")
        XCTAssertNotNil(images["loss"], "loss.png is logged; images: \(images.keys.sorted())")

        // audio: the WAV decodes to the sine
        let audio = try XCTUnwrap((read["audio"] as? [String: [[String: Any]]])?["samples/clip_0"]?.first)
        XCTAssertEqual(audio["step"] as? Int, 13)
        XCTAssertEqual(audio["sample_rate"] as? Double, 8000)
        XCTAssertEqual(audio["wav_channels"] as? Int, 1)
        XCTAssertEqual(audio["wav_rate"] as? Int, 8000)
        XCTAssertEqual(audio["wav_sample_width"] as? Int, 2)
        XCTAssertEqual(audio["length_frames"] as? Int, 800)
        XCTAssertEqual(audio["content_type"] as? String, "audio/wav")
        let frames = try XCTUnwrap(audio["frames"] as? [Int])
        XCTAssertEqual(frames.count, 800)
        let audioError = zip(frames, sine).map { abs(Float($0) / 32768 - $1) }.max() ?? 1
        XCTAssertLessThan(audioError, 1e-3)

        // text: the text plugin claims the config, logged at the start of each invocation
        XCTAssertEqual(read["text_plugin_tags"] as? [String], ["hparams/config"])
        let text = try XCTUnwrap((read["text"] as? [String: [[Any]]])?["hparams/config"])
        XCTAssertEqual(text.map { $0[0] as? Int }, [0, 8])
        XCTAssertEqual(text.map { $0[1] as? String }, [task.configJSON, task.configJSON])
    }

    /// The tasks' media through `task.tensorBoard`: a VAE's reconstructions and samples, an audio
    /// GAN's clips (decoding to the WAVs in samples/) and its waveform figure.
    func testTaskMediaReachTensorBoard() throws {
        let python = try tensorBoardPython()
        let dir = try temporaryFolder(self)
        try makeImageFolder(at: dir + "/data")
        let images = VAEData.unitRange(try ImageDataset.load(path: dir + "/data", size: 32, channels: 1, warn: { _ in }))
        var v = VAEConfig()
        (v.imageSize, v.channels, v.hidden, v.latent, v.batchSize, v.seed) = (32, 1, 16, 4, 8, 3)
        let vaeTask = try VAETrainingTask(vae: VAE(v), data: images, heldOut: nil, samplesDirectory: dir + "/vae/samples")
        vaeTask.log = { _ in }
        var options = quietOptions(dir + "/vae", epochs: 1)
        options.tensorBoardDirectory = dir + "/runs/vae"
        _ = try TrainingLoop(task: vaeTask, options: options, log: { _ in }).run()

        var c = WaveGANConfig()
        (c.length, c.sampleRate, c.nz, c.ngf, c.ndf, c.batchSize, c.seed) = (4096, 8000, 8, 2, 2, 4, 5)
        let clips = Tensor(shape: [8, 4096], data: (0..<8).flatMap { k in
            (0..<4096).map { 0.5 * Float(sin(2 * Double.pi * 150 * Double(k + 1) * Double($0) / 8000)) }
        })
        let audioTask = try GANTrainingTask(gan: WaveGAN(c), clips: clips, samplesDirectory: dir + "/audio/samples", sampleCount: 2)
        options = quietOptions(dir + "/audio", epochs: 2)
        options.tensorBoardDirectory = dir + "/runs/audio"
        _ = try TrainingLoop(task: audioTask, options: options, log: { _ in }).run()

        let vae = try accumulate(python, logdir: dir + "/runs/vae", work: dir + "/vae")
        let vaeImages = try XCTUnwrap(vae["images"] as? [String: [[String: Any]]])
        for tag in ["samples/reconstructions", "samples/generated", "loss"] {
            XCTAssertEqual(vaeImages[tag]?.compactMap { $0["step"] as? Int }, [4], "\(tag) in \(vaeImages.keys.sorted())")
        }
        let generatedFile = try XCTUnwrap(vaeImages["samples/generated"]?.first?["file"] as? String)
        let generated = try ImageCodec.load(path: dir + "/vae/tb-dump/" + generatedFile)
        let written = try ImageCodec.load(path: dir + "/vae/samples/sample_1.png")
        XCTAssertEqual(generated, written)
        XCTAssertEqual((vae["scalars"] as? [String: [[Double]]])?["kl"]?.count, 4)

        let audio = try accumulate(python, logdir: dir + "/runs/audio", work: dir + "/audio")
        let sounds = try XCTUnwrap(audio["audio"] as? [String: [[String: Any]]])
        XCTAssertEqual(Set(sounds.keys), ["samples/clip_0", "samples/clip_1"])
        let lastClip = try XCTUnwrap(sounds["samples/clip_1"]?.last)
        XCTAssertEqual(lastClip["step"] as? Int, 4)
        XCTAssertEqual(lastClip["length_frames"] as? Int, 4096)
        XCTAssertEqual(lastClip["sample_rate"] as? Double, 8000)
        let wav = try AudioIO.read(path: dir + "/audio/samples/latest_1.wav")
        let frames = try XCTUnwrap(lastClip["frames"] as? [Int])
        XCTAssertEqual(frames.count, wav.samples.count)
        XCTAssertLessThan(zip(frames, wav.samples).map { abs(Float($0) / 32768 - $1) }.max() ?? 1, 1e-4)
        XCTAssertNotNil((audio["images"] as? [String: Any])?["samples/waveforms"])
    }

    /// A char run logs what the model writes at each evaluation as text (`samples/text`), at the
    /// evaluation steps, in the corpus's characters.
    func testCharEvaluationsLogTextSamples() throws {
        let python = try tensorBoardPython()
        let dir = try temporaryFolder(self)
        let corpus = try TextCorpus(text: String(repeating: "first citizen: before we proceed any further, hear me speak.\n", count: 80))
        var o = CharTrainingOptions()
        (o.layers, o.heads, o.embedding, o.blockSize, o.batchSize, o.iterations, o.warmupIterations, o.evalEvery, o.evalIterations) =
            (1, 2, 16, 32, 4, 6, 1, 3, 1)
        let task = try CharTrainingTask(corpus: corpus, options: o)
        var options = task.trainingOptions(runDirectory: dir + "/char")
        (options.showProgress, options.handleInterrupts, options.tensorBoardDirectory) = (false, false, dir + "/runs/char")
        _ = try TrainingLoop(task: task, options: options, log: { _ in }).run()
        let read = try accumulate(python, logdir: dir + "/runs/char", work: dir + "/char")
        let samples = try XCTUnwrap((read["text"] as? [String: [[Any]]])?["samples/text"], "\(read["text_plugin_tags"] ?? [])")
        XCTAssertEqual(samples.map { $0[0] as? Int }, [0, 3, 6], "nanoGPT evaluates at step 0 too")
        for entry in samples {
            let text = try XCTUnwrap(entry[1] as? String)
            XCTAssertEqual(text.unicodeScalars.count, 31, "block − 1 characters")
            XCTAssertTrue(text.unicodeScalars.allSatisfy { corpus.vocabulary.contains($0) })
        }
    }

    /// One flipped byte in a record's data makes tensorboard's reader fail that record's CRC check
    /// and the accumulator go without it: the CRCs are real.
    func testTensorBoardRejectsACorruptedByte() throws {
        let python = try tensorBoardPython()
        let dir = try temporaryFolder(self)
        let writer = try TensorBoardWriter(directory: dir + "/good")
        for step in 1...5 { writer.addScalar("loss", Double(step) / 4, step: step) }
        try writer.close()
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: writer.path)))

        let intact = try runScript(python, ["records", writer.path, dir + "/intact.json"], output: dir + "/intact.json")
        XCTAssertEqual(intact["records"] as? Int, 6)
        XCTAssertTrue(intact["error"] is NSNull, "\(intact)")

        // the last record's data ends 4 bytes before the file ends (its CRC follows)
        bytes[bytes.count - 6] ^= 0x01
        try FileManager.default.createDirectory(atPath: dir + "/bad", withIntermediateDirectories: true)
        let bad = dir + "/bad/" + (writer.path as NSString).lastPathComponent
        try Data(bytes).write(to: URL(fileURLWithPath: bad))
        let report = try runScript(python, ["records", bad, dir + "/bad.json"], output: dir + "/bad.json")
        XCTAssertEqual(report["records"] as? Int, 5)
        let message = try XCTUnwrap(report["error"] as? String, "\(report)")
        XCTAssertTrue(message.contains("event crc32 check"), message)

        let read = try accumulate(python, logdir: dir + "/bad", work: dir)
        let loss = (read["scalars"] as? [String: [[Double]]])?["loss"] ?? []
        XCTAssertEqual(loss.map { $0[0] }, [1, 2, 3, 4], "the corrupted step 5 is dropped")

        // a flipped length byte fails the header check
        var header = [UInt8](try Data(contentsOf: URL(fileURLWithPath: writer.path)))
        header[0] ^= 0x04
        try Data(header).write(to: URL(fileURLWithPath: bad))
        let headerReport = try runScript(python, ["records", bad, dir + "/header.json"], output: dir + "/header.json")
        XCTAssertEqual(headerReport["records"] as? Int, 0)
        XCTAssertTrue((headerReport["error"] as? String ?? "").contains("header crc32 check"), "\(headerReport)")
    }

    // MARK: helpers

    /// The records of a TFRecord file, each length and data checked against its masked CRC-32C.
    private func readRecords(_ path: String) throws -> [[UInt8]] {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        func le32(_ i: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[i + $1]) << (8 * $1) } }
        var records: [[UInt8]] = []
        var i = 0
        while i < bytes.count {
            let length = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[i + $1]) << (8 * $1) })
            XCTAssertEqual(le32(i + 8), CRC32C.masked(bytes[i..<(i + 8)]), "length CRC of record \(records.count)")
            let data = Array(bytes[(i + 12)..<(i + 12 + length)])
            XCTAssertEqual(le32(i + 12 + length), CRC32C.masked(data), "data CRC of record \(records.count)")
            records.append(data)
            i += 16 + length
        }
        XCTAssertEqual(i, bytes.count)
        return records
    }

    private func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        return (0...(haystack.count - needle.count)).first { Array(haystack[$0..<($0 + needle.count)]) == needle }
    }

    private var scriptPath: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/read_tensorboard.py").path
    }

    private func accumulate(_ python: String, logdir: String, work: String) throws -> [String: Any] {
        try runScript(python, ["accumulate", logdir, work + "/tb.json", work + "/tb-dump"], output: work + "/tb.json")
    }

    private func runScript(_ python: String, _ arguments: [String], output: String) throws -> [String: Any] {
        let (status, log) = try runProgram(python, [scriptPath] + arguments)
        guard status == 0 else { XCTFail("read_tensorboard.py \(arguments) failed:\n\(log)"); return [:] }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output)))
        return try XCTUnwrap(json as? [String: Any])
    }
}

/// Runs a program; returns its exit status and its stdout + stderr.
private func runProgram(_ executable: String, _ arguments: [String]) throws -> (Int32, String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

/// The cached answer of `tensorBoardPython()` for the test process.
nonisolated(unsafe) private var foundPython: Result<String, XCTSkip>? = nil

/// A Python that can `import tensorboard` (see `TensorBoardTests`), or a skip saying why there is none.
private func tensorBoardPython() throws -> String {
    if let foundPython { return try foundPython.get() }
    let result = locateTensorBoardPython()
    foundPython = result
    return try result.get()
}

private func locateTensorBoardPython() -> Result<String, XCTSkip> {
    let environment = ProcessInfo.processInfo.environment
    func imports(_ python: String) -> Bool {
        FileManager.default.isExecutableFile(atPath: python) && ((try? runProgram(python, ["-c", "import tensorboard"]))?.0 == 0)
    }
    if let given = environment["FORGE_TENSORBOARD_PYTHON"] {
        return imports(given) ? .success(given)
            : .failure(XCTSkip("FORGE_TENSORBOARD_PYTHON=\(given) cannot import tensorboard"))
    }
    let venv = "/tmp/forge-tensorboard-venv", python = venv + "/bin/python"
    if imports(python) { return .success(python) }
    guard environment["FORGE_TENSORBOARD_INSTALL"] == "1" else {
        return .failure(XCTSkip("no tensorboard in \(venv): make it with `python3 -m venv \(venv) && \(venv)/bin/pip install tensorboard`, "
                                + "or set FORGE_TENSORBOARD_INSTALL=1 to let the test do it, or FORGE_TENSORBOARD_PYTHON to a python that has it"))
    }
    guard let python3 = ["/usr/bin/python3", "/usr/local/bin/python3"].first(where: FileManager.default.isExecutableFile) else {
        return .failure(XCTSkip("no python3 to make \(venv) with"))
    }
    print("TensorBoardTests: creating \(venv) with pip install tensorboard (once)")
    do {
        let (made, madeLog) = try runProgram(python3, ["-m", "venv", venv])
        guard made == 0 else { return .failure(XCTSkip("python3 -m venv \(venv) failed: \(madeLog)")) }
        let (installed, log) = try runProgram(venv + "/bin/pip", ["install", "--quiet", "--disable-pip-version-check", "tensorboard"])
        guard installed == 0, imports(python) else {
            return .failure(XCTSkip("pip install tensorboard into \(venv) failed: \(log.suffix(400))"))
        }
    } catch {
        return .failure(XCTSkip("cannot make \(venv): \(error)"))
    }
    return .success(python)
}
