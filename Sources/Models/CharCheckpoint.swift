import Foundation
import TensorCore
import DataIO

// The char transformer's checkpoint format, beside the model. A char checkpoint is a Forge
// checkpoint (`Checkpoint`: `forge.kind` "char", `forge.config`, `forge.state`, `optimizer.*`, `rng.*`)
// whose weights sit at the top level under nanoGPT's names (`transformer.h.0.attn.c_attn.weight`, …),
// so `safetensors.torch.load_file` + nanoGPT's `GPT.load_state_dict` read it as they are. The
// metadata also holds the vocabulary (`vocab`, one string in token order) and nanoGPT's `model_args`
// (`n_layer`, `n_head`, …). Two older layouts load too: Forge's char checkpoints written before the
// one schema (`format` = "forge-char-transformer", `trainer.*` and `optim.*` state) and nanoGPT
// state dicts exported to safetensors.

/// A char model with its vocabulary, as read from a checkpoint.
public struct CharCheckpoint {
    /// The transformer with the checkpoint's weights loaded.
    public let model: CharTransformer
    /// Characters in token order.
    public let vocabulary: [Unicode.Scalar]
    /// All metadata in the file.
    public let metadata: [String: String]

    /// Metadata key holding the vocabulary as one string in token order.
    public static let vocabularyKey = "vocab"
    /// The `format` metadata of Forge char checkpoints written before the one checkpoint schema.
    public static let legacyFormat = "forge-char-transformer"
    /// The checkpoint kind.
    public static let kind = "char"

    /// Loads a Forge char checkpoint (either layout; a run folder gives its best.safetensors), or a nanoGPT state dict exported to safetensors
    /// (pass `heads` when its metadata has no `n_head`; without a `vocab` entry the vocabulary is empty).
    public static func load(path pathOrFolder: String, heads: Int? = nil) throws -> CharCheckpoint {
        let path = Checkpoint.file(at: pathOrFolder)
        let file: SafeTensorsFile
        do {
            file = try SafeTensors.read(URL(fileURLWithPath: path))
        } catch {
            throw CheckpointError(path: path, message: "cannot be read (corrupt or not a safetensors file): \(error)")
        }
        if let kind = file.metadata["forge.kind"], kind != CharCheckpoint.kind {
            throw CheckpointError(path: path, message: "holds a \"\(kind)\" model, not a \"char\" one")
        }
        let config: CharTransformerConfig
        do {
            if let json = file.metadata["forge.config"], file.metadata["forge.kind"] == CharCheckpoint.kind {
                config = try JSONDecoder().decode(CharTransformerConfig.self, from: Data(json.utf8))
                if let p = config.problem { throw CharTransformerError("checkpoint config: " + p) }
            } else {
                config = try CharTransformerConfig(metadata: file.metadata, tensorShapes: file.entries.mapValues(\.shape), heads: heads)
            }
        } catch let error as CharTransformerError {
            throw CheckpointError(path: path, message: error.description)
        } catch {
            throw CheckpointError(path: path, message: "forge.config is not a char-transformer configuration: \(error)")
        }
        let model = CharTransformer(config, seed: 0)
        do {
            try model.load(file.tensors, ignoringPrefixes: ["optim.", "trainer.", "optimizer.", "rng."])
        } catch let error as CharTransformerError {
            throw CheckpointError(path: path, message: error.description)
        }
        model.eval()
        let vocabulary = Array((file.metadata[vocabularyKey] ?? "").unicodeScalars)
        if !vocabulary.isEmpty && vocabulary.count != config.vocabSize {
            throw CheckpointError(path: path, message: "a vocabulary of \(vocabulary.count) characters for a model with vocab_size \(config.vocabSize)")
        }
        return CharCheckpoint(model: model, vocabulary: vocabulary, metadata: file.metadata)
    }

    /// The same model with `vocabulary` (token order), e.g. for a nanoGPT export that has none: nanoGPT's
    /// prepare.py makes it the sorted characters of the training text (`TextCorpus(path:).vocabulary`).
    public func replacingVocabulary(_ vocabulary: [Unicode.Scalar]) throws -> CharCheckpoint {
        guard vocabulary.count == model.config.vocabSize else {
            throw CharTransformerError("a vocabulary of \(vocabulary.count) characters does not fit a model with vocab_size \(model.config.vocabSize)")
        }
        return CharCheckpoint(model: model, vocabulary: vocabulary, metadata: metadata)
    }

    /// The metadata every char checkpoint carries besides `forge.*`: the vocabulary and nanoGPT's
    /// `model_args` names, so other tools can rebuild the model from the file alone.
    public static func metadata(config: CharTransformerConfig, vocabulary: [Unicode.Scalar]) -> [String: String] {
        var meta = config.metadata
        meta[vocabularyKey] = String(String.UnicodeScalarView(vocabulary))
        return meta
    }

    /// Writes `model`'s weights with its config and `vocabulary` atomically as a char checkpoint with
    /// no training state (e.g. an imported nanoGPT model); `metadata` adds entries.
    public static func save(model: CharTransformer, vocabulary: [Unicode.Scalar], metadata: [String: String] = [:],
                            to path: String) throws {
        var meta = CharCheckpoint.metadata(config: model.config, vocabulary: vocabulary)
        for (k, v) in metadata { meta[k] = v }
        try Checkpoint.save(to: path, kind: kind, configJSON: try Checkpoint.jsonString(model.config), state: TrainingState(),
                            modules: [("", model)], extraMetadata: meta)
    }

    /// Tokens of `text`; a character outside the vocabulary is an error naming it, or is dropped
    /// when `skipUnknown` is set.
    public func encode(_ text: String, skipUnknown: Bool = false) throws -> [Int32] {
        let index = Dictionary(uniqueKeysWithValues: vocabulary.enumerated().map { ($1, Int32($0)) })
        var out: [Int32] = []
        for (offset, scalar) in text.unicodeScalars.enumerated() {
            if let t = index[scalar] { out.append(t); continue }
            if skipUnknown { continue }
            throw UnknownCharacterError(character: scalar, position: offset)
        }
        return out
    }

    /// The text of `tokens`.
    public func decode(_ tokens: [Int32]) -> String {
        var s = String.UnicodeScalarView()
        for t in tokens where t >= 0 && Int(t) < vocabulary.count { s.append(vocabulary[Int(t)]) }
        return String(s)
    }

    /// A checkpoint of the layout before the one schema, read as a `LoadedCheckpoint` of kind "char":
    /// `trainer.iteration` becomes the step, `optim.*` the state of optimizer "model", and
    /// `trainer.generator` / `trainer.dropout_generator` the "data" and "dropout" generators (the
    /// evaluation generator was not saved then: a resumed run starts it afresh).
    static func upgradeLegacy(_ file: SafeTensorsFile, path: String) throws -> LoadedCheckpoint {
        let config: CharTransformerConfig
        do {
            config = try CharTransformerConfig(metadata: file.metadata, tensorShapes: file.entries.mapValues(\.shape))
        } catch let error as CharTransformerError {
            throw CheckpointError(path: path, message: error.description)
        }
        var tensors: [String: Tensor] = [:]
        for (name, tensor) in file.tensors where !name.hasPrefix("trainer.") {
            tensors[name.hasPrefix("optim.") ? "optimizer.model." + name.dropFirst("optim.".count) : name] = tensor
        }
        // the old layout saved the tied weight once; the one schema saves it under both names
        if tensors["lm_head.weight"] == nil, let w = tensors["transformer.wte.weight"] { tensors["lm_head.weight"] = w }
        var state = TrainingState()
        var generators: [String: RandomGenerator] = [:]
        if file.entries["trainer.iteration"] != nil {
            state.step = Int(try file.tensor("trainer.iteration").item)
            state.stepInEpoch = state.step  // the loop splits it into epochs of the task's size
            let best = Double(try file.tensor("trainer.best_val_loss").item)
            if best.isFinite { state.bestValue = best }
            for (key, name) in [("trainer.generator", "data"), ("trainer.dropout_generator", "dropout")] where file.entries[key] != nil {
                let words = try file.int64Array(key).map { UInt64(bitPattern: $0) }
                guard words.count == 4, words.contains(where: { $0 != 0 }) else {
                    throw CheckpointError(path: path, message: "random generator state \(key) must be 4 words, not all zero")
                }
                generators[name] = RandomGenerator(stateWords: words)
            }
        } else if let iteration = file.metadata["iter"].flatMap({ Int($0) }) {
            // an exported model (no trainer state) still tells how far it was trained
            state.step = iteration
        }
        var metadata = file.metadata
        metadata["forge.kind"] = kind
        return LoadedCheckpoint(path: path, kind: kind, configJSON: try Checkpoint.jsonString(config), state: state,
                                generators: generators, tensors: tensors, metadata: metadata)
    }
}

/// A character of a prompt or text that is not in a char model's vocabulary.
public struct UnknownCharacterError: Error, CustomStringConvertible, Equatable {
    /// The character the vocabulary lacks.
    public let character: Unicode.Scalar
    /// Offset in Unicode scalars.
    public let position: Int

    /// One line naming the character (quoted, or as U+XXXX when whitespace or a control character) and its
    /// position.
    public var description: String {
        let s = character
        let hex = "U+" + String(s.value, radix: 16, uppercase: true)
        let shown = s.properties.isWhitespace || s.value < 32 ? hex : "'\(Character(s))' (\(hex))"
        return "the character \(shown) at position \(position) is not in the model's vocabulary"
    }
}
