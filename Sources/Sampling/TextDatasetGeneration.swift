import Foundation
import TensorCore
import DataIO
import Models

// Synthetic text datasets from a char-transformer checkpoint: N files `DIR/<index><ext>` (or N
// records in `DIR/samples.jsonl`) plus `DIR/manifest.csv`. The same determinism rules as images:
// sequence i draws every token from its own generator seeded with `ItemSeed.derive(run, i)`, so its
// text does not depend on the other items; sequences are decoded side by side (one batched forward
// per step, `CharSampler`) in batches aligned to multiples of the batch size, and `--only` /
// `--resume` regenerate whole batches (so even float rounding matches the original run).

/// Where an item of `forge generate text` ends.
public enum TextUnit: String, Sendable, CaseIterable {
    /// After `length` characters (or at a stop string, or at `splitOn`).
    case length
    /// At the end of the first top-level unit of code after the prompt, for Python-like text (e.g. a
    /// prompt "def " gives one function): generation stops at two blank lines in a row ("\n\n\n") or
    /// before the next line that starts at column 0 with a letter, `_` or `@` (a new top-level `def`,
    /// `class`, decorator or statement), so the unit keeps its indented body and the comments, closing
    /// brackets and string continuations that start at column 0. The item ends with one newline. The
    /// first generated line never ends the unit. A unit still open after `length` characters is cut
    /// there. A decorator line counts as a unit of its own: prompt with the `def` instead.
    case function
}

/// Parameters of `forge generate text`.
public struct TextGenerationOptions: Sendable {
    /// Number of items.
    public var count: Int
    /// Characters generated per item (at most; before `splitOn` cuts it).
    public var length: Int
    /// Where an item ends (`length` or a whole top-level unit of code).
    public var unit: TextUnit
    /// Text every item starts from (included in the item).
    public var prompt: String
    /// Run seed: item i draws its tokens from `ItemSeed.derive(runSeed: seed, index: i)`.
    public var seed: UInt64
    /// Sequences decoded side by side.
    public var batchSize: Int
    /// File extension of the items (".txt", ".py", …).
    public var fileExtension: String
    /// When set, each item ends before the first occurrence of this separator after the prompt
    /// (one paragraph, one function, …).
    public var splitOn: String?
    /// One `samples.jsonl` with a record per item instead of one file per item.
    public var jsonl: Bool
    /// Temperature, top-k/top-p/min-p, penalties and stop strings of every item's decoding.
    public var sampling: TextSamplingOptions
    /// Continue an interrupted run: keep the items already written, generate the missing ones (by whole
    /// batches).
    public var resume: Bool
    /// Recreate only this item (its whole batch is decoded again, so the bits match the original run).
    public var only: Int?
    /// A checker run on every item through `/bin/sh -c`, with each `{}` replaced by the item's path
    /// (shell-quoted); exit status 0 means valid, e.g. `python3 -m py_compile {}`. Needs file items.
    public var checkCommand: String?
    /// Keep the items the checker rejects (by default they are deleted; their verdict stays recorded).
    public var keepInvalid: Bool
    /// Seconds one check may take; a checker still running then is killed and the run fails.
    public var checkTimeLimit: Double

    /// Options for `count` items of at most `length` characters each, starting from `prompt`; the rest default to
    /// batches of 16, `.txt` files, the default sampling options, no checker (30 s limit when one is set).
    public init(count: Int, length: Int, unit: TextUnit = .length, prompt: String = "\n", seed: UInt64 = 0, batchSize: Int = 16,
                fileExtension: String = ".txt", splitOn: String? = nil, jsonl: Bool = false,
                sampling: TextSamplingOptions = TextSamplingOptions(), resume: Bool = false, only: Int? = nil,
                checkCommand: String? = nil, keepInvalid: Bool = false, checkTimeLimit: Double = 30) {
        (self.count, self.length, self.unit, self.prompt, self.seed, self.batchSize) = (count, length, unit, prompt, seed, batchSize)
        (self.fileExtension, self.splitOn, self.jsonl, self.sampling, self.resume, self.only) = (fileExtension, splitOn, jsonl, sampling, resume, only)
        (self.checkCommand, self.keepInvalid, self.checkTimeLimit) = (checkCommand, keepInvalid, checkTimeLimit)
    }
}

/// Writes a synthetic text dataset from a char-transformer checkpoint.
public final class TextDatasetGenerator {
    /// The char model and its vocabulary, loaded from `checkpointPath`.
    public let checkpoint: CharCheckpoint
    /// The checkpoint file as given; the manifest records its last path component.
    public let checkpointPath: String
    /// Lower-case hex SHA-256 of the checkpoint file.
    public let checkpointSHA256: String
    /// The options the run was planned with.
    public let options: TextGenerationOptions
    /// The folder the items and `manifest.csv` are written to.
    public let outputDirectory: String
    /// Prompt tokens.
    public let prompt: [Int32]
    /// The sampler every batch goes through (the same code as `forge sample char`).
    public let sampler: CharSampler
    /// The stop strings that end a `TextUnit.function` unit (empty for `.length`); the sampler gets them
    /// after the user's own stop strings.
    public let unitStops: [String]

    /// File name of the JSONL output (`options.jsonl`), one record per item.
    public static let jsonlName = "samples.jsonl"

    /// Loads the checkpoint and checks the options: positive count, length and batch size, a non-empty prompt
    /// the vocabulary can encode, stop strings the model can produce, a checker command with `{}` (and file
    /// items), `only` inside the run.
    public init(checkpointPath: String, options: TextGenerationOptions, outputDirectory: String) throws {
        guard options.count > 0, options.length > 0, options.batchSize > 0 else {
            throw SamplingError("count, length and batch size must be positive")
        }
        if options.checkCommand != nil {
            guard !options.jsonl else { throw SamplingError("checking items needs one file per item; it cannot be combined with JSONL output") }
            guard options.checkCommand!.contains("{}") else {
                throw SamplingError("the checker command `\(options.checkCommand!)` has no {} to stand for the item's file")
            }
            guard options.checkTimeLimit > 0, options.checkTimeLimit.isFinite else {
                throw SamplingError("the checker's time limit must be a positive number of seconds, got \(options.checkTimeLimit)")
            }
        }
        if let only = options.only, !(0..<options.count).contains(only) {
            throw SamplingError("--only \(only) is outside the run's items 0..<\(options.count)")
        }
        checkpoint = try CharCheckpoint.load(path: checkpointPath)
        guard !checkpoint.vocabulary.isEmpty else { throw SamplingError("\(checkpointPath) has no vocabulary (a nanoGPT export? import it with `forge import nanogpt --vocab-from`)") }
        guard !options.prompt.isEmpty else { throw SamplingError("the prompt must hold at least one character") }
        prompt = try checkpoint.encode(options.prompt)
        try options.sampling.validate()
        sampler = CharSampler(model: checkpoint.model, vocabulary: checkpoint.vocabulary)
        switch options.unit {
        case .length: unitStops = []
        case .function:
            guard checkpoint.vocabulary.contains("\n") else {
                throw SamplingError("\(checkpointPath)'s vocabulary has no newline, so a unit of code can never end; generate fixed lengths instead")
            }
            let starts = checkpoint.vocabulary.filter { ($0.properties.isAlphabetic && $0.isASCII) || $0 == "_" || $0 == "@" }
            unitStops = ["\n\n\n"] + starts.map { "\n" + String($0) }
        }
        try options.sampling.validate()
        _ = try sampler.stopTokens(options.sampling)   // a stop string the model cannot produce fails now, not per batch
        self.checkpointPath = checkpointPath
        self.checkpointSHA256 = try SHA256.hexDigest(ofFile: checkpointPath)
        self.options = options
        self.outputDirectory = outputDirectory
    }

    private var digits: Int { max(6, String(options.count - 1).count) }

    /// Item file name (relative), or the JSONL record's name `samples.jsonl#<index>`.
    public func file(_ index: Int) -> String {
        let number = String(repeating: "0", count: max(0, digits - String(index).count)) + String(index)
        return options.jsonl ? Self.jsonlName + "#" + number : number + options.fileExtension
    }

    /// The generation parameters as recorded in the manifest: count, length, seed, batch, every sampling
    /// setting, prompt, split and format.
    public var parameters: String {
        let s = options.sampling
        return "count=\(options.count) length=\(options.length) seed=\(options.seed) batch=\(options.batchSize) "
            + "temperature=\(s.temperature) top_k=\(s.topK.map(String.init) ?? "-") top_p=\(s.topP.map { "\($0)" } ?? "-") "
            + "min_p=\(s.minP.map { "\($0)" } ?? "-") repetition_penalty=\(s.repetitionPenalty) frequency_penalty=\(s.frequencyPenalty) "
            + "presence_penalty=\(s.presencePenalty) penalty_window=\(s.penaltyWindow.map(String.init) ?? "block") "
            + "stop=[\(s.stop.map(jsonString).joined(separator: ","))] context=\(s.reuseContext ? "reuse" : "exact") "
            + "prompt=\(jsonString(options.prompt)) split_on=\(options.splitOn.map(jsonString) ?? "-") "
            + (options.jsonl ? "format=jsonl" : "ext=\(options.fileExtension)")
            + (options.unit == .length ? "" : " unit=\(options.unit.rawValue)")   // absent for .length: older manifests still match
            + (options.checkCommand.map { " validate=\(jsonString($0)) keep_invalid=\(options.keepInvalid)" } ?? "")
    }

    /// The manifest of the whole run: one row per item with its seed, kind "char", and verdict columns when a
    /// checker runs.
    public var manifest: DatasetManifest {
        DatasetManifest(checkpoint: URL(fileURLWithPath: checkpointPath).lastPathComponent, checkpointSHA256: checkpointSHA256,
                 modelKind: "char", parameters: parameters,
                 rows: (0..<options.count).map { DatasetManifest.Row(file: file($0), index: $0, label: 0, className: "",
                                                              seed: ItemSeed.derive(runSeed: options.seed, index: $0)) },
                 recordsVerdicts: options.checkCommand != nil)
    }

    /// The sampling options the sampler runs with: the user's, plus the unit's stop strings.
    public var generationOptions: TextSamplingOptions {
        var sampling = options.sampling
        sampling.stop += unitStops.filter { !sampling.stop.contains($0) }
        return sampling
    }

    /// Decodes `seeds.count` sequences side by side, each drawing from its own generator; returns the
    /// new tokens of each and the stop string that ended it (`CharSampler`, exact unless the options ask
    /// for `reuseContext`).
    public func decode(seeds: [UInt64]) throws -> [GeneratedSequence] {
        var sources = seeds.map { RandomGenerator(seed: $0) }
        return try sampler.generateSequences(prompt: prompt, length: options.length, options: generationOptions, sources: &sources)
    }

    /// The text of an item from its generated sequence: prompt + continuation (+ the newline that ends a
    /// unit of code), cut at `splitOn`.
    public func itemText(_ sequence: GeneratedSequence) -> String {
        var text = checkpoint.decode(sequence.tokens)
        // The unit's stop strings begin with the newline that ends the unit's last line.
        if let stop = sequence.stop, unitStops.contains(stop), !options.sampling.stop.contains(stop) { text += "\n" }
        if let separator = options.splitOn, !separator.isEmpty, let range = text.range(of: separator) {
            text = String(text[..<range.lowerBound])
        }
        return options.prompt + text
    }

    /// The items as planned (file names, seeds) for `GenerationPlan`.
    private var plannedItems: [PlannedItem] {
        (0..<options.count).map { PlannedItem(index: $0, label: 0, className: "", file: file($0),
                                              seed: ItemSeed.derive(runSeed: options.seed, index: $0)) }
    }

    /// Generates the items (all, the missing ones with `resume`, or one with `only`) and writes
    /// `manifest.csv`; with a checker, checks every item while later batches are generated, records each
    /// verdict in the manifest's `valid` and `check_error` columns and deletes the rejected items unless
    /// `keepInvalid`.
    /// `progress(done, total, characters)` after each batch.
    /// With a `group` of several ranks, every rank calls `run`: the ranks decode the batches in turn and
    /// rank 0 writes them, checks them and keeps the manifest (`BatchSchedule`), the same folder as one
    /// process writes; `progress` and the results are rank 0's (the other ranks return empty ones).
    public func run(group: (any GenerationGroup)? = nil, progress: (Int, Int, Int) -> Void = { _, _, _ in }) throws
        -> (report: GenerationReport, characters: Int, validation: ValidationSummary?) {
        if let group, group.size > 1, group.rank != 0 {
            let wanted = [Bool](packedFlags: try BatchSchedule.shareFromRoot(group) { [] })
            try BatchSchedule.run(batches(wanted: wanted), group: group, compute: { try decodeItems($0, wanted: wanted) },
                                  pack: packItems, consume: { _, _ in }, consumeRemote: { _, _ in })
            return (GenerationReport(), 0, nil)
        }
        let start = Date()
        let jsonlPath = outputDirectory + "/" + Self.jsonlName
        let manifestPath = outputDirectory + "/manifest.csv"
        var texts = [String?](repeating: nil, count: options.count)
        var verdicts: [Int: ItemVerdict] = [:]
        var plan: GenerationPlan!
        var checker: ItemChecker?
        // Rank 0 (or the one process) plans the folder; the other ranks get the items to decode.
        let wanted = [Bool](packedFlags: try BatchSchedule.shareFromRoot(group) {
            // Existing JSONL records by index (read before the plan, which only sees file paths).
            if options.jsonl, options.resume || options.only != nil, let bytes = try? FileIO.readBytes(jsonlPath) {
                for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                    if let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                       let index = record["index"] as? Int, (0..<options.count).contains(index), let text = record["text"] as? String {
                        texts[index] = text
                    }
                }
            }
            // Verdicts of an earlier run of this folder, read before the plan rewrites its manifest (whose
            // check of checkpoint and parameters makes them this run's).
            if options.checkCommand != nil, options.resume || options.only != nil,
               FileManager.default.fileExists(atPath: manifestPath), let earlier = try? DatasetManifest.read(path: manifestPath) {
                for row in earlier.rows where (0..<options.count).contains(row.index) {
                    if let valid = row.valid { verdicts[row.index] = ItemVerdict(valid: valid, message: row.checkError ?? "") }
                }
            }
            var expected = manifest
            for i in expected.rows.indices { expected.rows[i].setVerdict(verdicts[expected.rows[i].index]) }
            let items = plannedItems
            let indexOfPath = Dictionary(uniqueKeysWithValues: items.map { (outputDirectory + "/" + $0.file, $0.index) })
            plan = try GenerationPlan.prepare(outputDirectory, manifest: expected, items: items, resume: options.resume,
                                              only: options.only) { path in
                guard let i = indexOfPath[path] else { return false }
                if options.jsonl { return texts[i] != nil }
                // A file item is valid when it is there as UTF-8 (the rename-into-place write never leaves a
                // partial file under the item's name), or when it was checked, rejected and deleted.
                if let present = try? FileIO.readBytes(path) { return String(validating: present, as: UTF8.self) != nil }
                return verdicts[i].map { !$0.valid && !options.keepInvalid } ?? false
            }
            if let command = options.checkCommand {
                checker = ItemChecker(command: command, timeLimit: options.checkTimeLimit)
                for i in 0..<options.count where plan.wanted[i] { verdicts[i] = nil }
                // kept items of an interrupted run that were never checked
                for i in 0..<options.count where !plan.wanted[i] && verdicts[i] == nil && options.only == nil {
                    checker!.submit(index: i, path: outputDirectory + "/" + file(i), keep: true)
                }
            }
            return plan.wanted.packedFlags
        })
        // The manifest with this run's verdicts (items being regenerated have none until checked again).
        func recordVerdicts(final: Bool = false) throws {
            guard let checker else { return }
            for (i, verdict) in checker.takeVerdicts() { verdicts[i] = verdict }
            try checker.checkFailure()
            var current = plan.manifest
            for i in current.rows.indices { current.rows[i].setVerdict(verdicts[current.rows[i].index]) }
            let bytes = Array(current.csv().utf8)
            if final { try FileIO.writeAtomically(bytes, to: manifestPath) } else { try writeRenamed(bytes, to: manifestPath) }
        }
        try recordVerdicts()

        let total = plan.total
        var done = 0, characters = 0
        func consume(_ items: [(index: Int, text: String, characters: Int)]) throws {
            for (i, text, generated) in items {
                characters += generated
                done += 1
                texts[i] = text
                if !options.jsonl {
                    let path = outputDirectory + "/" + file(i)
                    try writeRenamed(Array(text.utf8), to: path)
                    checker?.submit(index: i, path: path, keep: options.keepInvalid)
                }
            }
            if options.jsonl { try writeJSONL(texts, to: jsonlPath) }   // after every batch: a kill loses at most one batch
            try recordVerdicts()
            progress(done, total, characters)
        }
        try BatchSchedule.run(batches(wanted: wanted), group: group, compute: { batchStart in
            try checker?.checkFailure()
            return try decodeItems(batchStart, wanted: wanted)
        }, pack: packItems, consume: { _, items in try consume(items) }, consumeRemote: { _, bytes in
            let fields = try PackedFields.fields(of: bytes)
            var items: [(index: Int, text: String, characters: Int)] = []
            for n in stride(from: 0, to: fields.count - 2, by: 3) {
                let index = try PackedFields.integer(fields[n])
                guard (0..<options.count).contains(index), wanted[index] else { throw SamplingError("a rank sent item \(index), which the run does not ask for") }
                items.append((index, String(decoding: fields[n + 2], as: UTF8.self), try PackedFields.integer(fields[n + 1])))
            }
            try consume(items)
        })
        checker?.waitForAll()
        try recordVerdicts(final: true)
        plan.report.written = total
        plan.report.seconds = Date().timeIntervalSince(start)
        let summary = checker.map { _ in
            ValidationSummary(checked: verdicts.count, valid: verdicts.values.filter(\.valid).count)
        }
        return (plan.report, characters, summary)
    }

    /// The start of every aligned batch that holds an item to write.
    private func batches(wanted: [Bool]) -> [Int] {
        stride(from: 0, to: options.count, by: options.batchSize).filter { batchStart in
            (batchStart..<min(options.count, batchStart + options.batchSize)).contains { wanted[$0] }
        }
    }

    /// Decodes the aligned batch at `batchStart` and returns the text of each wanted item and how many
    /// characters it generated.
    private func decodeItems(_ batchStart: Int, wanted: [Bool]) throws -> [(index: Int, text: String, characters: Int)] {
        let indices = Array(batchStart..<min(options.count, batchStart + options.batchSize))
        let generated = try decode(seeds: indices.map { ItemSeed.derive(runSeed: options.seed, index: $0) })
        return indices.enumerated().filter { wanted[$0.element] }.map { slot, i in
            (i, itemText(generated[slot]), generated[slot].tokens.count)
        }
    }

    /// A batch's items as a rank sends them to rank 0: index, characters and text of each.
    private func packItems(_ items: [(index: Int, text: String, characters: Int)]) -> [UInt8] {
        var packed = PackedFields()
        for (index, text, characters) in items {
            packed.append(index)
            packed.append(characters)
            packed.append(Array(text.utf8))
        }
        return packed.bytes
    }

    /// samples.jsonl holds the records present so far, in index order: {"index", "seed", "text"}.
    private func writeJSONL(_ texts: [String?], to path: String) throws {
        var out = ""
        for (i, text) in texts.enumerated() {
            guard let text else { continue }
            out += "{\"index\":\(i),\"seed\":\(ItemSeed.derive(runSeed: options.seed, index: i)),\"text\":\(jsonString(text))}\n"
        }
        try writeRenamed(Array(out.utf8), to: path)
    }
}

/// `s` as a JSON string literal.
func jsonString(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
        }
    }
    return out + "\""
}

// MARK: - checking items

/// How many items a checker looked at and how many it accepted.
public struct ValidationSummary: Sendable, Equatable {
    /// Items the checker ran on.
    public var checked: Int
    /// Items it accepted (exit status 0).
    public var valid: Int
    /// A summary of `valid` accepted out of `checked`.
    public init(checked: Int, valid: Int) { (self.checked, self.valid) = (checked, valid) }
    /// valid / checked (0 when nothing was checked).
    public var validRate: Double { checked > 0 ? Double(valid) / Double(checked) : 0 }
}

/// A checker's verdict on one item: exit status 0 or not, and what it wrote to stderr, shortened to one
/// line (`checkerMessage`).
struct ItemVerdict: Equatable {
    var valid: Bool
    var message: String
}

extension DatasetManifest.Row {
    /// Records `verdict` in the row's `valid` / `check_error` (both empty for nil).
    mutating func setVerdict(_ verdict: ItemVerdict?) {
        (valid, checkError) = (verdict?.valid, verdict?.message)
    }
}

/// A checker's stderr as one line: its first non-blank line, trimmed, and when there are more, " … " and
/// the last one. Python's tracebacks open with the place and end with the error
/// (`File "x.py", line 3 … SyntaxError: '(' was never closed`), other checkers open with the error.
func checkerMessage(_ stderr: String) -> String {
    let lines = stderr.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
    guard let first = lines.first else { return "" }
    return lines.count > 1 ? first + " … " + lines.last! : first
}

/// A checker that says nothing about the items: it outlived its time limit, or could not be run.
public enum CheckerError: Error, CustomStringConvertible, Equatable {
    /// `command` was still running on `item` after `seconds` and was killed.
    case timedOut(command: String, seconds: Double, item: String)
    /// The shell could not run `command` (exit 126 or 127: not found, not executable), with its message.
    case cannotRun(command: String, status: Int32, message: String)
    /// No process could be started at all.
    case cannotStart(command: String, reason: String)

    /// One line for the user: what went wrong with the checker and what to do.
    public var description: String {
        switch self {
        case let .timedOut(command, seconds, item):
            return "the checker `\(command)` did not finish within \(seconds) s on \(item) and was killed; raise the time limit or fix the checker"
        case let .cannotRun(command, status, message):
            return "the checker `\(command)` could not be run (exit \(status)\(message.isEmpty ? "" : ": " + message)); check that the command exists and is executable"
        case let .cannotStart(command, reason):
            return "the checker `\(command)` could not be started: \(reason)"
        }
    }
}

/// Runs a checker command on items in the background, at most `parallel` at a time, while the caller
/// goes on generating. A checker that cannot be started (the shell's exit 126/127) or that outlives its
/// time limit makes the whole run fail: its verdicts would say nothing about the items.
final class ItemChecker: @unchecked Sendable {
    let command: String, timeLimit: Double
    private let lock = NSLock()
    private var verdicts: [(Int, ItemVerdict)] = []
    private var failure: CheckerError?
    private let group = DispatchGroup()
    private let slots: DispatchSemaphore
    private let queue = DispatchQueue(label: "forge.item-checker", attributes: .concurrent)

    init(command: String, timeLimit: Double, parallel: Int = max(1, ProcessInfo.processInfo.activeProcessorCount)) {
        (self.command, self.timeLimit) = (command, timeLimit)
        slots = DispatchSemaphore(value: parallel)
    }

    /// Checks the file at `path` in the background; a rejected item is deleted unless `keep`.
    func submit(index: Int, path: String, keep: Bool) {
        group.enter()
        queue.async { [self] in
            slots.wait()
            defer { slots.signal(); group.leave() }
            if lock.withLock({ failure != nil }) { return }
            let quoted = "'" + path.replacingOccurrences(of: "'", with: "'\\''") + "'"
            let result = runShell(command.replacingOccurrences(of: "{}", with: quoted), timeLimit: timeLimit)
            let name = (path as NSString).lastPathComponent
            lock.withLock {
                switch result {
                case .timedOut:
                    failure = failure ?? .timedOut(command: command, seconds: timeLimit, item: name)
                case let .exited(status, message) where status == 126 || status == 127:
                    failure = failure ?? .cannotRun(command: command, status: status, message: message)
                case let .failedToStart(reason):
                    failure = failure ?? .cannotStart(command: command, reason: reason)
                case let .exited(status, message):
                    verdicts.append((index, ItemVerdict(valid: status == 0, message: status == 0 ? "" : message)))
                    if status != 0 && !keep { unlink(path) }
                }
            }
        }
    }

    /// Verdicts that arrived since the last call.
    func takeVerdicts() -> [(Int, ItemVerdict)] {
        lock.withLock { defer { verdicts.removeAll() }; return verdicts }
    }

    /// Throws the first fatal checker problem, if any.
    func checkFailure() throws {
        if let failure = lock.withLock({ failure }) { throw failure }
    }

    func waitForAll() { group.wait() }
}

enum ShellResult {
    /// The exit status and the checker's stderr as one line (`checkerMessage`).
    case exited(status: Int32, message: String)
    case timedOut
    case failedToStart(String)
}

/// Runs `/bin/sh -c command` in its own process group with stdin and stdout on /dev/null and stderr in a
/// temporary file (a pipe could keep a killed checker's grandchildren blocking the reader). Past
/// `timeLimit` seconds the whole group is killed.
func runShell(_ command: String, timeLimit: Double) -> ShellResult {
    let errPath = NSTemporaryDirectory() + "forge-check-\(getpid())-\(UUID().uuidString).stderr"
    defer { unlink(errPath) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 2, errPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
    posix_spawnattr_setpgroup(&attributes, 0)
    let argv: [UnsafeMutablePointer<CChar>?] = ["/bin/sh", "-c", command].map { (s: String) in strdup(s) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    // Python checkers (`python3 -m py_compile {}`) would leave __pycache__ folders in the dataset:
    // their byte code goes to a temporary tree instead, unless the caller chose one.
    var environment = ProcessInfo.processInfo.environment
    if environment["PYTHONPYCACHEPREFIX"] == nil {
        environment["PYTHONPYCACHEPREFIX"] = NSTemporaryDirectory() + "forge-check-pycache-\(getpid())"
    }
    let envp: [UnsafeMutablePointer<CChar>?] = environment.map { (k, v) in strdup(k + "=" + v) } + [nil]
    defer { for p in envp { free(p) } }
    let spawned = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, envp)
    guard spawned == 0 else { return .failedToStart(String(cString: strerror(spawned))) }
    let deadline = Date().addingTimeInterval(timeLimit)
    var status: Int32 = 0
    while true {
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { break }
        if r < 0 && errno != EINTR { return .failedToStart("waitpid: \(String(cString: strerror(errno)))") }
        if Date() > deadline {
            kill(-pid, SIGKILL)
            _ = waitpid(pid, &status, 0)
            return .timedOut
        }
        usleep(2_000)
    }
    let stderrText = (try? FileIO.readBytes(errPath)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    // exit status (WIFEXITED / WEXITSTATUS), or 128 + signal as a shell reports it
    let exitStatus: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return .exited(status: exitStatus, message: checkerMessage(stderrText))
}
