import Foundation
import TensorCore
import DataIO

/// What a checkpoint holds, read from the file alone (no model is built): its kind, configuration,
/// classes or vocabulary, position, lineage and parameter counts. `forge info` prints it.
public struct CheckpointSummary {
    /// The checkpoint as read (kind, configuration JSON, state, tensors, metadata).
    public let checkpoint: LoadedCheckpoint
    /// `forge.classes` ([] when the model is not conditional).
    public let classes: [String]
    /// A char model's vocabulary in token order (nil for other kinds).
    public let vocabulary: [Unicode.Scalar]?
    /// The ancestors the file records, nearest first.
    public let lineage: [CheckpointParent]
    /// The `--freeze` patterns a fine-tuned run kept fixed.
    public let frozenPatterns: [String]
    /// Parameter values per module (the first part of the dotted names, or the first two when all
    /// weights sit under one name, as a char model's `transformer.*`), in name order.
    public let modules: [(name: String, count: Int)]
    /// Parameter values in all (tied weights counted once; buffers such as BatchNorm's running
    /// statistics, spectral-norm vectors and counters left out).
    public let parameterCount: Int
    /// Names whose tensor is another name's (the char model's `lm_head.weight` is `transformer.wte.weight`).
    public let tiedNames: [String: String]

    /// Buffer names (not learned), by their last components.
    static let bufferSuffixes = ["running_mean", "running_var", "num_batches_tracked", "_u", "_v", "num_updates"]

    /// Summarises `checkpoint`; throws when its `forge.classes`, lineage or frozen-pattern metadata is
    /// malformed.
    public init(_ checkpoint: LoadedCheckpoint) throws {
        self.checkpoint = checkpoint
        classes = try checkpoint.stringArray("forge.classes")
        vocabulary = checkpoint.kind == CharCheckpoint.kind
            ? Array((checkpoint.metadata[CharCheckpoint.vocabularyKey] ?? "").unicodeScalars) : nil
        lineage = try checkpoint.lineage()
        frozenPatterns = try checkpoint.stringArray(Checkpoint.frozenKey)
        var tied: [String: String] = [:]
        if let head = checkpoint.tensors["lm_head.weight"], let wte = checkpoint.tensors["transformer.wte.weight"],
           head.shape == wte.shape, head.scalars == wte.scalars {
            tied["lm_head.weight"] = "transformer.wte.weight"
        }
        tiedNames = tied
        let weights = checkpoint.tensors(under: "").filter { name, _ in
            tied[name] == nil && !CheckpointSummary.bufferSuffixes.contains(where: { name == $0 || name.hasSuffix("." + $0) })
        }
        parameterCount = weights.values.reduce(0) { $0 + $1.count }
        func grouped(depth: Int, _ names: [String]) -> [String: Int] {
            var out: [String: Int] = [:]
            for name in names {
                let key = name.split(separator: ".").prefix(depth).joined(separator: ".")
                out[key, default: 0] += weights[name]!.count
            }
            return out
        }
        var groups = grouped(depth: 1, Array(weights.keys))
        if groups.count == 1, let only = groups.keys.first {
            groups = grouped(depth: 2, weights.keys.filter { $0.hasPrefix(only + ".") || $0 == only })
        }
        modules = groups.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }
}
