import Foundation
import XCTest
import TensorCore
import DataIO
import Models
import Training
import Figures
import Metrics
import Sampling

/// `forge generate text`: files and JSONL, manifest, `--only`, `--resume`, `--split-on`.
final class GenerateTextTests: XCTestCase {
    private func folder() throws -> String {
        let path = NSTemporaryDirectory() + "forge-gentext-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// An untrained tiny char transformer over "ab \n" (block 8, so 30 characters go past a full context).
    private func checkpoint(in dir: String) throws -> String {
        let config = CharTransformerConfig(vocabSize: 4, blockSize: 8, layers: 1, heads: 2, embedding: 8)
        let path = dir + "/char.safetensors"
        try CharCheckpoint.save(model: CharTransformer(config, seed: 3), vocabulary: Array("ab \n".unicodeScalars), to: path)
        return path
    }

    private func files(_ root: String) throws -> [String: [UInt8]] {
        var out: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: root) { out[name] = try FileIO.readBytes(root + "/" + name) }
        return out
    }

    private func run(_ ck: String, _ out: String, _ options: TextGenerationOptions) throws -> GenerationReport {
        try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: out).run().report
    }

    func testFilesManifestOnlyAndResume() throws {
        let dir = try folder()
        let ck = try checkpoint(in: dir)
        let options = TextGenerationOptions(count: 7, length: 30, prompt: "ab", seed: 5, batchSize: 3, fileExtension: ".md")
        XCTAssertEqual(try run(ck, dir + "/full", options).written, 7)
        let full = try files(dir + "/full")
        XCTAssertEqual(full.keys.sorted(), ["000000.md", "000001.md", "000002.md", "000003.md", "000004.md", "000005.md", "000006.md", "manifest.csv"])
        let texts = (0..<7).map { String(decoding: full[String(format: "%06d.md", $0)]!, as: UTF8.self) }
        XCTAssertTrue(texts.allSatisfy { $0.hasPrefix("ab") && $0.count == 32 })
        XCTAssertGreaterThan(Set(texts).count, 5, "each item draws from its own generator")
        let manifest = try DatasetManifest.read(path: dir + "/full/manifest.csv")
        XCTAssertEqual(manifest.modelKind, "char")
        XCTAssertEqual(manifest.rows[3].seed, ItemSeed.derive(runSeed: 5, index: 3))
        XCTAssertTrue(manifest.parameters.contains("prompt=\"ab\""))

        // --only 4 recreates the item bit for bit
        try FileManager.default.removeItem(atPath: dir + "/full/000004.md")
        var only = options
        only.only = 4
        XCTAssertEqual(try run(ck, dir + "/full", only).written, 1)
        XCTAssertEqual(try files(dir + "/full"), full)

        // an interrupted run (items 3… missing, a temporary left over) resumes to the same folder
        for i in 3..<7 { try FileManager.default.removeItem(atPath: dir + "/full/" + String(format: "%06d.md", i)) }
        try FileIO.writeAtomically([0x61], to: dir + "/full/.000003.md.tmp-1-2")
        var resume = options
        resume.resume = true
        let report = try run(ck, dir + "/full", resume)
        XCTAssertEqual(report.kept, 3)
        XCTAssertEqual(report.written, 4)
        XCTAssertEqual(try files(dir + "/full"), full)
    }

    func testJSONLAndSplitOn() throws {
        let dir = try folder()
        let ck = try checkpoint(in: dir)
        let options = TextGenerationOptions(count: 5, length: 40, prompt: "a", seed: 1, batchSize: 2, splitOn: " ", jsonl: true)
        _ = try run(ck, dir + "/j", options)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/j").sorted(), ["manifest.csv", "samples.jsonl"])
        let lines = String(decoding: try FileIO.readBytes(dir + "/j/samples.jsonl"), as: UTF8.self).split(separator: "\n")
        XCTAssertEqual(lines.count, 5)
        for (i, line) in lines.enumerated() {
            let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            XCTAssertEqual(record["index"] as? Int, i)
            let text = try XCTUnwrap(record["text"] as? String)
            XCTAssertTrue(text.hasPrefix("a"))
            XCTAssertFalse(text.dropFirst().contains(" "), "items end before the separator")
        }
        XCTAssertEqual(try DatasetManifest.read(path: dir + "/j/manifest.csv").rows[2].file, "samples.jsonl#000002")
        // resume of a JSONL run that lost its last records gives the same file
        let before = try FileIO.readBytes(dir + "/j/samples.jsonl")
        try FileIO.writeAtomically(Array(lines.prefix(2).joined(separator: "\n").utf8) + [10], to: dir + "/j/samples.jsonl")
        var resume = options
        resume.resume = true
        XCTAssertEqual(try run(ck, dir + "/j", resume).written, 3)
        XCTAssertEqual(try FileIO.readBytes(dir + "/j/samples.jsonl"), before)
    }

    /// Item i's text depends on (seed, i) only: the same files whatever the batch size, and the sampler's
    /// output for the item's own generator. The manifest records every sampling setting.
    func testItemsIndependentOfBatchSizeAndSettingsRecorded() throws {
        let dir = try folder()
        let ck = try checkpoint(in: dir)
        var options = TextGenerationOptions(count: 5, length: 30, prompt: "a", seed: 11, batchSize: 1)
        _ = try run(ck, dir + "/b1", options)
        options.batchSize = 3
        _ = try run(ck, dir + "/b3", options)
        var one = try files(dir + "/b1"), three = try files(dir + "/b3")
        XCTAssertNotEqual(one.removeValue(forKey: "manifest.csv"), three.removeValue(forKey: "manifest.csv"), "batch is recorded")
        XCTAssertEqual(one, three)
        let loaded = try CharCheckpoint.load(path: ck)
        var sources = [RandomGenerator(seed: ItemSeed.derive(runSeed: 11, index: 2))]
        let tokens = try CharSampler(model: loaded.model).generate(prompt: try loaded.encode("a"), length: 30,
                                                                  options: options.sampling, sources: &sources)[0]
        XCTAssertEqual(String(decoding: one["000002.txt"]!, as: UTF8.self), "a" + loaded.decode(tokens))
        let parameters = try DatasetManifest.read(path: dir + "/b3/manifest.csv").parameters
        for field in ["min_p=-", "repetition_penalty=1.0", "frequency_penalty=0.0", "presence_penalty=0.0", "stop=[]", "context=exact"] {
            XCTAssertTrue(parameters.contains(field), "\(parameters) lacks \(field)")
        }
    }

    /// `stop` ends each item early (the stop string not kept) and goes into the manifest; a bad sampling
    /// value is refused before anything is written.
    func testStopStringsAndBadValues() throws {
        let dir = try folder()
        let ck = try checkpoint(in: dir)
        var options = TextGenerationOptions(count: 6, length: 40, prompt: "a", seed: 2, batchSize: 4)
        options.sampling = TextSamplingOptions(temperature: 1.5, topK: nil, stop: ["b "])
        _ = try run(ck, dir + "/s", options)
        options.sampling.stop = []
        _ = try run(ck, dir + "/free", options)
        var stoppedEarly = 0
        for i in 0..<6 {
            let name = String(format: "%06d.txt", i)
            let stopped = String(decoding: try FileIO.readBytes(dir + "/s/" + name), as: UTF8.self)
            let free = String(decoding: try FileIO.readBytes(dir + "/free/" + name), as: UTF8.self)
            let generated = free.dropFirst()   // the stop string must lie in the generated text
            let expected = "a" + (generated.range(of: "b ").map { String(generated[..<$0.lowerBound]) } ?? String(generated))
            XCTAssertEqual(stopped, expected, "item \(i)")
            if stopped.count < free.count { stoppedEarly += 1 }
        }
        XCTAssertGreaterThan(stoppedEarly, 0, "the stop string occurs in some item")
        XCTAssertTrue(try DatasetManifest.read(path: dir + "/s/manifest.csv").parameters.contains("stop=[\"b \"]"))

        options.sampling = TextSamplingOptions(topP: 1.5)
        XCTAssertThrowsError(try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/bad")) {
            XCTAssertEqual(($0 as? TextSamplingError)?.option, .topP)
        }
        options.sampling = TextSamplingOptions(stop: ["x"])
        XCTAssertThrowsError(try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/bad")) {
            XCTAssertEqual(($0 as? TextSamplingError)?.option, .stop)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/bad"))
    }

    /// The manifest's lines, split at commas (the fixture's fields hold no commas or quotes).
    private func manifestLines(_ dir: String) throws -> [[String]] {
        String(decoding: try FileIO.readBytes(dir + "/manifest.csv"), as: UTF8.self)
            .split(separator: "\n").map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) }
    }

    /// `checkCommand`: each item's verdict is the checker's exit status on that file, recorded with the
    /// checker's message in the manifest's `valid` / `check_error` columns; rejected items are deleted
    /// (kept with `keepInvalid`); a resumed run ends with the same folder, checking the kept items that
    /// have no verdict yet.
    func testCheckerVerdictsDeletionAndResume() throws {
        let dir = try folder()
        let ck = try checkpoint(in: dir)
        let command = "grep -q bb {} || { echo \"no bb\" >&2; echo second line >&2; exit 3; }"
        var options = TextGenerationOptions(count: 9, length: 12, prompt: "a", seed: 4, batchSize: 4, checkCommand: command)
        options.sampling = TextSamplingOptions(temperature: 1, topK: nil)
        options.keepInvalid = true
        let kept = try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/all").run()
        let texts = (0..<9).map { String(decoding: (try? FileIO.readBytes(dir + "/all/" + String(format: "%06d.txt", $0))) ?? [], as: UTF8.self) }
        let valid = texts.map { $0.contains("bb") }
        XCTAssertTrue(valid.contains(true) && valid.contains(false), "the fixture gives both verdicts: \(texts)")
        XCTAssertEqual(kept.validation, ValidationSummary(checked: 9, valid: valid.filter { $0 }.count))
        let rows = try manifestLines(dir + "/all")
        XCTAssertEqual(rows[0], ["file", "index", "label", "class", "seed", "checkpoint", "checkpoint_sha256", "model_kind", "parameters",
                                 "valid", "check_error"])
        XCTAssertEqual(rows.count, 10)
        for i in 0..<9 {
            XCTAssertEqual(rows[i + 1].first, String(format: "%06d.txt", i))
            // the checker's first and last stderr lines
            XCTAssertEqual(Array(rows[i + 1].suffix(2)), [valid[i] ? "true" : "false", valid[i] ? "" : "no bb … second line"], "item \(i)")
        }
        let manifest = try DatasetManifest.read(path: dir + "/all/manifest.csv")
        XCTAssertTrue(manifest.parameters.contains("validate="))
        XCTAssertTrue(manifest.recordsVerdicts)
        XCTAssertEqual(manifest.rows.map(\.valid), valid.map { Optional($0) })
        XCTAssertEqual(manifest.rows.map(\.checkError), valid.map { $0 ? "" : "no bb … second line" })
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/all/validation.csv"), "verdicts live in the manifest only")

        // without keepInvalid the rejected items are deleted, the verdicts are the same
        options.keepInvalid = false
        let run = try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/valid").run()
        XCTAssertEqual(run.validation, kept.validation)
        let after = try files(dir + "/valid")
        XCTAssertEqual(after.keys.filter { $0.hasSuffix(".txt") }.sorted(),
                       (0..<9).filter { valid[$0] }.map { String(format: "%06d.txt", $0) })
        // the same verdicts (the parameters differ in keep_invalid)
        let validManifest = try DatasetManifest.read(path: dir + "/valid/manifest.csv")
        XCTAssertEqual(validManifest.rows, manifest.rows)

        // an interrupted run: the last batch missing, and the verdicts of items 2… lost
        for i in 8..<9 { try? FileManager.default.removeItem(atPath: dir + "/valid/" + String(format: "%06d.txt", i)) }
        var interrupted = validManifest
        for i in 2..<9 { interrupted.rows[i].valid = nil; interrupted.rows[i].checkError = nil }
        try FileIO.writeAtomically(Array(interrupted.csv().utf8), to: dir + "/valid/manifest.csv")
        options.resume = true
        let resumed = try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/valid").run()
        // regenerated: item 8, and the rejected items whose verdicts were lost (nothing tells them from missing ones)
        XCTAssertEqual(resumed.report.written, 1 + (2..<8).filter { !valid[$0] }.count)
        XCTAssertEqual(resumed.validation, kept.validation)
        XCTAssertEqual(try files(dir + "/valid"), after)
    }

    /// Manifests without the verdict columns (runs without a checker, and every manifest written before
    /// the columns existed) read as before; with them, a verdict round-trips, empty meaning not checked.
    func testManifestVerdictColumnsAreOptional() throws {
        let dir = try folder()
        let old = "file,index,label,class,seed,checkpoint,checkpoint_sha256,model_kind,parameters\n"
            + "000000.txt,0,0,,17,char.safetensors,\(String(repeating: "a", count: 64)),char,count=1\n"
        try FileIO.writeAtomically(Array(old.utf8), to: dir + "/old.csv")
        let read = try DatasetManifest.read(path: dir + "/old.csv")
        XCTAssertFalse(read.recordsVerdicts)
        XCTAssertEqual(read.rows, [DatasetManifest.Row(file: "000000.txt", index: 0, label: 0, className: "", seed: 17)])
        XCTAssertEqual(read.csv(), old)

        var manifest = read
        manifest.recordsVerdicts = true
        manifest.rows += [DatasetManifest.Row(file: "000001.txt", index: 1, label: 0, className: "", seed: 18, valid: false,
                                              checkError: "File \"x.py\", line 2 … SyntaxError: '(' was never closed"),
                          DatasetManifest.Row(file: "000002.txt", index: 2, label: 0, className: "", seed: 19, valid: true, checkError: "")]
        try FileIO.writeAtomically(Array(manifest.csv().utf8), to: dir + "/new.csv")
        XCTAssertEqual(try DatasetManifest.read(path: dir + "/new.csv"), manifest)
        XCTAssertTrue(manifest.csv().hasPrefix(DatasetManifest.header.joined(separator: ",") + ",valid,check_error\n"))
        // sha256 and the verdicts together
        manifest.recordsItemSHA256 = true
        manifest.rows[2].sha256 = String(repeating: "b", count: 64)
        try FileIO.writeAtomically(Array(manifest.csv().utf8), to: dir + "/both.csv")
        XCTAssertEqual(try DatasetManifest.read(path: dir + "/both.csv"), manifest)
        let bad = old.replacingOccurrences(of: "parameters\n", with: "parameters,valid,check_error\n")
            .replacingOccurrences(of: "count=1\n", with: "count=1,maybe,\n")
        try FileIO.writeAtomically(Array(bad.utf8), to: dir + "/bad.csv")
        XCTAssertThrowsError(try DatasetManifest.read(path: dir + "/bad.csv")) {
            XCTAssertTrue("\($0)".contains("malformed valid \"maybe\""), "\($0)")
        }
    }

    /// `unit: .function` ends an item at the first line that starts at column 0 with a letter (over
    /// "ab \n": "\na" or "\nb") or at "\n\n\n", keeping the newline that ends its last line: the same
    /// text as a run to the full length, cut there. Generation stops at the boundary (fewer characters).
    func testFunctionUnitEndsAtTheNextTopLevelLine() throws {
        let dir = try folder()
        let ck = try checkpoint(in: dir)
        var options = TextGenerationOptions(count: 12, length: 40, prompt: "a", seed: 9, batchSize: 4,
                                            sampling: TextSamplingOptions(temperature: 1.5, topK: nil))
        let free = try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/free").run()
        options.unit = .function
        let generator = try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/unit")
        XCTAssertEqual(generator.unitStops, ["\n\n\n", "\na", "\nb"])
        let units = try generator.run()
        XCTAssertLessThan(units.characters, free.characters, "generation stops at the boundary")
        var ended = 0
        for i in 0..<12 {
            let name = String(format: "%06d.txt", i)
            let whole = String(decoding: try FileIO.readBytes(dir + "/free/" + name), as: UTF8.self)
            let unit = String(decoding: try FileIO.readBytes(dir + "/unit/" + name), as: UTF8.self)
            let generated = whole.dropFirst()   // the prompt "a"; a boundary lies in the generated text
            var expected = "a" + generated
            for boundary in ["\n\n\n", "\na", "\nb"] {
                if let r = generated.range(of: boundary), ("a" + generated[..<r.lowerBound] + "\n").count < expected.count {
                    expected = "a" + generated[..<r.lowerBound] + "\n"
                }
            }
            XCTAssertEqual(unit, expected, "item \(i)")
            if unit != whole { ended += 1 }
        }
        XCTAssertGreaterThan(ended, 3, "most items meet a boundary")
        XCTAssertTrue(try DatasetManifest.read(path: dir + "/unit/manifest.csv").parameters.hasSuffix(" unit=function"))
        XCTAssertFalse(try DatasetManifest.read(path: dir + "/free/manifest.csv").parameters.contains("unit="))
    }

    /// A checker that cannot run, or that hangs past its time limit, fails the run with a clear message.
    func testMissingOrHangingCheckerIsAnError() throws {
        let dir = try folder()
        let ck = try checkpoint(in: dir)
        var options = TextGenerationOptions(count: 3, length: 5, prompt: "a", checkCommand: "forge-no-such-checker {}")
        XCTAssertThrowsError(try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/missing").run()) {
            XCTAssertTrue("\($0)".contains("could not be run (exit 127"), "\($0)")
            XCTAssertEqual(($0 as? CheckerError).map { if case .cannotRun = $0 { return true } else { return false } }, true)
            XCTAssertTrue("\($0)".contains("forge-no-such-checker"), "\($0)")
        }
        options.checkCommand = "sleep 30; true {}"
        options.checkTimeLimit = 0.3
        XCTAssertThrowsError(try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/hang").run()) {
            XCTAssertTrue("\($0)".contains("did not finish within 0.3 s"), "\($0)")
        }
        options.checkCommand = "true"
        XCTAssertThrowsError(try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/x")) {
            XCTAssertTrue("\($0)".contains("no {}"), "\($0)")
        }
        options.checkCommand = "true {}"
        options.jsonl = true
        XCTAssertThrowsError(try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/x")) {
            XCTAssertTrue("\($0)".contains("one file per item"), "\($0)")
        }
    }

    /// `python3 -m py_compile {}` as the checker: every one-character continuation of "a" over "ab \n" is a
    /// valid Python expression, and no __pycache__ folder is left among the items.
    func testPythonCheckerLeavesNoByteCodeInTheDataset() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
            throw XCTSkip("/usr/bin/python3 is not installed")
        }
        let dir = try folder()
        let ck = try checkpoint(in: dir)
        let options = TextGenerationOptions(count: 6, length: 1, prompt: "a", seed: 3, batchSize: 3, fileExtension: ".py",
                                            sampling: TextSamplingOptions(temperature: 1, topK: nil),
                                            checkCommand: "/usr/bin/python3 -m py_compile {}")
        let run = try TextDatasetGenerator(checkpointPath: ck, options: options, outputDirectory: dir + "/py").run()
        XCTAssertEqual(run.validation, ValidationSummary(checked: 6, valid: 6))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/py").sorted(),
                       ["000000.py", "000001.py", "000002.py", "000003.py", "000004.py", "000005.py", "manifest.csv"])
    }
}
