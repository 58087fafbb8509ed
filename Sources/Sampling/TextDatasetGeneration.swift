import Foundation
import TensorCore
import DataIO
import Models
import Training

// Synthetic text datasets from a char-transformer checkpoint: N files `DIR/<index><ext>` (or N
// records in `DIR/samples.jsonl`) plus `DIR/manifest.csv`. The same determinism rules as images:
// sequence i draws every token from its own generator seeded with `ItemSeed.derive(run, i)`, so its
// text does not depend on the other items; sequences are decoded side by side (one batched forward
// per step, `CharSampler`) in batches aligned to multiples of the batch size, and `--only` /
// `--resume` regenerate whole batches (so even float rounding matches the original run).

/// Parameters of `forge generate text`.
public struct TextGenerationOptions: Sendable {
    public var count: Int
    /// Characters generated per item (before `splitOn` cuts it).
    public var length: Int
    /// Text every item starts from (included in the item).
    public var prompt: String
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
    public var sampling: TextSamplingOptions
    public var resume: Bool
    public var only: Int?

    public init(count: Int, length: Int, prompt: String = "\n", seed: UInt64 = 0, batchSize: Int = 16,
                fileExtension: String = ".txt", splitOn: String? = nil, jsonl: Bool = false,
                sampling: TextSamplingOptions = TextSamplingOptions(), resume: Bool = false, only: Int? = nil) {
        (self.count, self.length, self.prompt, self.seed, self.batchSize) = (count, length, prompt, seed, batchSize)
        (self.fileExtension, self.splitOn, self.jsonl, self.sampling, self.resume, self.only) = (fileExtension, splitOn, jsonl, sampling, resume, only)
    }
}

/// Writes a synthetic text dataset from a char-transformer checkpoint.
public final class TextDatasetGenerator {
    public let checkpoint: CharCheckpoint
    public let checkpointPath: String
    public let checkpointSHA256: String
    public let options: TextGenerationOptions
    public let outputDirectory: String
    /// Prompt tokens.
    public let prompt: [Int32]
    /// The sampler every batch goes through (the same code as `forge sample char`).
    public let sampler: CharSampler

    public static let jsonlName = "samples.jsonl"

    public init(checkpointPath: String, options: TextGenerationOptions, outputDirectory: String) throws {
        guard options.count > 0, options.length > 0, options.batchSize > 0 else {
            throw SamplingError("count, length and batch size must be positive")
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

    public var parameters: String {
        let s = options.sampling
        return "count=\(options.count) length=\(options.length) seed=\(options.seed) batch=\(options.batchSize) "
            + "temperature=\(s.temperature) top_k=\(s.topK.map(String.init) ?? "-") top_p=\(s.topP.map { "\($0)" } ?? "-") "
            + "min_p=\(s.minP.map { "\($0)" } ?? "-") repetition_penalty=\(s.repetitionPenalty) frequency_penalty=\(s.frequencyPenalty) "
            + "presence_penalty=\(s.presencePenalty) penalty_window=\(s.penaltyWindow.map(String.init) ?? "block") "
            + "stop=[\(s.stop.map(jsonString).joined(separator: ","))] context=\(s.reuseContext ? "reuse" : "exact") "
            + "prompt=\(jsonString(options.prompt)) split_on=\(options.splitOn.map(jsonString) ?? "-") "
            + (options.jsonl ? "format=jsonl" : "ext=\(options.fileExtension)")
    }

    public var manifest: Manifest {
        Manifest(checkpoint: URL(fileURLWithPath: checkpointPath).lastPathComponent, checkpointSHA256: checkpointSHA256,
                 modelKind: "char", parameters: parameters,
                 rows: (0..<options.count).map { Manifest.Row(file: file($0), index: $0, label: 0, className: "",
                                                              seed: ItemSeed.derive(runSeed: options.seed, index: $0)) })
    }

    /// Decodes `seeds.count` sequences side by side, each drawing from its own generator; returns the
    /// new tokens of each (`CharSampler`, exact unless the options ask for `reuseContext`).
    public func decode(seeds: [UInt64]) throws -> [[Int32]] {
        var sources = seeds.map { RandomGenerator(seed: $0) }
        return try sampler.generate(prompt: prompt, length: options.length, options: options.sampling, sources: &sources)
    }

    /// The text of an item from its generated tokens: prompt + continuation, cut at `splitOn`.
    public func itemText(_ tokens: [Int32]) -> String {
        var text = checkpoint.decode(tokens)
        if let separator = options.splitOn, !separator.isEmpty, let range = text.range(of: separator) {
            text = String(text[..<range.lowerBound])
        }
        return options.prompt + text
    }

    /// Generates the items (all, the missing ones with `resume`, or one with `only`) and writes
    /// `manifest.csv`; `progress(done, total, characters)` after each batch.
    public func run(progress: (Int, Int, Int) -> Void = { _, _, _ in }) throws -> (report: GenerationReport, characters: Int) {
        let start = Date()
        let manager = FileManager.default
        try manager.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
        let manifestPath = outputDirectory + "/manifest.csv"
        let expected = manifest
        if manager.fileExists(atPath: manifestPath) {
            let existing = try Manifest.read(path: manifestPath)
            if existing.checkpointSHA256 != expected.checkpointSHA256 || existing.parameters != expected.parameters {
                throw SamplingError("\(outputDirectory) holds a run of another checkpoint or other parameters (\(existing.parameters)); give the same arguments, or a new --out")
            }
        } else if !options.resume, options.only == nil, let entries = try? manager.contentsOfDirectory(atPath: outputDirectory), !entries.isEmpty {
            throw SamplingError("\(outputDirectory) is not empty and has no manifest.csv; choose an empty or new folder")
        }
        try FileIO.writeAtomically(Array(expected.csv().utf8), to: manifestPath)
        if options.resume {
            for name in (try? manager.contentsOfDirectory(atPath: outputDirectory)) ?? [] where name.hasPrefix(".") && name.contains(".tmp-") {
                try? manager.removeItem(atPath: outputDirectory + "/" + name)
            }
        }

        // Existing items: files, or the records of samples.jsonl by index.
        var texts = [String?](repeating: nil, count: options.count)
        let jsonlPath = outputDirectory + "/" + Self.jsonlName
        if options.jsonl, options.resume || options.only != nil, let bytes = try? FileIO.readBytes(jsonlPath) {
            for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
                if let record = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                   let index = record["index"] as? Int, (0..<options.count).contains(index), let text = record["text"] as? String {
                    texts[index] = text
                }
            }
        }
        var wanted = [Bool](repeating: true, count: options.count)
        var report = GenerationReport()
        if let only = options.only {
            wanted = (0..<options.count).map { $0 == only }
        } else if options.resume {
            for i in 0..<options.count {
                // A file item is valid when it is there as UTF-8 (the rename-into-place write never
                // leaves a partial file under the item's name).
                let present = options.jsonl ? texts[i] != nil
                    : (try? FileIO.readBytes(outputDirectory + "/" + file(i))).map { String(validating: $0, as: UTF8.self) != nil } ?? false
                if present { wanted[i] = false; report.kept += 1 }
            }
        }
        let total = wanted.filter { $0 }.count
        var done = 0, characters = 0
        for batchStart in stride(from: 0, to: options.count, by: options.batchSize) {
            let indices = Array(batchStart..<min(options.count, batchStart + options.batchSize))
            guard indices.contains(where: { wanted[$0] }) else { continue }
            let generated = try decode(seeds: indices.map { ItemSeed.derive(runSeed: options.seed, index: $0) })
            for (slot, i) in indices.enumerated() where wanted[i] {
                let text = itemText(generated[slot])
                characters += generated[slot].count
                done += 1
                texts[i] = text
                if !options.jsonl { try writeRenamed(Array(text.utf8), to: outputDirectory + "/" + file(i)) }
            }
            if options.jsonl { try writeJSONL(texts, to: jsonlPath) }   // after every batch: a kill loses at most one batch
            progress(done, total, characters)
        }
        report.written = total
        report.seconds = Date().timeIntervalSince(start)
        return (report, characters)
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
