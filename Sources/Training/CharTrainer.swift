import Foundation
import TensorCore
import DataIO
import Models

// The char-transformer training loop, nanoGPT's train.py recipe: AdamW β = (0.9, 0.99) with weight
// decay on 2-D weights only, linear warm-up then cosine decay, gradient clipping, train and val loss
// every `evalEvery` iterations, a checkpoint whenever val improves, resume, and a save on Ctrl-C.
// It uses the shared MetricsLog (metrics.csv + loss.png) and InterruptFlag; its checkpoints keep
// nanoGPT's tensor names at the top level (see CharCheckpoint) so nanoGPT exports load unchanged.

// MARK: - options and presets

/// Everything a char training run needs besides the data.
public struct CharTrainingOptions: Sendable, Equatable {
    public var layers = 4, heads = 4, embedding = 128, blockSize = 64
    public var dropout: Float = 0
    public var bias = false
    public var batchSize = 12
    public var learningRate: Float = 1e-3, minLearningRate: Float = 1e-4
    public var warmupIterations = 100
    public var iterations = 2000
    /// Iterations over which the rate decays (nanoGPT's `lr_decay_iters`); 0 = `iterations`.
    public var decayIterations = 0
    public var evalEvery = 250, evalIterations = 20
    public var weightDecay: Float = 0.1
    public var gradClip: Float = 1.0
    public var beta1: Float = 0.9, beta2: Float = 0.99
    public var seed: UInt64 = 1337
    /// Iterations between progress lines.
    public var logEvery = 10

    public init() {}

    /// The named presets: `baby` = nanoGPT README's CPU example, `shakespeare` = `train_shakespeare_char.py`.
    public static func preset(_ name: String) -> CharTrainingOptions? {
        var o = CharTrainingOptions()
        switch name {
        case "baby":
            (o.layers, o.heads, o.embedding, o.blockSize, o.batchSize) = (4, 4, 128, 64, 12)
            (o.iterations, o.dropout, o.evalIterations, o.evalEvery) = (2000, 0, 20, 250)
        case "shakespeare":
            (o.layers, o.heads, o.embedding, o.blockSize, o.batchSize) = (6, 6, 384, 256, 64)
            (o.iterations, o.dropout, o.evalIterations, o.evalEvery) = (5000, 0.2, 200, 250)
        default:
            return nil
        }
        return o
    }

    public static let presetNames = ["baby", "shakespeare"]

    /// The model config these options describe for a vocabulary of `vocabSize` characters.
    public func modelConfig(vocabSize: Int) -> CharTransformerConfig {
        CharTransformerConfig(vocabSize: vocabSize, blockSize: blockSize, layers: layers, heads: heads,
                              embedding: embedding, dropout: dropout, bias: bias)
    }

    /// The options as checkpoint metadata (`train.*`), so `--resume` can continue with the same recipe.
    public var metadata: [String: String] {
        ["train.layers": "\(layers)", "train.heads": "\(heads)", "train.embedding": "\(embedding)", "train.block": "\(blockSize)",
         "train.dropout": "\(dropout)", "train.bias": "\(bias)", "train.batch": "\(batchSize)", "train.lr": "\(learningRate)",
         "train.min_lr": "\(minLearningRate)", "train.warmup": "\(warmupIterations)", "train.iters": "\(iterations)",
         "train.decay_iters": "\(decayIterations)", "train.eval_every": "\(evalEvery)", "train.eval_iters": "\(evalIterations)",
         "train.weight_decay": "\(weightDecay)", "train.grad_clip": "\(gradClip)", "train.beta1": "\(beta1)",
         "train.beta2": "\(beta2)", "train.seed": "\(seed)", "train.log_every": "\(logEvery)"]
    }

    /// Options saved by `metadata`; nil when a checkpoint holds none (fields it lacks keep their defaults).
    public init?(metadata m: [String: String]) {
        guard m["train.iters"] != nil else { return nil }
        self.init()
        func i(_ k: String, _ v: inout Int) { if let x = m[k].flatMap({ Int($0) }) { v = x } }
        func f(_ k: String, _ v: inout Float) { if let x = m[k].flatMap({ Float($0) }) { v = x } }
        i("train.layers", &layers); i("train.heads", &heads); i("train.embedding", &embedding); i("train.block", &blockSize)
        f("train.dropout", &dropout); bias = m["train.bias"] == "true"; i("train.batch", &batchSize)
        f("train.lr", &learningRate); f("train.min_lr", &minLearningRate); i("train.warmup", &warmupIterations)
        i("train.iters", &iterations); i("train.decay_iters", &decayIterations); i("train.eval_every", &evalEvery)
        i("train.eval_iters", &evalIterations); f("train.weight_decay", &weightDecay); f("train.grad_clip", &gradClip)
        f("train.beta1", &beta1); f("train.beta2", &beta2); i("train.log_every", &logEvery)
        if let x = m["train.seed"].flatMap({ UInt64($0) }) { seed = x }
    }

    /// nanoGPT's learning-rate schedule for these options.
    public var schedule: LRSchedule {
        .warmupCosine(maxRate: learningRate, minRate: minLearningRate, warmupIterations: warmupIterations,
                      decayIterations: decayIterations > 0 ? decayIterations : iterations)
    }
}

// MARK: - checkpoints

/// A char model with its vocabulary, as read from or written to a safetensors checkpoint. The file
/// holds the weights under nanoGPT's names (the tied weight once), the config and vocabulary in the
/// metadata, and for a training checkpoint also `optim.state.*` and `trainer.*` (iteration, best val
/// loss, data and dropout generators) so a run can resume.
public struct CharCheckpoint {
    public let model: CharTransformer
    /// Characters in token order.
    public let vocabulary: [Unicode.Scalar]
    /// All metadata in the file.
    public let metadata: [String: String]
    /// All tensors in the file (weights, optimizer and trainer state).
    let file: SafeTensorsFile

    /// Metadata key holding the vocabulary as one string in token order.
    public static let vocabularyKey = "vocab"

    /// Loads a checkpoint written by Forge, or a nanoGPT state dict exported to safetensors (pass
    /// `heads` when its metadata has no `n_head`; without a `vocab` entry the vocabulary is empty).
    public static func load(path: String, heads: Int? = nil) throws -> CharCheckpoint {
        let file = try SafeTensors.read(URL(fileURLWithPath: path))
        let config = try CharTransformerConfig(metadata: file.metadata, tensorShapes: file.entries.mapValues(\.shape), heads: heads)
        let model = CharTransformer(config, seed: 0)
        try model.load(file.tensors)
        model.eval()
        let vocabulary = Array((file.metadata[vocabularyKey] ?? "").unicodeScalars)
        if !vocabulary.isEmpty && vocabulary.count != config.vocabSize {
            throw CharTransformerError("\(path): vocabulary of \(vocabulary.count) characters for a model with vocab_size \(config.vocabSize)")
        }
        return CharCheckpoint(model: model, vocabulary: vocabulary, metadata: file.metadata, file: file)
    }

    /// The same model with `vocabulary` (token order), e.g. for a nanoGPT export that has none: nanoGPT's
    /// prepare.py makes it the sorted characters of the training text (`TextCorpus(path:).vocabulary`).
    public func replacingVocabulary(_ vocabulary: [Unicode.Scalar]) throws -> CharCheckpoint {
        guard vocabulary.count == model.config.vocabSize else {
            throw CharTransformerError("a vocabulary of \(vocabulary.count) characters does not fit a model with vocab_size \(model.config.vocabSize)")
        }
        return CharCheckpoint(model: model, vocabulary: vocabulary, metadata: metadata, file: file)
    }

    /// Writes `model`'s weights (and optional extra items) with its config and `vocabulary` atomically.
    public static func save(model: CharTransformer, vocabulary: [Unicode.Scalar], extra: [SafeTensors.Item] = [],
                            metadata: [String: String] = [:], to path: String) throws {
        var meta = model.config.metadata
        meta[vocabularyKey] = String(String.UnicodeScalarView(vocabulary))
        meta["format"] = "forge-char-transformer"
        for (k, v) in metadata { meta[k] = v }
        let items = model.weightsForSaving().map { SafeTensors.Item.float32($0.0, $0.1) } + extra
        let url = URL(fileURLWithPath: path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        try SafeTensors.write(items: items, metadata: meta, to: url)
    }

    /// Tokens of `text`; a character outside the vocabulary is an error naming it, or is dropped
    /// when `skipUnknown` is set.
    public func encode(_ text: String, skipUnknown: Bool = false) throws -> [Int32] {
        let index = Dictionary(uniqueKeysWithValues: vocabulary.enumerated().map { ($1, Int32($0)) })
        var out: [Int32] = []
        for (offset, scalar) in text.unicodeScalars.enumerated() {
            if let t = index[scalar] { out.append(t); continue }
            if skipUnknown { continue }
            throw CharTransformerError("the prompt's character \(describe(scalar)) at position \(offset) is not in the model's vocabulary (use --skip-unknown to drop it)")
        }
        return out
    }

    /// The text of `tokens`.
    public func decode(_ tokens: [Int32]) -> String {
        var s = String.UnicodeScalarView()
        for t in tokens where t >= 0 && Int(t) < vocabulary.count { s.append(vocabulary[Int(t)]) }
        return String(s)
    }
}

private func describe(_ s: Unicode.Scalar) -> String {
    let hex = "U+" + String(s.value, radix: 16, uppercase: true)
    return s.properties.isWhitespace || s.value < 32 ? hex : "'\(Character(s))' (\(hex))"
}

// MARK: - evaluation

/// Mean loss of `model` over `iterations` random batches of `split` (nanoGPT's `estimate_loss`), in
/// evaluation mode and without a graph.
public func estimateCharLoss(_ model: CharTransformer, corpus: TextCorpus, split: TextCorpus.Split, batchSize: Int,
                             iterations: Int, generator: inout RandomGenerator) throws -> Double {
    let wasTraining = model.isTraining
    model.eval()
    defer { model.train(wasTraining) }
    var total = 0.0
    let T = model.config.blockSize
    for _ in 0..<iterations {
        let b = try corpus.batch(split, batchSize: batchSize, blockLength: T, generator: &generator)
        let loss = withNoGrad { model.forward(b.x, targets: b.y, batch: batchSize, length: T).loss }
        total += Double(loss.item)
    }
    return total / Double(max(iterations, 1))
}

/// Loss of `model` over the whole `tokens` stream cut into consecutive blocks (every token predicted
/// once, with the context since its block started), in nats per character.
public func evaluateCharLoss(_ model: CharTransformer, tokens: [Int32], batchSize: Int = 16) -> Double {
    let T = model.config.blockSize
    let blocks = (tokens.count - 1) / T
    let wasTraining = model.isTraining
    model.eval()
    defer { model.train(wasTraining) }
    var total = 0.0, n = 0
    var start = 0
    while start < blocks {
        let B = min(batchSize, blocks - start)
        var x = [Int32](), y = [Int32]()
        for i in start..<(start + B) {
            x += tokens[(i * T)..<(i * T + T)]
            y += tokens[(i * T + 1)...(i * T + T)]
        }
        let loss = withNoGrad { model.forward(x, targets: y, batch: B, length: T).loss }
        total += Double(loss.item) * Double(B * T)
        n += B * T
        start += B
    }
    return total / Double(max(n, 1))
}

// MARK: - the loop

/// One line of progress or an evaluation, as the loop reports it.
public enum CharTrainingEvent {
    case step(iteration: Int, loss: Float, tokensPerSecond: Double, eta: Double, learningRate: Float)
    case evaluation(iteration: Int, trainLoss: Double, valLoss: Double, saved: Bool)
    case message(String)
}

/// What a finished (or interrupted) run reached.
public struct CharTrainingResult: Sendable {
    public var iterations: Int
    public var bestValLoss: Double
    public var lastTrainLoss: Double
    public var lastValLoss: Double
    public var seconds: Double
    public var tokensPerSecond: Double
    public var interrupted: Bool
}

/// Trains a `CharTransformer` on a `TextCorpus` the way nanoGPT's train.py does.
public final class CharTrainer {
    public let corpus: TextCorpus
    public let options: CharTrainingOptions
    public let model: CharTransformer
    public let optimizer: AdamW
    /// Where checkpoint.safetensors (full state), best.safetensors (weights), metrics.csv and loss.png go.
    public let outputDirectory: String
    public private(set) var iteration = 0
    public private(set) var bestValLoss = Double.infinity
    private var generator: RandomGenerator
    private let metrics: MetricsLog
    private var lastEvaluated = -1

    public var checkpointPath: String { outputDirectory + "/checkpoint.safetensors" }
    public var bestPath: String { outputDirectory + "/best.safetensors" }
    public var metricsPath: String { outputDirectory + "/metrics.csv" }
    public var plotPath: String { outputDirectory + "/loss.png" }

    /// A new run, or with `resume` the run saved in `outputDirectory`'s checkpoint (its model config
    /// wins over `options`' model fields).
    public init(corpus: TextCorpus, options: CharTrainingOptions, outputDirectory: String, resume: Bool = false) throws {
        self.corpus = corpus
        self.options = options
        self.outputDirectory = outputDirectory
        try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
        generator = RandomGenerator(seed: options.seed)
        DefaultRNG.seed(options.seed &+ 1)  // dropout masks
        if resume {
            let ck = try CharCheckpoint.load(path: outputDirectory + "/checkpoint.safetensors")
            guard ck.vocabulary == corpus.vocabulary else {
                throw CharTransformerError("--resume: the checkpoint's vocabulary differs from the data's")
            }
            model = ck.model
            model.train()
            optimizer = AdamW(decayGroups(model.parameters, learningRate: options.learningRate, weightDecay: options.weightDecay),
                              betas: (options.beta1, options.beta2))
            try optimizer.loadState(ck.file.tensors, prefix: "optim.")
            iteration = Int(try ck.file.tensor("trainer.iteration").item)
            bestValLoss = Double(try ck.file.tensor("trainer.best_val_loss").item)
            let words = try ck.file.int64Array("trainer.generator").map { UInt64(bitPattern: $0) }
            generator = RandomGenerator(stateWords: words)
            // checkpoints written before this was saved resume with freshly seeded dropout masks
            if ck.file.entries["trainer.dropout_generator"] != nil {
                let words = try ck.file.int64Array("trainer.dropout_generator").map { UInt64(bitPattern: $0) }
                DefaultRNG.state = RandomGenerator(stateWords: words)
            }
        } else {
            let config = options.modelConfig(vocabSize: corpus.vocabularySize)
            if let p = config.problem { throw CharTransformerError(p) }
            model = CharTransformer(config, seed: options.seed)
            optimizer = AdamW(decayGroups(model.parameters, learningRate: options.learningRate, weightDecay: options.weightDecay),
                              betas: (options.beta1, options.beta2))
        }
        // one row per evaluation: step, epoch (always 0), wall_s, tokens_per_s, train_loss, val_loss, lr
        metrics = try MetricsLog(directory: outputDirectory, metricNames: ["train_loss", "val_loss", "lr"],
                                 plottedMetrics: ["train_loss", "val_loss"], rateName: "tokens_per_s",
                                 resumingAt: resume ? iteration : nil)
        if resume { lastEvaluated = Int(metrics.rows.last?[0] ?? -1) }
    }

    /// Saves the full training state (weights, optimizer, iteration, best val, data and dropout generators) atomically.
    public func saveCheckpoint(to path: String? = nil) throws {
        let extra: [SafeTensors.Item] = optimizer.stateTensors(prefix: "optim.").map { .float32($0.0, $0.1) } + [
            .float32("trainer.iteration", Tensor(Float(iteration))),
            .float32("trainer.best_val_loss", Tensor(Float(bestValLoss))),
            .int64("trainer.generator", shape: [4], values: generator.stateWords.map { Int64(bitPattern: $0) }),
            .int64("trainer.dropout_generator", shape: [4], values: DefaultRNG.state.stateWords.map { Int64(bitPattern: $0) }),
        ]
        var meta = options.metadata
        meta["iter"] = "\(iteration)"
        meta["best_val_loss"] = "\(bestValLoss)"
        try CharCheckpoint.save(model: model, vocabulary: corpus.vocabulary, extra: extra, metadata: meta, to: path ?? checkpointPath)
    }

    /// Runs until `options.iterations` or until `shouldStop()` returns true (Ctrl-C), then saves the
    /// full state. Evaluates at every `evalEvery` and at the end; saves when val improves.
    public func run(shouldStop: () -> Bool = { false }, report: (CharTrainingEvent) -> Void) throws -> CharTrainingResult {
        let B = options.batchSize, T = model.config.blockSize
        let schedule = options.schedule
        let params = model.parameters
        let start = Date()
        var stepSeconds = 0.0, steps = 0, tokensTimed = 0.0
        var lastTrain = Double.nan, lastVal = Double.nan
        var interrupted = false
        var evalGenerator = RandomGenerator(seed: options.seed &+ 2)
        model.train()

        func evaluate() throws {
            lastTrain = try estimateCharLoss(model, corpus: corpus, split: .train, batchSize: B, iterations: options.evalIterations, generator: &evalGenerator)
            lastVal = try estimateCharLoss(model, corpus: corpus, split: .validation, batchSize: B, iterations: options.evalIterations, generator: &evalGenerator)
            var saved = false
            if lastVal < bestValLoss {
                bestValLoss = lastVal
                try saveCheckpoint()
                try CharCheckpoint.save(model: model, vocabulary: corpus.vocabulary,
                                        metadata: ["iter": "\(iteration)", "val_loss": "\(lastVal)"], to: bestPath)
                saved = true
            }
            lastEvaluated = iteration
            metrics.append(step: iteration, epoch: 0, wallSeconds: Date().timeIntervalSince(start),
                           rate: steps > 1 ? tokensTimed / stepSeconds : 0,
                           values: [lastTrain, lastVal, Double(schedule.learningRate(at: iteration))])
            try metrics.writePlot(title: "char loss (nats/char)")
            report(.evaluation(iteration: iteration, trainLoss: lastTrain, valLoss: lastVal, saved: saved))
        }

        while iteration < options.iterations {
            if options.evalEvery > 0 && iteration % options.evalEvery == 0 && lastEvaluated != iteration {
                try evaluate()
            }
            if shouldStop() { interrupted = true; break }
            let t0 = Date()
            optimizer.learningRate = schedule.learningRate(at: iteration)
            let batch = try corpus.batch(.train, batchSize: B, blockLength: T, generator: &generator)
            let (_, loss) = model.forward(batch.x, targets: batch.y, batch: B, length: T)
            let lossValue = loss.item
            guard lossValue.isFinite else {
                throw CharTransformerError("loss became \(lossValue) at iteration \(iteration); lower --lr (the last good state is in \(checkpointPath))")
            }
            loss.backward()
            if options.gradClip > 0 { clipGradNorm(params, maxNorm: options.gradClip) }
            optimizer.step()
            optimizer.zeroGrad()
            iteration += 1
            let dt = Date().timeIntervalSince(t0)
            if steps > 0 || options.iterations == 1 { stepSeconds += dt; tokensTimed += Double(B * T) }  // skip the first (warm-up) step
            steps += 1
            if iteration % max(options.logEvery, 1) == 0 || iteration == options.iterations {
                let perStep = stepSeconds > 0 ? stepSeconds / Double(max(steps - 1, 1)) : dt
                let remaining = Double(options.iterations - iteration)
                let evalsLeft = options.evalEvery > 0 ? remaining / Double(options.evalEvery) : 0
                let eta = remaining * perStep + evalsLeft * Double(2 * options.evalIterations) * perStep / 3
                report(.step(iteration: iteration, loss: lossValue, tokensPerSecond: Double(B * T) / perStep, eta: eta,
                             learningRate: optimizer.learningRate))
            }
        }
        if !interrupted && lastEvaluated != iteration { try evaluate() }
        try saveCheckpoint()
        if interrupted { report(.message("interrupted at iteration \(iteration): state saved to \(checkpointPath)")) }
        return CharTrainingResult(iterations: iteration, bestValLoss: bestValLoss, lastTrainLoss: lastTrain, lastValLoss: lastVal,
                                  seconds: Date().timeIntervalSince(start),
                                  tokensPerSecond: stepSeconds > 0 ? tokensTimed / stepSeconds : 0, interrupted: interrupted)
    }
}
