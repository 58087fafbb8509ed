import ArgumentParser
import Foundation
import DataIO
import TensorCore
import Models
import Training

// `--init` for each `forge train` command: the flag mapping around Training's FineTuning. The
// flags themselves are RunFlags' (TrainingRun.swift).

extension TrainChar {
    /// Opens `--init`'s checkpoint for `--data` and puts its architecture into `o`; an explicit shape
    /// flag that differs is an error naming both values. `--dropout` may change (it is not a weight).
    func startCharFineTuning(from path: String, into o: inout CharTrainingOptions) throws -> CharFineTuningStart {
        if training.extendBlock && architecture.block == nil { throw ValidationError("--extend-block needs --block N, the new context length") }
        let start = try CharFineTuningStart(checkpoint: path, text: TextCorpus(path: data), extendVocabulary: training.extendVocab,
                                            blockSize: training.extendBlock ? architecture.block : nil)
        let c = start.config
        if training.extendBlock && start.blockSize == c.blockSize {
            throw ValidationError("--extend-block: --block \(c.blockSize) is the checkpoint's context already; give a longer one")
        }
        func given<T>(_ v: T?) -> String? { v.map { "\($0)" } }
        try training.refuseInitContradictions([
            ("--layers", given(architecture.layers), "\(c.layers)"), ("--heads", given(architecture.heads), "\(c.heads)"),
            ("--embd", given(architecture.embd), "\(c.embedding)"), ("--block", training.extendBlock ? nil : given(architecture.block), "\(c.blockSize)"),
            ("--bias", architecture.bias ? "true" : nil, "\(c.bias)")])
        (o.layers, o.heads, o.embedding, o.blockSize, o.bias, o.dropout) = (c.layers, c.heads, c.embedding, start.blockSize, c.bias, c.dropout)
        if start.blockSize > c.blockSize {
            say("--extend-block: context \(c.blockSize) → \(start.blockSize) positions; position p ≥ \(c.blockSize) starts as a copy of position p mod \(c.blockSize)")
        }
        if !start.addedCharacters.isEmpty {
            say("--extend-vocab: \(start.addedCharacters.count) new characters after the checkpoint's \(start.parentVocabulary.count): "
                + start.addedCharacters.map(CharCheckpoint.describe).joined(separator: " "))
        }
        return start
    }

    /// `--data`, encoded in the vocabulary of the checkpoint `--resume` continues when it has one of
    /// its own order (a fine-tuned run keeps its parent's token ids, and any characters it added).
    func textInSavedVocabulary(checkpointPath: String) throws -> TextCorpus {
        let text = try TextCorpus(path: data)
        guard training.resume, FileManager.default.fileExists(atPath: checkpointPath) else { return text }
        let saved = try Checkpoint.load(checkpointPath, expectedKind: CharCheckpoint.kind)
        let vocabulary = Array((saved.metadata[CharCheckpoint.vocabularyKey] ?? "").unicodeScalars)
        guard !vocabulary.isEmpty, vocabulary != text.vocabulary else { return text }
        let missing = CharCheckpoint.missingCharacters(text.vocabulary, vocabulary: vocabulary)
        if !missing.isEmpty { throw VocabularyMismatchError(path: saved.path, missing: missing) }
        return try text.reencoded(vocabulary: vocabulary)
    }

    /// Copies the parent's weights into the new task, freezes `--freeze`, and returns the lineage metadata.
    func initialize(_ task: CharTrainingTask, from start: CharFineTuningStart) throws -> [String: String] {
        try start.initialize(task, keepOptimizer: training.initOptimizer)
        return try training.startFineTuning(parent: start.parent, modules: task.modules)
    }
}

/// A conditional checkpoint's classes against the new data's: the same list is fine; otherwise an
/// error listing the differences, or with `--new-classes` the names of the class-dependent tensors
/// to start afresh (and `classCount` set to the data's). An unconditional checkpoint ignores labels.
private func checkClasses(parent: LoadedCheckpoint, classCount: inout Int, dataClasses: [String], newClasses: Bool,
                          classDependent: (Int) -> Set<String>) throws -> Set<String> {
    guard classCount > 0 else {
        if newClasses { throw ValidationError("--new-classes: \(parent.path) is unconditional; it has no class layers to start afresh") }
        return []
    }
    guard let differences = FineTuning.classDifferences(checkpoint: try parent.stringArray("forge.classes"), data: dataClasses) else {
        if newClasses { say("--new-classes: the data has the checkpoint's classes; nothing to start afresh") }
        return []
    }
    guard newClasses else {
        throw ValidationError("the classes of --data differ from those of \(parent.path): \(differences); "
                              + "pass --new-classes to start the class layers afresh and keep the rest")
    }
    guard dataClasses.count >= 2 else { throw ValidationError("--new-classes needs data with at least 2 classes (sub-folders), got \(dataClasses.count)") }
    let names = classDependent(classCount)
    classCount = dataClasses.count
    say("--new-classes: \(differences); \(names.count) class-dependent tensors start afresh: " + names.sorted().joined(separator: ", "))
    return names
}

/// Copies the parent's weights into `task` (those in `reinitialized` keep the task's fresh values),
/// freezes `--freeze`, and returns the lineage metadata.
private func initializeFromParent(_ task: any TrainingTask, parent: LoadedCheckpoint, reinitialized: Set<String>,
                                  training: RunFlags) throws -> [String: String] {
    var source = parent
    if !reinitialized.isEmpty {
        if training.initOptimizer {
            throw ValidationError("--init-optimizer cannot keep the optimizer state of the class layers --new-classes starts afresh: drop one of them")
        }
        source = FineTuning.replacing(reinitialized, in: parent, with: task.modules)
    }
    try FineTuning.initialize(task, from: source, keepOptimizer: training.initOptimizer)
    return try training.startFineTuning(parent: parent, modules: task.modules)
}

extension TrainGAN {
    /// `--init`: the checkpoint's architecture in `config` (a shape flag that contradicts it is an error
    /// naming both values), this run's optimizer settings, batch and seed; returns the tensors
    /// `--new-classes` starts afresh.
    func fineTuneConfig(_ config: inout DCGANConfig, parent: LoadedCheckpoint, dataClasses: [String]) throws -> Set<String> {
        func given<T>(_ v: T?) -> String? { v.map { "\($0)" } }
        func nonDefault<T: Equatable>(_ v: T, _ d: T) -> String? { v == d ? nil : "\(v)" }
        try training.refuseInitContradictions([
            ("--size", nonDefault(size, 32), "\(config.imageSize)"), ("--channels", given(channels), "\(config.channels)"),
            ("--nz", nonDefault(nz, 100), "\(config.nz)"), ("--ngf", given(ngf), "\(config.ngf)"), ("--ndf", given(ndf), "\(config.ndf)"),
            ("--embed", nonDefault(embed, 50), "\(config.embedDim)"),
            ("--g-conditioning", gConditioning.map(\.rawValue), config.generatorConditioning.rawValue),
            ("--spectral-norm", spectralNorm.map { $0.isOn ? "on" : "off" }, config.spectralNorm ? "on" : "off"),
            ("--conditional", conditional == .auto ? nil : conditional.rawValue, config.isConditional ? "on" : "off")])
        if let loss { config.loss = loss }
        if let ema { config.emaDecay = ema }
        if let lr { config.learningRate = lr }
        if let lrD { config.learningRateD = lrD }
        if let beta1 { config.beta1 = beta1 }
        if let beta2 { config.beta2 = beta2 }
        config.batchSize = batch
        config.seed = training.seedValue
        let base = config
        return try checkClasses(parent: parent, classCount: &config.classCount, dataClasses: dataClasses, newClasses: training.newClasses) { k in
            FineTuning.classDependentNames(classCount: k) { count in
                var c = base
                c.classCount = count
                let gan = DCGAN(c)
                return [("generator", gan.generator), ("discriminator", gan.discriminator)] + (gan.makeEMA().map { [("generator_ema", $0)] } ?? [])
            }
        }
    }

    func initialize(_ task: any TrainingTask, parent: LoadedCheckpoint, reinitialized: Set<String>) throws -> [String: String] {
        try initializeFromParent(task, parent: parent, reinitialized: reinitialized, training: training)
    }
}

extension TrainVAE {
    /// `--init`: the checkpoint's architecture in `config` (a contradicting flag is an error naming both
    /// values), this run's learning rate, batch and seed; returns the tensors `--new-classes` starts afresh.
    func fineTuneConfig(_ config: inout VAEConfig, parent: LoadedCheckpoint, dataClasses: [String]) throws -> Set<String> {
        func given<T>(_ v: T?) -> String? { v.map { "\($0)" } }
        func nonDefault<T: Equatable>(_ v: T, _ d: T) -> String? { v == d ? nil : "\(v)" }
        try training.refuseInitContradictions([
            ("--arch", nonDefault(arch.rawValue, VAEArchitecture.mlp.rawValue), config.arch.rawValue),
            ("--size", nonDefault(size, 28), "\(config.imageSize)"), ("--channels", given(channels), "\(config.channels)"),
            ("--latent", given(latent), "\(config.latent)"), ("--hidden", given(hidden), "\(config.hidden)"),
            ("--likelihood", likelihood.map(\.rawValue), config.likelihood.rawValue),
            ("--conditional", conditional ? "on" : nil, config.isConditional ? "on" : "off")])
        if let lr { config.learningRate = lr }
        if let batch { config.batchSize = batch }
        config.seed = training.seedValue
        let base = config
        return try checkClasses(parent: parent, classCount: &config.classCount, dataClasses: dataClasses, newClasses: training.newClasses) { k in
            FineTuning.classDependentNames(classCount: k) { count in
                var c = base
                c.classCount = count
                return [("vae", VAE(c))]
            }
        }
    }

    func initialize(_ task: any TrainingTask, parent: LoadedCheckpoint, reinitialized: Set<String>) throws -> [String: String] {
        try initializeFromParent(task, parent: parent, reinitialized: reinitialized, training: training)
    }
}
