import Foundation
import DataIO

/// The start of a synthetic-dataset run, shared by the image and sound generators: its output folder
/// checked and prepared, and which items it still has to write.
struct GenerationPlan {
    /// `wanted[i]`: item i is written by this invocation.
    var wanted: [Bool]
    /// `kept` and `replaced` filled in (valid items a resumed run leaves alone, swapped ones it rewrites).
    var report = GenerationReport()
    /// The manifest as written at the start: the expected one, with the sha256 of every item this
    /// invocation leaves in place (when the manifest records item hashes).
    var manifest: DatasetManifest
    /// `<directory>/manifest.csv`.
    var manifestPath: String
    var total: Int { wanted.filter { $0 }.count }

    /// Refuses a folder that holds another run (a manifest of another checkpoint or other parameters)
    /// or, unless resuming or writing one item, any files without a manifest. Creates the items'
    /// subfolders and writes the manifest first: it is a function of the arguments, so a killed run
    /// leaves the manifest that `resume` checks its arguments against. On resume, removes a killed
    /// run's temporary files and skips every item already in place.
    ///
    /// An item is in place when, for a manifest that records item hashes (`recordsItemSHA256`, written
    /// by `ItemCommitter` before the item is renamed into place), its file has the recorded sha256;
    /// a file with another hash was swapped in or damaged: it is regenerated, listed in
    /// `report.replaced` and named through `warn`. For a manifest without hashes (written before they
    /// were recorded, or by a generator that does not record them) an item is in place when its file
    /// `isValid`, and its hash is recorded now.
    static func prepare(_ directory: String, manifest expected: DatasetManifest, items: [PlannedItem], resume: Bool, only: Int?,
                        isValid: (String) -> Bool,
                        warn: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws -> GenerationPlan {
        let manager = FileManager.default
        try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let manifestPath = directory + "/manifest.csv"
        var existing: DatasetManifest?
        if manager.fileExists(atPath: manifestPath) {
            let found = try DatasetManifest.read(path: manifestPath)
            if found.checkpointSHA256 != expected.checkpointSHA256 || found.parameters != expected.parameters || found.modelKind != expected.modelKind {
                // Mixing two runs in one folder would leave items the manifest does not describe.
                throw SamplingError("\(directory) holds a run of another checkpoint or other parameters (\(found.modelKind), \(found.parameters), checkpoint \(found.checkpointSHA256.prefix(12))…); give the same arguments, or a new output folder")
            }
            existing = found
        } else if !resume, only == nil, let entries = try? manager.contentsOfDirectory(atPath: directory), !entries.isEmpty {
            throw SamplingError("\(directory) is not empty and has no manifest.csv; choose an empty or new folder")
        }
        let subfolders = Set(items.map { ($0.file as NSString).deletingLastPathComponent }).filter { !$0.isEmpty }.sorted()
        for folder in subfolders {
            try manager.createDirectory(atPath: directory + "/" + folder, withIntermediateDirectories: true)
        }

        var plan = GenerationPlan(wanted: items.map { only == nil || $0.index == only }, manifest: expected, manifestPath: manifestPath)
        if resume {
            // Atomic writes leave `.<name>.tmp-…` files behind when killed; removing them makes the
            // folder end up equal to an uninterrupted run's.
            for path in [directory] + subfolders.map({ directory + "/" + $0 }) {
                for name in (try? manager.contentsOfDirectory(atPath: path)) ?? [] where name.hasPrefix(".") && name.contains(".tmp-") {
                    try? manager.removeItem(atPath: path + "/" + name)
                }
            }
        }
        if resume || only != nil {
            let recorded = existing.flatMap { $0.recordsItemSHA256 ? $0 : nil }.map { manifest in
                Dictionary(manifest.rows.compactMap { row in row.sha256.map { ("\(row.index) \(row.file)", $0) } }, uniquingKeysWith: { a, _ in a })
            }
            for (position, item) in items.enumerated() where only == nil || item.index != only {
                let path = directory + "/" + item.file
                let digest: String?
                if let recorded {
                    // Hashes were recorded before each item was put in place: only a matching file is ours.
                    guard let expectedDigest = recorded["\(item.index) \(item.file)"] else { continue }
                    if only != nil { digest = expectedDigest }   // --only leaves the other items as they are
                    else {
                        guard manager.fileExists(atPath: path) else { continue }
                        guard (try? SHA256.hexDigest(ofFile: path)) == expectedDigest else { plan.report.replaced.append(item.file); continue }
                        digest = expectedDigest
                    }
                } else {
                    guard isValid(path) else { continue }
                    digest = expected.recordsItemSHA256 ? try? SHA256.hexDigest(ofFile: path) : nil
                }
                if expected.recordsItemSHA256 { plan.manifest.rows[position].sha256 = digest }
                if only == nil { plan.wanted[item.index] = false; plan.report.kept += 1 }
            }
        }
        if !plan.report.replaced.isEmpty {
            let listed = plan.report.replaced.prefix(10).map { directory + "/" + $0 }.joined(separator: ", ")
            let more = plan.report.replaced.count > 10 ? " and \(plan.report.replaced.count - 10) more" : ""
            warn("warning: \(plan.report.replaced.count) item(s) do not match the sha256 \(manifestPath) records for them (swapped in from elsewhere or damaged); regenerating them: \(listed)\(more)")
        }
        try FileIO.writeAtomically(Array(plan.manifest.csv().utf8), to: manifestPath)
        return plan
    }
}

/// Puts written items in place only after the manifest records their sha256, so every file under an
/// item's name has its hash in `manifest.csv` and `--resume` can tell it from a file swapped in. The
/// generator writes each item to a temporary file beside it and `add`s it; every `interval` seconds
/// (and at `commit`) the manifest is rewritten with the new hashes, then the temporaries are renamed
/// into place. A run killed in between leaves temporaries, which `--resume` removes. Rewriting the
/// manifest once per batch instead would cost O(items²) bytes written; the interval also stretches to
/// 10× the time the last rewrite took, so a manifest of many thousand rows costs at most ~10% of the run.
/// Not thread-safe: use it from one thread or serial queue.
final class ItemCommitter {
    private var manifest: DatasetManifest
    private let manifestPath: String
    private let interval: TimeInterval
    private var pending: [(temporary: String, path: String)] = []
    private var lastCommit = Date()
    /// Seconds the last manifest rewrite took.
    private var lastCommitCost: TimeInterval = 0

    init(plan: GenerationPlan, interval: TimeInterval = 1) {
        (manifest, manifestPath, self.interval) = (plan.manifest, plan.manifestPath, interval)
    }

    /// Records that `temporary` holds item `index` (row `index` of the manifest) with `sha256`, to be
    /// renamed to `path`; commits when the last commit is `interval` old.
    func add(temporary: String, path: String, index: Int, sha256: String) throws {
        manifest.rows[index].sha256 = sha256
        pending.append((temporary, path))
        if Date().timeIntervalSince(lastCommit) >= max(interval, 10 * lastCommitCost) { try commit() }
    }

    /// Writes the manifest with every recorded hash, then renames the pending items into place.
    func commit() throws {
        guard !pending.isEmpty else { return }
        let start = Date()
        do {
            try FileIO.writeAtomically(Array(manifest.csv().utf8), to: manifestPath)
            lastCommitCost = Date().timeIntervalSince(start)
        } catch {
            discardPending()
            throw error
        }
        for (n, item) in pending.enumerated() where rename(item.temporary, item.path) != 0 {
            let message = String(cString: strerror(errno))
            pending.removeFirst(n)
            discardPending()
            throw SamplingError("cannot write \(item.path): \(message)")
        }
        pending = []
        lastCommit = Date()
    }

    /// Removes the temporaries not yet renamed (after a failure; `--resume` would remove them too).
    func discardPending() {
        for item in pending { unlink(item.temporary) }
        pending = []
    }
}
