import Foundation
import TensorCore
import DataIO
import Models

// Fine-tuning: a new run that starts from a checkpoint's weights instead of a fresh initialization.
// The task is built as for a new run (with the checkpoint's architecture), then `FineTuning.initialize`
// copies the weights in (and, when asked, the optimizer state), `FineTuning.freeze` keeps chosen
// parameters fixed, and `TrainingOptions.extraMetadata` carries the lineage into every checkpoint
// the run writes. The schedule starts at step 0 of the new run: only weights are inherited.

/// What `FineTuning.freeze` fixed: per pattern, the parameters it matched.
public struct FrozenParameters: Sendable, Equatable {
    /// Each pattern with the dotted names it matched (a tied weight counts once, under its first name).
    public var matches: [(pattern: String, names: [String])]
    /// Number of distinct parameter tensors frozen.
    public var tensorCount: Int
    /// Number of scalar values frozen.
    public var valueCount: Int
    /// Number of scalar values of all parameters.
    public var totalValueCount: Int

    /// Equal when the counts, the patterns and their matched names agree, in order.
    public static func == (a: FrozenParameters, b: FrozenParameters) -> Bool {
        a.tensorCount == b.tensorCount && a.valueCount == b.valueCount && a.totalValueCount == b.totalValueCount
            && a.matches.map(\.pattern) == b.matches.map(\.pattern) && a.matches.map(\.names) == b.matches.map(\.names)
    }
}

/// Starting a run from a checkpoint's weights: listing, copying and freezing parameters by dotted name (see above).
public enum FineTuning {
    /// Every parameter of `modules` by its dotted checkpoint name (`"\(module).\(path)"`, or the path
    /// alone for a module saved at the top level); a tensor shared by two names (a tied weight) once.
    public static func namedParameters(_ modules: [(name: String, module: any Module)]) -> [(String, Tensor)] {
        var seen = Set<ObjectIdentifier>()
        var out: [(String, Tensor)] = []
        for (prefix, module) in modules {
            for (name, tensor) in module.namedParameters() where seen.insert(ObjectIdentifier(tensor)).inserted {
                out.append((prefix.isEmpty ? name : "\(prefix).\(name)", tensor))
            }
        }
        return out
    }

    /// Every parameter under every name it has (a tied weight under each).
    static func allParameterNames(_ modules: [(name: String, module: any Module)]) -> [(String, Tensor)] {
        var out: [(String, Tensor)] = []
        for (prefix, module) in modules {
            for (path, child) in module.namedModules() {
                let p = [prefix, path].filter { !$0.isEmpty }.joined(separator: ".")
                for (n, t) in child.localParameters { out.append((p.isEmpty ? n : p + "." + n, t)) }
            }
        }
        return out
    }

    /// Whether the glob `pattern` (`*`, `?`, `[…]`; `*` crosses dots) matches the dotted `name`, or a
    /// tail of it that starts after a dot: `wte.*` matches `transformer.wte.weight`, `h.0.*` every
    /// tensor of the first block, `generator.*` the whole generator.
    public static func matches(_ pattern: String, _ name: String) -> Bool {
        if fnmatch(pattern, name, 0) == 0 { return true }
        var rest = Substring(name)
        while let dot = rest.firstIndex(of: ".") {
            rest = rest[rest.index(after: dot)...]
            if fnmatch(pattern, String(rest), 0) == 0 { return true }
        }
        return false
    }

    /// Keeps every parameter matched by one of `patterns` fixed: it stops requiring a gradient, so the
    /// backward pass gives it none and the optimizers skip it (no update, no weight decay, no state
    /// advance, as a `requires_grad=False` parameter in PyTorch). A pattern matching nothing is an
    /// error listing some of the names there are.
    @discardableResult
    public static func freeze(_ patterns: [String], in modules: [(name: String, module: any Module)]) throws -> FrozenParameters {
        let named = namedParameters(modules)
        let firstName = Dictionary(named.map { (ObjectIdentifier($0.1), $0.0) }, uniquingKeysWith: { a, _ in a })
        var result = FrozenParameters(matches: [], tensorCount: 0, valueCount: 0, totalValueCount: named.reduce(0) { $0 + $1.1.count })
        var frozen = Set<ObjectIdentifier>()
        for pattern in patterns {
            // every name a tensor has counts (`lm_head.*` freezes the head tied to the embedding); each tensor is listed once
            var seen = Set<ObjectIdentifier>()
            let hits = allParameterNames(modules).filter { matches(pattern, $0.0) }
                .filter { seen.insert(ObjectIdentifier($0.1)).inserted }
                .map { (firstName[ObjectIdentifier($0.1)] ?? $0.0, $0.1) }
            guard !hits.isEmpty else {
                let examples = named.prefix(8).map(\.0).joined(separator: ", ")
                throw TrainingError.invalidConfiguration("the freeze pattern \"\(pattern)\" matches no parameter; the names are dotted, e.g. \(examples)")
            }
            result.matches.append((pattern, hits.map(\.0)))
            for (_, tensor) in hits where frozen.insert(ObjectIdentifier(tensor)).inserted {
                tensor.requiresGrad = false
                tensor.grad = nil
                result.tensorCount += 1
                result.valueCount += tensor.count
            }
        }
        if result.tensorCount == named.count {
            for (_, tensor) in named { tensor.requiresGrad = true }
            throw TrainingError.invalidConfiguration("the freeze patterns \(patterns.map { "\"\($0)\"" }.joined(separator: ", ")) match every parameter: nothing would train")
        }
        return result
    }

    /// Copies `checkpoint`'s weights into `task`'s modules (names and shapes must match: see
    /// `LoadedCheckpoint.restore(modules:)`), and its optimizer state too when `keepOptimizer` is set.
    /// The task's own generators, position and schedule stay those of a new run.
    public static func initialize(_ task: any TrainingTask, from checkpoint: LoadedCheckpoint, keepOptimizer: Bool) throws {
        guard checkpoint.kind == task.kind else {
            throw CheckpointError(path: checkpoint.path, message: "holds a \"\(checkpoint.kind)\" model, not a \"\(task.kind)\" one")
        }
        try checkpoint.restore(modules: task.modules)
        if keepOptimizer {
            guard checkpoint.tensors.keys.contains(where: { $0.hasPrefix("optimizer.") }) else {
                throw CheckpointError(path: checkpoint.path, message: "holds no optimizer state to keep")
            }
            try checkpoint.restore(optimizers: task.optimizers)
        }
    }

    /// The metadata every checkpoint of a run fine-tuned from `parent` carries: its lineage (the
    /// parent's file name, sha256 and step, then the parent's own ancestors) and the frozen patterns.
    public static func metadata(parent: LoadedCheckpoint, frozen patterns: [String]) throws -> [String: String] {
        var meta = try Checkpoint.lineageMetadata(try parent.lineageAsParent())
        if !patterns.isEmpty { meta[Checkpoint.frozenKey] = try Checkpoint.jsonString(patterns) }
        return meta
    }

    /// The names of the tensors whose shape depends on the number of classes: those that differ
    /// between the model built for `classCount` classes and for one more. These are a conditional
    /// model's class embeddings and class-conditioned layers, which `--new-classes` starts afresh.
    public static func classDependentNames(classCount: Int, build: (Int) -> [(name: String, module: any Module)]) -> Set<String> {
        func shapes(_ k: Int) -> [String: [Int]] {
            var out: [String: [Int]] = [:]
            for (prefix, module) in build(k) {
                for (name, t) in module.stateTensors() { out[prefix.isEmpty ? name : "\(prefix).\(name)"] = t.shape }
            }
            return out
        }
        let a = shapes(classCount), b = shapes(classCount + 1)
        return Set(a.keys.filter { a[$0] != b[$0] })
    }

    /// `checkpoint` with the tensors named in `names` (and their optimizer state) replaced by the
    /// task's freshly initialized ones, so `initialize` keeps everything else and starts those afresh.
    public static func replacing(_ names: Set<String>, in checkpoint: LoadedCheckpoint,
                                 with modules: [(name: String, module: any Module)]) -> LoadedCheckpoint {
        var tensors = checkpoint.tensors.filter { !$0.key.hasPrefix("optimizer.") }
        for (prefix, module) in modules {
            for (name, t) in module.stateTensors() {
                let full = prefix.isEmpty ? name : "\(prefix).\(name)"
                if names.contains(full) { tensors[full] = t.detachedCopy() }
            }
        }
        return LoadedCheckpoint(path: checkpoint.path, kind: checkpoint.kind, configJSON: checkpoint.configJSON, state: checkpoint.state,
                                generators: checkpoint.generators, tensors: tensors, metadata: checkpoint.metadata)
    }

    /// The class names of the new data against a conditional checkpoint's: nil when they are the same
    /// list, otherwise the differences in words ("only in the checkpoint: …; only in the data: …",
    /// or the same names in another order).
    public static func classDifferences(checkpoint: [String], data: [String]) -> String? {
        guard checkpoint != data else { return nil }
        let old = Set(checkpoint), new = Set(data)
        let gone = checkpoint.filter { !new.contains($0) }, added = data.filter { !old.contains($0) }
        func list(_ names: [String]) -> String {
            names.prefix(20).joined(separator: ", ") + (names.count > 20 ? " … (\(names.count) in all)" : "")
        }
        var parts: [String] = []
        if !gone.isEmpty { parts.append("only in the checkpoint: " + list(gone)) }
        if !added.isEmpty { parts.append("only in the data: " + list(added)) }
        if parts.isEmpty { parts.append("the same \(data.count) names in another order (checkpoint: \(list(checkpoint)); data: \(list(data)))") }
        return parts.joined(separator: "; ")
    }
}
