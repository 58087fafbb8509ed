import Foundation
import TensorCore
import DataIO

/// Why a checkpoint could not be read or used. The description names the file and the problem.
public struct CheckpointError: Error, CustomStringConvertible, Equatable {
    /// The checkpoint file (or the folder given) that could not be read or used.
    public let path: String
    /// What is wrong with it, in words for the user.
    public let message: String
    /// The error for `path` with `message`.
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    /// "checkpoint PATH: MESSAGE".
    public var description: String { "checkpoint \(path): \(message)" }
}

/// One safetensors file holding everything needed to resume a run or sample from it:
///
/// * tensors `"\(module).\(dotted.path)"` for each module's parameters and buffers
///   (e.g. `generator.main.0.weight`, `discriminator.main.3.running_mean`);
/// * tensors `"optimizer.\(name).state.\(i).exp_avg"` etc. for each optimizer;
/// * I64 tensors `"rng.\(name)"` with the four exact words of each random generator;
/// * metadata `forge.kind` (e.g. "gan"), `forge.config` (the model's JSON configuration),
///   `forge.state` (`TrainingState` as JSON), `forge.format` ("1") and any extra entries
///   such as `forge.classes` (a JSON array of class names).
///
/// Writes are atomic (temporary file, fsync, rename), so a crash or Ctrl-C never leaves a torn file.
public enum Checkpoint {
    /// The `forge.format` value written into every checkpoint's metadata.
    public static let formatVersion = "1"

    /// Writes a checkpoint to `path` atomically, creating its folder.
    public static func save(to path: String, kind: String, configJSON: String, state: TrainingState,
                            modules: [(name: String, module: any Module)],
                            optimizers: [(name: String, optimizer: any Optimizer)] = [],
                            generators: [String: RandomGenerator] = [:],
                            extraMetadata: [String: String] = [:]) throws {
        var items: [SafeTensors.Item] = []
        for (name, module) in modules {
            for (tensorName, tensor) in module.stateTensors() { items.append(.float32(name.isEmpty ? tensorName : "\(name).\(tensorName)", tensor)) }
        }
        for (name, optimizer) in optimizers {
            for (tensorName, tensor) in optimizer.stateTensors(prefix: "optimizer.\(name).") { items.append(.float32(tensorName, tensor)) }
        }
        for name in generators.keys.sorted() {
            // Bit-cast: the words are full 64-bit values, exact only as integers.
            items.append(.int64("rng.\(name)", shape: [4], values: generators[name]!.stateWords.map { Int64(bitPattern: $0) }))
        }
        var metadata = extraMetadata
        metadata["forge.kind"] = kind
        metadata["forge.format"] = formatVersion
        metadata["forge.config"] = configJSON
        metadata["forge.state"] = try jsonString(state)
        let folder = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try SafeTensors.write(items: items, metadata: metadata, to: URL(fileURLWithPath: path))
    }

    /// The file a path names: a checkpoint file as it is, or for a run folder its `best.safetensors`
    /// when it has one (the best evaluation), else its `checkpoint.safetensors` (the latest state).
    public static func file(at path: String) -> String {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else { return path }
        let best = path + "/best.safetensors"
        return FileManager.default.fileExists(atPath: best) ? best : path + "/checkpoint.safetensors"
    }

    /// Reads and checks a checkpoint (a file, or a run folder: see `file(at:)`); `expectedKind` (e.g. "gan") refuses checkpoints of other model families.
    public static func load(_ pathOrFolder: String, expectedKind: String? = nil) throws -> LoadedCheckpoint {
        let path = file(at: pathOrFolder)
        guard FileManager.default.fileExists(atPath: path) else {
            throw CheckpointError(path: path, message: "no such file")
        }
        let file: SafeTensorsFile
        do {
            file = try SafeTensors.read(URL(fileURLWithPath: path))
        } catch {
            throw CheckpointError(path: path, message: "cannot be read (corrupt or not a safetensors file): \(error)")
        }
        guard let kind = file.metadata["forge.kind"] else {
            // Char checkpoints written before the one schema (weights at nanoGPT's names, `trainer.*`
            // and `optim.*` state) are read as what they are.
            if file.metadata["format"] == CharCheckpoint.legacyFormat {
                let legacy = try CharCheckpoint.upgradeLegacy(file, path: path)
                if let expectedKind, expectedKind != legacy.kind {
                    throw CheckpointError(path: path, message: "holds a \"char\" model, not a \"\(expectedKind)\" one")
                }
                return legacy
            }
            throw CheckpointError(path: path, message: "is a safetensors file but not a Forge checkpoint (no forge.kind metadata)")
        }
        if let expectedKind, kind != expectedKind {
            throw CheckpointError(path: path, message: "holds a \"\(kind)\" model, not a \"\(expectedKind)\" one")
        }
        guard let config = file.metadata["forge.config"] else {
            throw CheckpointError(path: path, message: "has no forge.config metadata")
        }
        guard let stateText = file.metadata["forge.state"],
              let state = try? JSONDecoder().decode(TrainingState.self, from: Data(stateText.utf8)) else {
            throw CheckpointError(path: path, message: "has no valid forge.state metadata")
        }
        var generators: [String: RandomGenerator] = [:]
        for name in file.names where name.hasPrefix("rng.") {
            let words = try file.int64Array(name)
            guard words.count == 4, words.contains(where: { $0 != 0 }) else {
                throw CheckpointError(path: path, message: "random generator state \(name) must be 4 words, not all zero")
            }
            generators[String(name.dropFirst(4))] = RandomGenerator(stateWords: words.map { UInt64(bitPattern: $0) })
        }
        return LoadedCheckpoint(path: path, kind: kind, configJSON: config, state: state, generators: generators,
                                tensors: file.tensors, metadata: file.metadata)
    }

    /// Encodes a Codable value as compact JSON with sorted keys (stable across runs).
    public static func jsonString<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

/// A checkpoint read into memory and checked; restore it into modules and optimizers.
public struct LoadedCheckpoint {
    /// The file the checkpoint was read from (a run folder resolved to its file).
    public let path: String
    /// The model kind from `forge.kind` ("gan", "vae", "wavegan", "char", "classifier", …).
    public let kind: String
    /// The model's configuration, the JSON text of `forge.config`; decode it with `config(as:)`.
    public let configJSON: String
    /// The run's position, from `forge.state`.
    public let state: TrainingState
    /// Saved random generators by name.
    public let generators: [String: RandomGenerator]
    /// Every tensor in the file by name (modules, optimizer state).
    public let tensors: [String: Tensor]
    /// Every metadata entry of the file.
    public let metadata: [String: String]

    /// A checkpoint from parts already in memory (upgraded legacy char files, fine-tuning's adapted copies).
    public init(path: String, kind: String, configJSON: String, state: TrainingState, generators: [String: RandomGenerator],
                tensors: [String: Tensor], metadata: [String: String]) {
        (self.path, self.kind, self.configJSON, self.state) = (path, kind, configJSON, state)
        (self.generators, self.tensors, self.metadata) = (generators, tensors, metadata)
    }

    /// Decodes `forge.config` as `T`.
    public func config<T: Decodable>(as type: T.Type) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(configJSON.utf8))
        } catch {
            throw CheckpointError(path: path, message: "forge.config is not a valid \(T.self): \(error)")
        }
    }

    /// Decodes a metadata entry holding a JSON array of strings (e.g. `forge.classes`); [] when absent.
    public func stringArray(_ key: String) throws -> [String] {
        guard let text = metadata[key] else { return [] }
        guard let value = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else {
            throw CheckpointError(path: path, message: "\(key) is not a JSON array of strings")
        }
        return value
    }

    /// The tensors under `"\(prefix)."`, with the prefix removed; for the prefix "" the module
    /// tensors saved at the top level (everything but optimizer state and generator words).
    public func tensors(under prefix: String) -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        if prefix.isEmpty {
            for (name, tensor) in tensors where !name.hasPrefix("optimizer.") && !name.hasPrefix("rng.") { out[name] = tensor }
            return out
        }
        let head = prefix + "."
        for (name, tensor) in tensors where name.hasPrefix(head) { out[String(name.dropFirst(head.count))] = tensor }
        return out
    }

    /// Copies the saved tensors into each module. Every module must find exactly its own names with
    /// the same shapes; otherwise nothing is changed and the error lists every problem.
    public func restore(modules: [(name: String, module: any Module)]) throws {
        var problems: [String] = []
        for (name, module) in modules {
            let saved = tensors(under: name)
            if saved.isEmpty { problems.append("no tensors for module \"\(name)\""); continue }
            // Validate first (loadState is all-or-nothing per module; check all before touching any).
            let own = Dictionary(uniqueKeysWithValues: module.stateTensors().map { ($0.0, $0.1.shape) })
            for key in own.keys.sorted() where saved[key] == nil { problems.append("missing \(name).\(key)") }
            for key in saved.keys.sorted() where own[key] == nil { problems.append("unexpected \(name).\(key)") }
            for (key, shape) in own.sorted(by: { $0.key < $1.key }) {
                if let t = saved[key], t.shape != shape {
                    problems.append("\(name).\(key) has shape \(t.shape) in the file, the model needs \(shape)")
                }
            }
        }
        guard problems.isEmpty else {
            throw CheckpointError(path: path, message: "does not match the model:\n  " + problems.joined(separator: "\n  "))
        }
        for (name, module) in modules { try module.loadState(tensors(under: name)) }
    }

    /// Restores each optimizer's state (saved as `optimizer.<name>.state.…`).
    public func restore(optimizers: [(name: String, optimizer: any Optimizer)]) throws {
        for (name, optimizer) in optimizers {
            let prefix = "optimizer.\(name)."
            let saved = tensors.filter { $0.key.hasPrefix(prefix) }
            do {
                try optimizer.loadState(saved, prefix: prefix)
            } catch {
                throw CheckpointError(path: path, message: "optimizer \"\(name)\": \(error)")
            }
        }
    }
}

/// Exact position of a run; stored as JSON in `forge.state`.
public struct TrainingState: Codable, Equatable, Sendable {
    /// Optimisation steps done in total.
    public var step: Int = 0
    /// The current epoch (0-based); equals the number of completed epochs when `stepInEpoch` is 0.
    public var epoch: Int = 0
    /// Steps done inside `epoch`.
    public var stepInEpoch: Int = 0
    /// Training wall time in seconds, summed over all invocations.
    public var wallSeconds: Double = 0
    /// The best value of the task's best metric so far and the step it was reached at (nil: none yet).
    public var bestValue: Double? = nil
    /// The step `bestValue` was reached at (nil: none yet).
    public var bestStep: Int? = nil
    /// The step of the last evaluation (nil: none yet), so a resumed run does not evaluate twice.
    public var evaluatedStep: Int? = nil

    /// A position of `step` steps in all, `stepInEpoch` of them inside epoch `epoch`, after `wallSeconds` of
    /// training; no best value or evaluation yet.
    public init(step: Int = 0, epoch: Int = 0, stepInEpoch: Int = 0, wallSeconds: Double = 0) {
        self.step = step
        self.epoch = epoch
        self.stepInEpoch = stepInEpoch
        self.wallSeconds = wallSeconds
    }
}

// MARK: - lineage

/// Where a fine-tuned checkpoint's starting weights came from: the parent file's name, its sha256
/// and the step it had reached. Stored as JSON in `forge.parent` (the nearest parent) and
/// `forge.lineage` (every ancestor, nearest first, as each fine-tuning recorded them).
public struct CheckpointParent: Codable, Equatable, Sendable {
    /// The parent's file name (its last path component, e.g. "best.safetensors").
    public var file: String
    /// Hex sha256 of the parent file's bytes.
    public var sha256: String
    /// The parent's `TrainingState.step`.
    public var step: Int

    /// A parent record of the file named `file` with hex digest `sha256`, at training step `step`.
    public init(file: String, sha256: String, step: Int) {
        (self.file, self.sha256, self.step) = (file, sha256, step)
    }
}

extension Checkpoint {
    /// Metadata key of the nearest parent (`CheckpointParent` as JSON).
    public static let parentKey = "forge.parent"
    /// Metadata key of every ancestor, nearest first (a JSON array of `CheckpointParent`).
    public static let lineageKey = "forge.lineage"
    /// Metadata key of the `--freeze` patterns a fine-tuned run keeps fixed (a JSON array of strings).
    public static let frozenKey = "forge.frozen"

    /// The metadata that records `lineage` (nearest first) in a checkpoint; empty for no lineage.
    public static func lineageMetadata(_ lineage: [CheckpointParent]) throws -> [String: String] {
        guard let parent = lineage.first else { return [:] }
        return [parentKey: try jsonString(parent), lineageKey: try jsonString(lineage)]
    }
}

extension LoadedCheckpoint {
    /// The ancestors this file records, nearest first ([] for a checkpoint trained from scratch).
    public func lineage() throws -> [CheckpointParent] {
        if let text = metadata[Checkpoint.lineageKey] {
            guard let value = try? JSONDecoder().decode([CheckpointParent].self, from: Data(text.utf8)) else {
                throw CheckpointError(path: path, message: "\(Checkpoint.lineageKey) is not a JSON array of {file, sha256, step}")
            }
            return value
        }
        guard let text = metadata[Checkpoint.parentKey] else { return [] }
        guard let parent = try? JSONDecoder().decode(CheckpointParent.self, from: Data(text.utf8)) else {
            throw CheckpointError(path: path, message: "\(Checkpoint.parentKey) is not a JSON object {file, sha256, step}")
        }
        return [parent]
    }

    /// This checkpoint as the parent of a run fine-tuned from it, followed by its own ancestors.
    public func lineageAsParent() throws -> [CheckpointParent] {
        let me = CheckpointParent(file: URL(fileURLWithPath: path).lastPathComponent,
                                  sha256: try SHA256.hexDigest(ofFile: path), step: state.step)
        return [me] + (try lineage())
    }
}
