import Foundation
import TensorCore
import DataIO
import Models

// Fine-tuning a char model: the new text must be written in the checkpoint's vocabulary (or the
// vocabulary grows by the characters it lacks), the architecture is the checkpoint's, and the new
// run's model starts from its weights.

/// A char checkpoint opened as the start of a fine-tuned run, with the new text encoded in its vocabulary.
public struct CharFineTuningStart {
    /// The parent checkpoint as read.
    public let parent: LoadedCheckpoint
    /// The parent's architecture (its vocabulary size before any extension).
    public let config: CharTransformerConfig
    /// The parent's vocabulary, token order.
    public let parentVocabulary: [Unicode.Scalar]
    /// Characters added after the parent's vocabulary ([] unless extending).
    public let addedCharacters: [Unicode.Scalar]
    /// The new text encoded with `parentVocabulary + addedCharacters`.
    public let corpus: TextCorpus
    /// The new run's context length: the parent's, or a longer one whose positions past the parent's
    /// start as copies of its position rows (`CharCheckpoint.extendingPositionRows`).
    public let blockSize: Int

    /// Opens the char checkpoint at `path` (a file or run folder) for fine-tuning on `text`. A
    /// character of the text that the vocabulary lacks is a `VocabularyMismatchError` listing them,
    /// unless `extendVocabulary` is set: then they are appended to the vocabulary. `blockSize`
    /// (default: the parent's) may lengthen the context, never shorten it.
    public init(checkpoint path: String, text: TextCorpus, extendVocabulary: Bool, blockSize: Int? = nil) throws {
        parent = try Checkpoint.load(path, expectedKind: CharCheckpoint.kind)
        config = try parent.config(as: CharTransformerConfig.self)
        parentVocabulary = Array((parent.metadata[CharCheckpoint.vocabularyKey] ?? "").unicodeScalars)
        guard parentVocabulary.count == config.vocabSize else {
            throw CheckpointError(path: parent.path, message: "holds a vocabulary of \(parentVocabulary.count) characters for vocab_size \(config.vocabSize); "
                                  + "it cannot be fine-tuned without its vocabulary")
        }
        let missing = CharCheckpoint.missingCharacters(text.vocabulary, vocabulary: parentVocabulary)
        if !missing.isEmpty && !extendVocabulary { throw VocabularyMismatchError(path: parent.path, missing: missing) }
        addedCharacters = missing
        self.blockSize = blockSize ?? config.blockSize
        guard self.blockSize >= config.blockSize else {
            throw CheckpointError(path: parent.path, message: "has a context of \(config.blockSize) positions; a fine-tuned run may lengthen it, "
                                  + "not shorten it to \(self.blockSize)")
        }
        corpus = try text.reencoded(vocabulary: CharCheckpoint.extendedVocabulary(parentVocabulary, adding: missing))
    }

    /// Copies the parent's weights into `task`'s model (built for `corpus`, so with the extended
    /// vocabulary): the embedding and tied head keep the parent's rows, and rows of added characters
    /// keep the task's fresh initialization (N(0, 0.02), as training initializes every row). With
    /// `keepOptimizer` the parent's AdamW state comes too, with zero moments for the added rows.
    /// A longer `blockSize` extends the position embedding (and with `keepOptimizer` its moments) the same way.
    public func initialize(_ task: CharTrainingTask, keepOptimizer: Bool) throws {
        var tensors = parent.tensors
        guard task.model.config.blockSize == blockSize else {
            throw CharTransformerError("the task's model has a context of \(task.model.config.blockSize), this fine-tuning start \(blockSize)")
        }
        if blockSize > config.blockSize {
            let wpe = task.model.transformer.wpe.weight
            tensors = try CharCheckpoint.extendingPositionRows(tensors, oldBlock: config.blockSize, newBlock: blockSize)
            for name in keepOptimizer ? savedMomentNames(of: wpe, in: task, tensors) : [] {
                tensors = try CharCheckpoint.extendingPositionRows(tensors, oldBlock: config.blockSize, newBlock: blockSize, name: name)
            }
        }
        if !addedCharacters.isEmpty {
            let oldCount = parentVocabulary.count
            let fresh = task.model.transformer.wte.weight
            tensors = try CharCheckpoint.extendingVocabularyRows(tensors, oldCount: oldCount, fresh: fresh)
            for name in keepOptimizer ? savedMomentNames(of: fresh, in: task, tensors) : [] {
                tensors[name] = try CharCheckpoint.extendingVocabularyRows([CharCheckpoint.vocabularyWeightNames[0]: tensors[name]!],
                    oldCount: oldCount, fresh: Tensor.zeros(fresh.shape))[CharCheckpoint.vocabularyWeightNames[0]]
            }
        }
        let adapted = LoadedCheckpoint(path: parent.path, kind: parent.kind, configJSON: parent.configJSON, state: parent.state,
                                       generators: parent.generators, tensors: tensors, metadata: parent.metadata)
        try FineTuning.initialize(task, from: adapted, keepOptimizer: keepOptimizer)
    }

    /// The names under which `tensors` holds the saved AdamW moments of `parameter` (its index in the
    /// task's optimizer, which has the parent's parameter order).
    private func savedMomentNames(of parameter: Tensor, in task: CharTrainingTask, _ tensors: [String: Tensor]) -> [String] {
        guard let index = task.optimizer.parameters.firstIndex(where: { $0 === parameter }) else { return [] }
        return ["exp_avg", "exp_avg_sq"].map { "optimizer.model.state.\(index).\($0)" }.filter { tensors[$0] != nil }
    }
}
