import Foundation
import DataIO

/// The start of a synthetic-dataset run, shared by the image and sound generators: its output folder
/// checked and prepared, and which items it still has to write.
struct GenerationPlan {
    /// `wanted[i]`: item i is written by this invocation.
    var wanted: [Bool]
    /// `kept` filled in (valid items a resumed run leaves alone).
    var report = GenerationReport()
    var total: Int { wanted.filter { $0 }.count }

    /// Refuses a folder that holds another run (a manifest of another checkpoint or other parameters)
    /// or, unless resuming or writing one item, any files without a manifest. Creates the items'
    /// subfolders and writes the manifest first: it is a function of the arguments, so a killed run
    /// leaves the manifest that `resume` checks its arguments against. On resume, removes a killed
    /// run's temporary files and skips every item whose file `isValid`.
    static func prepare(_ directory: String, manifest expected: Manifest, items: [PlannedItem], resume: Bool, only: Int?,
                        isValid: (String) -> Bool) throws -> GenerationPlan {
        let manager = FileManager.default
        try manager.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let manifestPath = directory + "/manifest.csv"
        if manager.fileExists(atPath: manifestPath) {
            let existing = try Manifest.read(path: manifestPath)
            if existing.checkpointSHA256 != expected.checkpointSHA256 || existing.parameters != expected.parameters || existing.modelKind != expected.modelKind {
                // Mixing two runs in one folder would leave items the manifest does not describe.
                throw SamplingError("\(directory) holds a run of another checkpoint or other parameters (\(existing.modelKind), \(existing.parameters), checkpoint \(existing.checkpointSHA256.prefix(12))…); give the same arguments, or a new --out")
            }
        } else if !resume, only == nil, let entries = try? manager.contentsOfDirectory(atPath: directory), !entries.isEmpty {
            throw SamplingError("\(directory) is not empty and has no manifest.csv; choose an empty or new folder")
        }
        let subfolders = Set(items.map { ($0.file as NSString).deletingLastPathComponent }).filter { !$0.isEmpty }.sorted()
        for folder in subfolders {
            try manager.createDirectory(atPath: directory + "/" + folder, withIntermediateDirectories: true)
        }
        try FileIO.writeAtomically(Array(expected.csv().utf8), to: manifestPath)

        var plan = GenerationPlan(wanted: items.map { only == nil || $0.index == only })
        guard resume else { return plan }
        // Atomic writes leave `.<name>.tmp-…` files behind when killed; removing them makes the
        // folder end up equal to an uninterrupted run's.
        for path in [directory] + subfolders.map({ directory + "/" + $0 }) {
            for name in (try? manager.contentsOfDirectory(atPath: path)) ?? [] where name.hasPrefix(".") && name.contains(".tmp-") {
                try? manager.removeItem(atPath: path + "/" + name)
            }
        }
        if only == nil {
            for item in items where isValid(directory + "/" + item.file) {
                plan.wanted[item.index] = false
                plan.report.kept += 1
            }
        }
        return plan
    }
}
