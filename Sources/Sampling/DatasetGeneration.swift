import Foundation
import TensorCore
import DataIO
import Models

// Synthetic datasets: a trained model writes a folder of items plus `manifest.csv`.
//
// Determinism. Item i is drawn from its own generator, seeded with `ItemSeed.derive(run, i)`, so
// an item depends only on (checkpoint, run seed, i, its label) and never on which other items are
// generated with it. Batches are still aligned to multiples of the batch size (items
// [b·B, (b+1)·B)), and `--only` / `--resume` regenerate whole aligned batches and write just the
// items they need: even if a BLAS kernel rounded differently for a different batch width, the
// bits of every item stay the same as in an uninterrupted run.

/// Per-item seeds derived from a run seed.
public enum ItemSeed {
    /// SplitMix64 of `runSeed ^ index·φ` (φ = 2⁶⁴/golden ratio): neighbouring indices get
    /// unrelated seeds, and item `index` can be recreated without drawing items 0..<index.
    public static func derive(runSeed: UInt64, index: Int) -> UInt64 {
        splitMix64(runSeed ^ (UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15))
    }

    /// One SplitMix64 output for state `x`.
    public static func splitMix64(_ x: UInt64) -> UInt64 {
        var z = x &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// A trained model that draws images, one per (seed, label), for dataset generation.
public protocol SyntheticImageSource: AnyObject {
    /// The checkpoint kind ("gan", "vae").
    var modelKind: String { get }
    /// Class names of a conditional model; empty when unconditional.
    var classNames: [String] { get }
    var channels: Int { get }
    var imageSize: Int { get }
    /// How the generated values map to intensities.
    var valueRange: ImageValueRange { get }
    /// `(n, C, S, S)` images; image i must depend only on `seeds[i]` and `labels[i]` (evaluation
    /// mode, no graph), so batching never changes an item.
    func images(seeds: [UInt64], labels: [Int]) -> Tensor
}

extension GANSampler: SyntheticImageSource {
    public var modelKind: String { "gan" }
    public var channels: Int { config.channels }
    public var imageSize: Int { config.imageSize }
    public var valueRange: ImageValueRange { .minusOneToOne }

    /// Each z row comes from the item's own generator; `DCGAN.generate` runs BatchNorm on its
    /// running statistics, so rows do not interact.
    public func images(seeds: [UInt64], labels: [Int]) -> Tensor {
        let nz = config.nz
        let z = Tensor(shape: [seeds.count, nz]) { out in
            for (row, seed) in seeds.enumerated() {
                var g = RandomGenerator(seed: seed)
                g.fillNormal(UnsafeMutableBufferPointer(rebasing: out[(row * nz)..<((row + 1) * nz)]))
            }
        }
        return gan.generate(z, labels: config.isConditional ? labels : [Int](repeating: 0, count: seeds.count))
    }
}

extension VAESampler: SyntheticImageSource {
    public var modelKind: String { "vae" }
    public var channels: Int { config.channels }
    public var imageSize: Int { config.imageSize }
    /// The decoder's mean pixels.
    public var valueRange: ImageValueRange { .zeroToOne }

    /// Each z row ~ N(0, I) from the item's own generator, decoded in evaluation mode (the
    /// sampler puts the VAE in evaluation mode when it loads it).
    public func images(seeds: [UInt64], labels: [Int]) -> Tensor {
        let latent = config.latent
        let z = Tensor(shape: [seeds.count, latent]) { out in
            for (row, seed) in seeds.enumerated() {
                var g = RandomGenerator(seed: seed)
                g.fillNormal(UnsafeMutableBufferPointer(rebasing: out[(row * latent)..<((row + 1) * latent)]))
            }
        }
        return vae.generate(z, labels: config.isConditional ? labels : nil)
    }
}

/// One item of a planned synthetic dataset.
public struct PlannedItem: Sendable, Equatable {
    public let index: Int
    /// Class id (0 for unconditional models).
    public let label: Int
    /// Class name ("" for unconditional models).
    public let className: String
    /// Path relative to the output folder: `<class>/<index>.png` or `<index>.png`.
    public let file: String
    public let seed: UInt64
}

/// Parameters of `forge generate images`.
public struct ImageGenerationOptions: Sendable {
    /// Number of items (for conditional models with `perClass`, this is perClass × classes).
    public var count: Int
    /// Items per class (conditional models only).
    public var perClass: Int?
    /// The run seed every item seed is derived from.
    public var seed: UInt64
    /// Items per forward pass (a generation parameter: recorded in the manifest, see the header).
    public var batchSize: Int
    /// Continue an interrupted run: keep valid items, generate the rest.
    public var resume: Bool
    /// Recreate only this item.
    public var only: Int?

    public init(count: Int, perClass: Int? = nil, seed: UInt64 = 0, batchSize: Int = 100, resume: Bool = false, only: Int? = nil) {
        self.count = count
        self.perClass = perClass
        self.seed = seed
        self.batchSize = batchSize
        self.resume = resume
        self.only = only
    }
}

/// What a generation run did.
public struct GenerationReport: Sendable {
    /// Items generated and written this run.
    public var written = 0
    /// Items that were already present and valid (`--resume`).
    public var kept = 0
    /// Items (paths relative to the output folder) whose file did not have the sha256 the manifest
    /// records for it (`--resume`): swapped in from elsewhere or damaged, regenerated by this run.
    public var replaced: [String] = []
    /// Seconds of the run (generation and writing).
    public var seconds = 0.0
    /// Items written per second (written / seconds).
    public var itemsPerSecond: Double { seconds > 0 ? Double(written) / seconds : 0 }
}

/// Writes a synthetic image dataset from a `SyntheticImageSource`: `DIR/<class>/<index>.png` for
/// conditional models (the layout `ImageFolder` reads), `DIR/<index>.png` otherwise, and
/// `DIR/manifest.csv`. Generation runs batched on the calling thread while a writer queue encodes
/// and writes the previous batch.
public final class ImageDatasetGenerator {
    public let source: any SyntheticImageSource
    public let options: ImageGenerationOptions
    public let outputDirectory: String
    public let checkpointPath: String
    /// SHA-256 of the checkpoint file.
    public let checkpointSHA256: String
    /// Every item of the run, in index order.
    public let items: [PlannedItem]

    public init(source: any SyntheticImageSource, checkpointPath: String, options: ImageGenerationOptions, outputDirectory: String) throws {
        guard options.batchSize > 0 else { throw SamplingError("the batch size must be positive, got \(options.batchSize)") }
        let classes = source.classNames
        var count = options.count
        if let perClass = options.perClass {
            guard !classes.isEmpty else { throw SamplingError("--per-class needs a conditional model; this \(source.modelKind) checkpoint is unconditional") }
            guard perClass > 0 else { throw SamplingError("--per-class must be positive, got \(perClass)") }
            count = perClass * classes.count
        }
        guard count > 0 else { throw SamplingError("the count must be positive, got \(count)") }
        if let only = options.only, !(0..<count).contains(only) {
            throw SamplingError("--only \(only) is outside the run's items 0..<\(count)")
        }
        let folders = classes.map(classFolderName)
        guard Set(folders).count == folders.count else { throw SamplingError("class names collide as folder names: \(folders)") }
        let digits = max(6, String(count - 1).count)
        // Labels cycle through the classes (i mod K): every prefix of the run is balanced, and with
        // --per-class P each class gets exactly P items.
        items = (0..<count).map { i in
            let number = String(repeating: "0", count: max(0, digits - String(i).count)) + String(i)
            let seed = ItemSeed.derive(runSeed: options.seed, index: i)
            if classes.isEmpty { return PlannedItem(index: i, label: 0, className: "", file: number + ".png", seed: seed) }
            let label = i % classes.count
            return PlannedItem(index: i, label: label, className: classes[label], file: folders[label] + "/" + number + ".png", seed: seed)
        }
        var options = options
        options.count = count
        self.source = source
        self.options = options
        self.outputDirectory = outputDirectory
        self.checkpointPath = checkpointPath
        self.checkpointSHA256 = try SHA256.hexDigest(ofFile: checkpointPath)
    }

    /// The generation parameters as recorded in the manifest (everything that decides the bits).
    public var parameters: String {
        "count=\(options.count) per_class=\(options.perClass.map(String.init) ?? "-") seed=\(options.seed) batch=\(options.batchSize) "
            + "format=png size=\(source.imageSize) channels=\(source.channels)"
    }

    /// The manifest of the whole run (independent of which items this invocation writes).
    public var manifest: DatasetManifest {
        DatasetManifest(checkpoint: URL(fileURLWithPath: checkpointPath).lastPathComponent, checkpointSHA256: checkpointSHA256,
                 modelKind: source.modelKind, parameters: parameters,
                 rows: items.map { DatasetManifest.Row(file: $0.file, index: $0.index, label: $0.label, className: $0.className, seed: $0.seed) },
                 recordsItemSHA256: true)
    }

    /// Generates the planned items (all, the missing ones with `resume`, or one with `only`),
    /// writes `manifest.csv` with each item's sha256, and calls `progress(done, total)` after each batch
    /// is handed to the writer. `warn` hears of items a resume found swapped or damaged (regenerated).
    public func run(progress: (Int, Int) -> Void = { _, _ in },
                    warn: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws -> GenerationReport {
        let start = Date()
        var plan = try GenerationPlan.prepare(outputDirectory, manifest: manifest, items: items, resume: options.resume,
                                              only: options.only, isValid: isValidItem, warn: warn)
        let (wanted, total) = (plan.wanted, plan.total)

        let writer = BatchWriter(committer: ItemCommitter(plan: plan))
        // On an error, wait for the batch in flight: nothing is written after `run` has returned.
        defer { writer.waitForQueuedBatches() }
        let batchSize = options.batchSize
        var done = 0
        for batchStart in stride(from: 0, to: items.count, by: batchSize) {
            let batch = Array(items[batchStart..<min(items.count, batchStart + batchSize)])
            let missing = batch.filter { wanted[$0.index] }
            guard !missing.isEmpty else { continue }
            try writer.checkError()
            let images = source.images(seeds: batch.map(\.seed), labels: batch.map(\.label))
            let range = source.valueRange
            var pending: [(path: String, index: Int, image: PixelImage)] = []
            for item in missing {
                pending.append((outputDirectory + "/" + item.file, item.index,
                                try PixelImage(tensor: images[item.index - batchStart], range: range == .zeroToOne ? 0...1 : -1...1)))
            }
            done += missing.count
            try writer.write(pending)
            progress(done, total)
        }
        try writer.finish()
        plan.report.written = total
        plan.report.seconds = Date().timeIntervalSince(start)
        return plan.report
    }

    /// A file is a valid item when it decodes as a PNG of the model's size and channels.
    func isValidItem(_ path: String) -> Bool {
        guard let bytes = try? FileIO.readBytes(path), ImageCodec.sniff(bytes) == .png,
              let image = try? ImageCodec.decodePNG(bytes: bytes, source: path) else { return false }
        return image.width == source.imageSize && image.height == source.imageSize && image.channels == source.channels
    }
}

/// Encodes and writes batches of images on a serial background queue, at most two batches behind
/// the generator (so memory stays bounded and generation overlaps with PNG encoding). Items go in
/// place through an `ItemCommitter`, which records their sha256 in the manifest first.
final class BatchWriter: @unchecked Sendable {
    private let queue = DispatchQueue(label: "forge.generate.writer")
    private let slots = DispatchSemaphore(value: 2)
    private let lock = NSLock()
    private var firstError: Error?
    /// Used on `queue` only.
    private let committer: ItemCommitter

    init(committer: ItemCommitter) { self.committer = committer }

    /// Queues a batch; blocks while two batches are already waiting. Throws an earlier batch's error.
    func write(_ images: [(path: String, index: Int, image: PixelImage)]) throws {
        // Nothing may throw between `wait` and handing the slot to the block that signals it: a
        // semaphore freed below its initial value traps in libdispatch (SIGILL, no message), which
        // is how a full disk used to kill `forge generate images`. An error that arrives while we
        // wait is caught by the block (it skips the batch) and thrown by the next call or `finish`.
        try checkError()
        slots.wait()
        queue.async { [self] in
            defer { slots.signal() }
            guard currentError() == nil else { return }
            do {
                for (path, index, image) in images {
                    let bytes = try ImageCodec.encodePNG(image)
                    let temporary = try writeTemporary(bytes, beside: path)
                    try committer.add(temporary: temporary, path: path, index: index, sha256: SHA256.hexDigest(bytes))
                }
            } catch {
                fail(error)
            }
        }
    }

    private func fail(_ error: Error) {
        committer.discardPending()
        lock.lock(); if firstError == nil { firstError = error }; lock.unlock()
    }

    private func currentError() -> Error? { lock.lock(); defer { lock.unlock() }; return firstError }

    func checkError() throws { if let error = currentError() { throw error } }

    /// Returns when every queued batch has been written (or skipped after an error).
    func waitForQueuedBatches() { queue.sync {} }

    /// Waits for every queued batch, puts the last items in place, flushes the file system once;
    /// rethrows the first write error.
    func finish() throws {
        queue.sync { [self] in
            guard currentError() == nil else { return }
            do { try committer.commit() } catch { fail(error) }
        }
        try checkError()
        sync()
    }
}

/// Writes `bytes` to a temporary file beside `path` and renames it into place, so a killed run never
/// leaves a partial item under its final name (`--resume` removes the temporaries). Unlike
/// `FileIO.writeAtomically` there is no fsync per file: at 10,000 small PNGs the fsyncs made
/// writing 7× slower than generating (139 vs >1,000 images/s measured here); `BatchWriter.finish`
/// syncs once at the end instead.
func writeRenamed(_ bytes: [UInt8], to path: String) throws {
    let temporary = try writeTemporary(bytes, beside: path)
    guard rename(temporary, path) == 0 else {
        let message = String(cString: strerror(errno))
        unlink(temporary)
        throw SamplingError("cannot write \(path): \(message)")
    }
}

/// A new hidden name `.<name>.tmp-<pid>-<random>` beside `path` (the names `--resume` removes).
func temporaryPath(beside path: String) -> String {
    let url = URL(fileURLWithPath: path)
    return url.deletingLastPathComponent().path + "/." + url.lastPathComponent + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
}

/// Writes `bytes` to a new hidden temporary file `.<name>.tmp-<pid>-<random>` beside `path` (no
/// fsync) and returns its path; removes it and throws, naming `path`, when the write fails.
func writeTemporary(_ bytes: [UInt8], beside path: String) throws -> String {
    let temporary = temporaryPath(beside: path)
    let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw SamplingError("cannot create \(temporary): \(String(cString: strerror(errno)))") }
    var written = 0
    var failure: Int32 = 0
    bytes.withUnsafeBytes { raw in
        while written < raw.count {
            let n = write(fd, raw.baseAddress! + written, raw.count - written)
            if n < 0 { if errno == EINTR { continue }; failure = errno; return }
            written += n
        }
    }
    if close(fd) != 0, failure == 0 { failure = errno }
    guard failure == 0 else {
        unlink(temporary)
        throw SamplingError("cannot write \(path): \(String(cString: strerror(failure)))")
    }
    return temporary
}

/// `manifest.csv` of a synthetic dataset: one row per item with its file, class, seed, and the
/// checkpoint (file name and SHA-256), model kind and generation parameters it came from.
public struct DatasetManifest: Equatable, Sendable {
    public struct Row: Equatable, Sendable {
        public var file: String
        public var index: Int
        public var label: Int
        public var className: String
        public var seed: UInt64
        /// SHA-256 (lowercase hex) of the item's file; nil while it is not written (or in a manifest
        /// that does not record item hashes).
        public var sha256: String?
        /// A checker's verdict on the item (`forge generate text --validate`): true when it accepted it; nil
        /// when the item was not checked (yet), or in a manifest without verdicts.
        public var valid: Bool?
        /// What the checker said about a rejected item (see `ItemVerdict.message`); "" for an accepted one.
        public var checkError: String?
        public init(file: String, index: Int, label: Int, className: String, seed: UInt64, sha256: String? = nil,
                    valid: Bool? = nil, checkError: String? = nil) {
            (self.file, self.index, self.label, self.className, self.seed, self.sha256) = (file, index, label, className, seed, sha256)
            (self.valid, self.checkError) = (valid, checkError)
        }
    }

    public var checkpoint: String
    public var checkpointSHA256: String
    public var modelKind: String
    public var parameters: String
    public var rows: [Row]
    /// Whether the manifest has the `sha256` column: the generator records each item's hash before it
    /// puts the item in place, so `--resume` keeps only files with their recorded hash. Manifests
    /// written before item hashes existed (and by generators that do not record them) have no column.
    public var recordsItemSHA256: Bool
    /// Whether the manifest has the `valid` and `check_error` columns (a run with a checker): each
    /// item's verdict, empty while it is not checked. Manifests of runs without a checker have neither.
    public var recordsVerdicts: Bool

    public init(checkpoint: String, checkpointSHA256: String, modelKind: String, parameters: String, rows: [Row],
                recordsItemSHA256: Bool = false, recordsVerdicts: Bool = false) {
        (self.checkpoint, self.checkpointSHA256, self.modelKind, self.parameters, self.rows) = (checkpoint, checkpointSHA256, modelKind, parameters, rows)
        (self.recordsItemSHA256, self.recordsVerdicts) = (recordsItemSHA256, recordsVerdicts)
    }

    /// The columns of a manifest without item hashes.
    public static let header = ["file", "index", "label", "class", "seed", "checkpoint", "checkpoint_sha256", "model_kind", "parameters"]
    /// The columns of a manifest that records item hashes: `header` and `sha256` (empty for an item not written yet).
    public static let headerWithItemSHA256 = header + ["sha256"]
    /// The columns a run with a checker adds after the others: `valid` (true/false, empty while not
    /// checked) and `check_error` (what the checker said about a rejected item).
    public static let verdictColumns = ["valid", "check_error"]

    /// This manifest's columns.
    public var columns: [String] {
        (recordsItemSHA256 ? Self.headerWithItemSHA256 : Self.header) + (recordsVerdicts ? Self.verdictColumns : [])
    }

    /// The CSV text (RFC 4180 quoting where a field needs it).
    public func csv() -> String {
        var out = columns.joined(separator: ",") + "\n"
        // The run's columns are the same on every row: quoted once (the manifest is rewritten while
        // items are written, see ItemCommitter).
        let runFields = "," + [checkpoint, checkpointSHA256, modelKind, parameters].map(csvField).joined(separator: ",")
        for row in rows {
            out += [row.file, String(row.index), String(row.label), row.className, String(row.seed)].map(csvField).joined(separator: ",")
            out += runFields
            if recordsItemSHA256 { out += "," + (row.sha256 ?? "") }
            if recordsVerdicts {
                out += "," + (row.valid.map { $0 ? "true" : "false" } ?? "") + "," + csvField(row.checkError ?? "")
            }
            out += "\n"
        }
        return out
    }

    /// Parses a manifest written by `csv()`.
    public static func read(path: String) throws -> DatasetManifest {
        let text = String(decoding: try FileIO.readBytes(path), as: UTF8.self)
        let records = parseCSV(text)
        // The optional columns come in this order after the base ones: sha256, then valid and check_error.
        let known = [header, headerWithItemSHA256, header + verdictColumns, headerWithItemSHA256 + verdictColumns]
        guard let head = records.first, known.contains(head) else {
            throw SamplingError("\(path) is not a Forge manifest (header \(records.first ?? []))")
        }
        var manifest = DatasetManifest(checkpoint: "", checkpointSHA256: "", modelKind: "", parameters: "", rows: [],
                                recordsItemSHA256: head.starts(with: headerWithItemSHA256),
                                recordsVerdicts: head.suffix(2).elementsEqual(verdictColumns))
        for (n, r) in records.dropFirst().enumerated() {
            guard r.count == head.count, let index = Int(r[1]), let label = Int(r[2]), let seed = UInt64(r[4]) else {
                throw SamplingError("\(path): row \(n + 2) is malformed")
            }
            let sha256 = manifest.recordsItemSHA256 && !r[9].isEmpty ? r[9] : nil
            if let sha256, sha256.count != 64 || !sha256.allSatisfy({ $0.isHexDigit && !$0.isUppercase }) {
                throw SamplingError("\(path): row \(n + 2) has a malformed sha256 \"\(sha256)\" (64 lowercase hex digits expected)")
            }
            var verdict: Bool?, checkError: String?
            if manifest.recordsVerdicts {
                let (v, message) = (r[r.count - 2], r[r.count - 1])
                guard ["", "true", "false"].contains(v) else {
                    throw SamplingError("\(path): row \(n + 2) has a malformed valid \"\(v)\" (true, false or empty expected)")
                }
                if !v.isEmpty { (verdict, checkError) = (v == "true", message) }
            }
            manifest.rows.append(Row(file: r[0], index: index, label: label, className: r[3], seed: seed, sha256: sha256,
                                     valid: verdict, checkError: checkError))
            (manifest.checkpoint, manifest.checkpointSHA256, manifest.modelKind, manifest.parameters) = (r[5], r[6], r[7], r[8])
        }
        return manifest
    }
}

func csvField(_ s: String) -> String {
    guard s.contains(where: { $0 == "," || $0 == "\"" || $0.isNewline }) else { return s }
    return "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\""
}

/// Records of RFC 4180 CSV text (quoted fields may hold commas, quotes and newlines).
func parseCSV(_ text: String) -> [[String]] {
    var records: [[String]] = [], record: [String] = [], field = ""
    var quoted = false, afterQuote = false
    for ch in text {
        if quoted {
            if ch == "\"" { quoted = false; afterQuote = true } else { field.append(ch) }
            continue
        }
        switch ch {
        case "\"": if afterQuote { field.append("\"") }; quoted = true; afterQuote = false
        case ",": record.append(field); field = ""; afterQuote = false
        case "\n", "\r\n":
            record.append(field); records.append(record); record = []; field = ""; afterQuote = false
        default: field.append(ch); afterQuote = false
        }
    }
    if !field.isEmpty || !record.isEmpty { record.append(field); records.append(record) }
    return records
}
