import Foundation
import TensorCore
import DataIO
import Models

// The char transformer as a task of the one training loop, with nanoGPT's train.py recipe: AdamW
// β = (0.9, 0.99) with weight decay on 2-D weights only, linear warm-up then cosine decay (the loop's
// learning-rate schedule), gradient clipping, train and val loss estimates every `evalEvery` steps
// (the loop's evaluation hook) and best.safetensors whenever val improves (its best-metric policy).

// MARK: - options and presets

/// Everything a char training run needs besides the data.
public struct CharTrainingOptions: Sendable, Equatable {
    /// Model shape (nanoGPT's n_layer, n_head, n_embd, block_size): `embedding` must be a multiple of `heads`; `blockSize`
    /// is the context length in characters, and each split of the corpus must be longer than one block.
    public var layers = 4, heads = 4, embedding = 128, blockSize = 64
    /// Probability in [0, 1) of every dropout in the model (nanoGPT's `dropout`); 0 = off, as in the baby preset.
    public var dropout: Float = 0
    /// Whether the linear and layer-norm layers carry biases (nanoGPT's `bias`; off by default).
    public var bias = false
    /// Blocks per optimisation step; a step trains on `batchSize × blockSize` tokens.
    public var batchSize = 12
    /// AdamW's peak rate after warm-up and the floor the cosine decay ends at (nanoGPT's `learning_rate`, `min_lr`).
    public var learningRate: Float = 1e-3, minLearningRate: Float = 1e-4
    /// Steps of linear warm-up from 0 to `learningRate`; must stay below the decay iterations.
    public var warmupIterations = 100
    /// Total optimisation steps of the run (nanoGPT's `max_iters`).
    public var iterations = 2000
    /// Iterations over which the rate decays (nanoGPT's `lr_decay_iters`); 0 = `iterations`.
    public var decayIterations = 0
    /// Iterations held at the peak rate before the cosine decay begins (warm-up, stable, decay);
    /// 0 = the decay begins when warm-up ends, as nanoGPT's.
    public var decayStart = 0
    /// Steps between train/val loss estimates (0 = only at the end) and the random batches each estimate averages.
    public var evalEvery = 250, evalIterations = 20
    /// AdamW's decoupled weight decay, applied to rank-2 weights only (matmul and embedding weights, not biases or LayerNorm).
    public var weightDecay: Float = 0.1
    /// Maximum global gradient norm per step (0 = no clipping).
    public var gradClip: Float = 1.0
    /// AdamW's moment decay rates (nanoGPT's char recipe: 0.9, 0.99).
    public var beta1: Float = 0.9, beta2: Float = 0.99
    /// Seeds the initial weights, the training batches (seed), dropout (seed + 1) and the evaluation batches (seed + 2).
    public var seed: UInt64 = 1337
    /// Iterations between progress lines.
    public var logEvery = 10

    /// The baby preset's values (nanoGPT README's CPU example).
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

    /// The names `preset(_:)` accepts, in the order help texts list them.
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
         "train.decay_iters": "\(decayIterations)", "train.decay_start": "\(decayStart)", "train.eval_every": "\(evalEvery)", "train.eval_iters": "\(evalIterations)",
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
        i("train.iters", &iterations); i("train.decay_iters", &decayIterations); i("train.decay_start", &decayStart); i("train.eval_every", &evalEvery)
        i("train.eval_iters", &evalIterations); f("train.weight_decay", &weightDecay); f("train.grad_clip", &gradClip)
        f("train.beta1", &beta1); f("train.beta2", &beta2); i("train.log_every", &logEvery)
        if let x = m["train.seed"].flatMap({ UInt64($0) }) { seed = x }
    }

    /// nanoGPT's learning-rate schedule for these options, with a stable stretch when `decayStart`
    /// lies past the warm-up.
    public var schedule: LRSchedule {
        let end = decayIterations > 0 ? decayIterations : iterations
        if decayStart > warmupIterations {
            return .warmupStableCosine(maxRate: learningRate, minRate: minLearningRate, warmupIterations: warmupIterations,
                                       decayStart: decayStart, decayEnd: end)
        }
        return .warmupCosine(maxRate: learningRate, minRate: minLearningRate, warmupIterations: warmupIterations, decayIterations: end)
    }
}

// MARK: - evaluation

/// Mean loss of `model` over `iterations` random batches of `split` (nanoGPT's `estimate_loss`), in
/// evaluation mode and without a graph. With a data-parallel `group`, every rank draws the same
/// batches, computes every size-th one from its rank on, and the ranks sum their losses: the same
/// mean on every rank, equal to a single process's up to summation order.
public func estimateCharLoss(_ model: CharTransformer, corpus: TextCorpus, split: TextCorpus.Split, batchSize: Int,
                             iterations: Int, generator: inout RandomGenerator, group: DataParallelGroup? = nil) throws -> Double {
    let wasTraining = model.isTraining
    model.eval()
    defer { model.train(wasTraining) }
    var total = 0.0
    let T = model.config.blockSize
    for i in 0..<iterations {
        let b = try corpus.batch(split, batchSize: batchSize, blockLength: T, generator: &generator)
        if let group, i % group.size != group.rank { continue }
        let loss = withNoGrad { model.forward(b.x, targets: b.y, batch: batchSize, length: T).loss }
        total += Double(loss.item)
    }
    if let group { total = Double(try group.allreduceSum([Float(total)])[0]) }
    return total / Double(max(iterations, 1))
}

/// Loss of `model` over the `tokens` stream cut into consecutive whole blocks of the model's block
/// size (every token of them predicted once, with the context since its block started), in nats per
/// character. The last `(tokens.count − 1) mod blockSize` tokens, too few for a whole block, are not
/// scored.
/// - Throws: `TrainingError.invalidValue` (field `tokens`) for a stream shorter than one block and
///   its next character: there is nothing to score, and 0 would read as a perfect model.
public func evaluateCharLoss(_ model: CharTransformer, tokens: [Int32], batchSize: Int = 16) throws -> Double {
    let T = model.config.blockSize
    let blocks = (tokens.count - 1) / T
    guard blocks >= 1 else {
        throw TrainingError.invalidValue(field: "tokens", value: "\(tokens.count) characters",
                                         requirement: "at least one block of the model and its next character (\(T + 1) characters)")
    }
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
    return total / Double(n)
}

extension CharTrainingOptions {
    /// What is wrong with these options, as the first `TrainingError.invalidValue` (library field
    /// names: `learningRate`, `iterations`, …), or nil.
    public func problem() -> TrainingError? {
        do {
            try checkValue(Double(learningRate), "learningRate", "a positive number") { $0 > 0 }
            try checkValue(Double(minLearningRate), "minLearningRate", "0 or more and at most learningRate") { $0 >= 0 && $0 <= Double(learningRate) }
            try checkValue(Double(iterations), "iterations", "at least 1") { $0 >= 1 }
            try checkValue(Double(warmupIterations), "warmupIterations", "0 or more, below the decay iterations") {
                $0 >= 0 && $0 < Double(decayIterations > 0 ? decayIterations : max(iterations, 1))
            }
            try checkValue(Double(decayIterations), "decayIterations", "0 (= iterations) or more") { $0 >= 0 }
            try checkValue(Double(decayStart), "decayStart", "0 or more, below the decay iterations") {
                $0 >= 0 && $0 < Double(decayIterations > 0 ? decayIterations : max(iterations, 1))
            }
            try checkValue(Double(batchSize), "batchSize", "at least 1") { $0 >= 1 }
            try checkValue(Double(evalEvery), "evalEvery", "0 (only at the end) or more") { $0 >= 0 }
            try checkValue(Double(evalIterations), "evalIterations", "at least 1") { $0 >= 1 }
            try checkValue(Double(weightDecay), "weightDecay", "0 or more") { $0 >= 0 }
            try checkValue(Double(gradClip), "gradClip", "0 (off) or more") { $0 >= 0 }
            try checkValue(Double(beta1), "beta1", "in [0, 1)") { $0 >= 0 && $0 < 1 }
            try checkValue(Double(beta2), "beta2", "in [0, 1)") { $0 >= 0 && $0 < 1 }
            try checkValue(Double(dropout), "dropout", "in [0, 1)") { $0 >= 0 && $0 < 1 }
            try checkValue(Double(logEvery), "logEvery", "at least 1") { $0 >= 1 }
            for (field, value) in [("layers", layers), ("heads", heads), ("embedding", embedding), ("blockSize", blockSize)] {
                try checkValue(Double(value), field, "at least 1") { $0 >= 1 }
            }
            if embedding % heads != 0 {
                return .invalidValue(field: "embedding", value: "\(embedding)", requirement: "a multiple of heads (\(heads))")
            }
        } catch let error as TrainingError {
            return error
        } catch {
            return .invalidConfiguration("\(error)")
        }
        return nil
    }

    /// The memory one training step needs, in bytes, estimated from the shapes: parameters with their
    /// gradients and AdamW's two moments, the activations kept for backward per layer (the block's
    /// B·T·C tensors, the 4C-wide MLP and the attention probabilities B·H·T²), and the logits.
    public func trainingMemoryEstimate(vocabSize: Int) -> Double {
        let (B, T, C, L, H, V) = (Double(batchSize), Double(blockSize), Double(embedding), Double(layers), Double(heads), Double(vocabSize))
        let parameters = V * C + T * C + L * 12 * C * C
        let perLayer = B * T * C * 16 + B * H * T * T * 2
        let logits = B * T * V * 3
        return 4 * (parameters * 4 + L * perLayer + logits + B * T * C * 4)
    }
}

// MARK: - the task

/// A `CharTransformer` trained on a `TextCorpus` the way nanoGPT's train.py does, as a task of the one
/// `TrainingLoop`. Run it with `TrainingOptions(steps: options.iterations, evaluateEvery: options.evalEvery)`
/// (`CharTrainingTask.trainingOptions(…)` builds them).
///
/// Randomness: "data" draws the training batches, "eval" the evaluation batches (so a resumed run's
/// estimates, best value and best.safetensors are those of an uninterrupted run), and "dropout" is the
/// state of TensorCore's `DefaultRNG`, which the dropout masks draw their seeds from.
public final class CharTrainingTask: DataParallelTrainingTask {
    /// The character corpus the batches are drawn from; its vocabulary sizes the model and goes into the checkpoint.
    public let corpus: TextCorpus
    /// The recipe this task trains with (architecture, schedule, evaluation cadence), saved as `train.*` metadata.
    public let options: CharTrainingOptions
    /// The transformer being trained, built from `options` with `options.seed`.
    public let model: CharTransformer
    /// AdamW over the model's parameters, with weight decay on the 2-D weights only.
    public let optimizer: AdamW
    private var dataGenerator: RandomGenerator
    private var evaluationGenerator: RandomGenerator
    /// The data-parallel group this task is a rank of, and its rows of every global batch (nil = one process).
    private var dataParallel: (group: DataParallelGroup, rows: Range<Int>)?
    /// Reduces the gradients while backward runs (data parallel, when MPI allows it; nil otherwise).
    private var reducer: OverlappedGradientReducer?

    /// A new model for `corpus` with `options`' architecture and seed. Throws `TrainingError.invalidValue`
    /// for an option out of range.
    public init(corpus: TextCorpus, options: CharTrainingOptions) throws {
        if let problem = options.problem() { throw problem }
        let config = options.modelConfig(vocabSize: corpus.vocabularySize)
        if let p = config.problem { throw TrainingError.invalidConfiguration(p) }
        guard corpus.trainTokens.count > options.blockSize, corpus.validationTokens.count > options.blockSize else {
            throw TrainingError.invalidConfiguration("the text is too short for blocks of \(options.blockSize) characters: "
                + "\(corpus.trainTokens.count) train and \(corpus.validationTokens.count) validation characters")
        }
        self.corpus = corpus
        self.options = options
        model = CharTransformer(config, seed: options.seed)
        optimizer = AdamW(decayGroups(model.parameters, learningRate: options.learningRate, weightDecay: options.weightDecay),
                          betas: (options.beta1, options.beta2))
        dataGenerator = RandomGenerator(seed: options.seed)
        evaluationGenerator = RandomGenerator(seed: options.seed &+ 2)
        DefaultRNG.seed(options.seed &+ 1)  // dropout masks
        model.train()
    }

    /// The loop options for this task: `options.iterations` steps, evaluations every `evalEvery`.
    public func trainingOptions(runDirectory: String, minutes: Double? = nil, resume: Bool = false) -> TrainingOptions {
        TrainingOptions(runDirectory: runDirectory, steps: options.iterations, minutes: minutes, resume: resume,
                        evaluateEvery: options.evalEvery, logEvery: options.logEvery)
    }

    /// Checkpoint kind `CharCheckpoint.kind`, the kind `CharCheckpoint` loading and char fine-tuning expect.
    public var kind: String { CharCheckpoint.kind }
    /// The `CharTransformerConfig` as JSON.
    public var configJSON: String { (try? Checkpoint.jsonString(model.config)) ?? "{}" }
    /// The model under the empty name, so its tensors keep nanoGPT's names at the top level.
    public var modules: [(name: String, module: any Module)] { [("", model)] }
    /// The AdamW optimizer, saved under the name "model".
    public var optimizers: [(name: String, optimizer: any Optimizer)] { [("model", optimizer)] }
    /// "data" (training batches), "eval" (evaluation batches) and "dropout" (TensorCore's `DefaultRNG` state).
    public var generators: [String: RandomGenerator] {
        get { ["data": dataGenerator, "eval": evaluationGenerator, "dropout": DefaultRNG.state] }
        set {
            if let g = newValue["data"] { dataGenerator = g }
            if let g = newValue["eval"] { evaluationGenerator = g }
            if let g = newValue["dropout"] { DefaultRNG.state = g }
        }
    }
    /// The vocabulary and model config (`CharCheckpoint.metadata`) plus the recipe's `train.*` entries.
    public var extraMetadata: [String: String] {
        CharCheckpoint.metadata(config: model.config, vocabulary: corpus.vocabulary).merging(options.metadata) { a, _ in a }
    }

    /// An epoch is one pass worth of training tokens (nanoGPT draws random blocks, so it is a count, not an order).
    public var stepsPerEpoch: Int { max(1, corpus.trainTokens.count / (options.batchSize * options.blockSize)) }
    /// Tokens per step: `batchSize × blockSize`.
    public var itemsPerStep: Int { options.batchSize * options.blockSize }
    /// Steps are counted in tokens.
    public var itemName: String { "tokens" }
    /// The mean cross-entropy of the step's batch, in nats per character.
    public var metricNames: [String] { ["loss"] }
    /// `estimateCharLoss` on the train and the validation split, in nats per character.
    public var evaluationNames: [String] { ["train_loss", "val_loss"] }
    /// The step loss and both estimates in `loss.png`.
    public var plottedMetrics: [String] { ["loss", "train_loss", "val_loss"] }
    /// The validation loss estimate picks `best.safetensors`.
    public var bestMetric: String? { "val_loss" }
    /// nanoGPT's warm-up + cosine schedule (`CharTrainingOptions.schedule`).
    public var learningRateSchedule: LRSchedule? { options.schedule }
    /// A char model's loss starts near log(vocabulary size); far past it the run has blown up.
    public var divergenceLimit: Double? { 1e4 }

    /// Nothing to prepare: batches are random blocks, so epochs have no order.
    public func beginEpoch(_ epoch: Int, skippingSteps: Int) {}

    /// One `charTrainingStep` on a random batch, or this rank's rows of it under data parallel; returns [loss].
    public func step() -> [Double] {
        let B = options.batchSize, T = options.blockSize
        // the corpus was checked to hold more than one block, so drawing a batch cannot fail
        guard let batch = try? corpus.batch(.train, batchSize: B, blockLength: T, generator: &dataGenerator) else {
            preconditionFailure("CharTrainingTask: the corpus cannot give a batch of \(B) × \(T)")
        }
        if let dataParallel {
            // every rank drew the same global batch from the same generator; it computes its rows
            let rows = dataParallel.rows
            let x = Array(batch.x[(rows.lowerBound * T)..<(rows.upperBound * T)])
            let y = Array(batch.y[(rows.lowerBound * T)..<(rows.upperBound * T)])
            // Dropout: the shared "dropout" generator (identical on every rank, saved by rank 0) gives
            // one seed per step, from which each rank draws its own masks; the same masks on every
            // shard would correlate the rows of different ranks.
            // (Without dropout the generator is left alone, as a single process leaves it.)
            var shared = DefaultRNG.state
            if options.dropout > 0 {
                let stepSeed = shared.next()
                DefaultRNG.state = RandomGenerator(seed: stepSeed ^ UInt64(dataParallel.group.rank) &* 0x9E37_79B9_7F4A_7C15)
            }
            defer { if options.dropout > 0 { DefaultRNG.state = shared } }
            do {
                return [try dataParallelCharTrainingStep(model, optimizer: optimizer, x: x, y: y, batch: rows.count, length: T,
                                                         gradClip: options.gradClip, group: dataParallel.group, reducer: reducer)]
            } catch {
                // an MPI failure mid-step leaves the ranks out of step: end the whole job
                FileHandle.standardError.write(Data("forge: error: rank \(dataParallel.group.rank): \(error)\n".utf8))
                dataParallel.group.abort(code: 1)
            }
        }
        // a non-finite loss applies nothing, and the loop stops on it
        return [charTrainingStep(model, optimizer: optimizer, x: batch.x, y: batch.y, batch: B, length: T, gradClip: options.gradClip)]
    }

    /// Makes this task one rank of `group`, training its share of every batch's `batchSize` rows.
    public func joinDataParallel(_ group: DataParallelGroup) throws {
        dataParallel = (group, try group.shard(ofBatch: options.batchSize))
        reducer = group.overlapsReduction ? OverlappedGradientReducer(group: group, parameters: model.parameters) : nil
    }

    /// True when MPI allows the gradient buckets to be reduced on their own thread (see `joinDataParallel`).
    public var reducesWhileBackwardRuns: Bool { reducer != nil }

    /// 200 characters (or block − 1, if less) sampled at temperature 1 after a newline, with the KV
    /// cache and a generator of its own seeded by the step (so the training generators never move):
    /// what the model writes at this point of training, for TensorBoard's text tab.
    public func evaluationSample() -> String? {
        let length = min(200, model.config.blockSize - 1)
        guard length > 0, let start = corpus.vocabulary.firstIndex(of: "\n") ?? corpus.vocabulary.indices.first else { return nil }
        let wasTraining = model.isTraining
        model.eval()
        defer { model.train(wasTraining) }
        var g = RandomGenerator(seed: options.seed &+ 0x7e47)
        let cache = KVCache(for: model.config, batch: 1)
        var token = Int32(start)
        var text = String.UnicodeScalarView()
        for _ in 0..<length {
            let logits = model.forwardCached([token], count: 1, cache: cache).scalars
            let top = logits.max() ?? 0
            let weights = logits.map { Foundation.exp(Double($0 - top)) }
            var u = Double(g.next() >> 11) / Double(1 << 53) * weights.reduce(0, +)
            var next = weights.count - 1
            for (i, w) in weights.enumerated() { u -= w; if u <= 0 { next = i; break } }
            token = Int32(next)
            text.append(corpus.vocabulary[next])
        }
        return String(text)
    }

    /// [train_loss, val_loss] over `evalIterations` random batches each, from the "eval" generator (split among ranks).
    public func evaluate() throws -> [Double] {
        // data parallel: the same batches as one process draws; rank r computes batches r, r + N, … and the sums meet
        let group = dataParallel?.group
        let train = try estimateCharLoss(model, corpus: corpus, split: .train, batchSize: options.batchSize,
                                         iterations: options.evalIterations, generator: &evaluationGenerator, group: group)
        let val = try estimateCharLoss(model, corpus: corpus, split: .validation, batchSize: options.batchSize,
                                       iterations: options.evalIterations, generator: &evaluationGenerator, group: group)
        return [train, val]
    }
}

// MARK: - data parallel

/// One AdamW step of the char model as rank `group.rank`: x, y are this rank's rows of the global
/// batch (each rank holds as many). The mean loss over the global batch is the mean of the ranks'
/// means, and so is the gradient: the loss is reduced first (so a non-finite loss on any rank makes
/// every rank skip the update together), then backward, the gradients averaged in buckets (with a
/// `reducer`, while backward runs), clipped by their global norm and applied, exactly as
/// `charTrainingStep` on the whole batch would.
@discardableResult
public func dataParallelCharTrainingStep(_ model: CharTransformer, optimizer: AdamW, x: [Int32], y: [Int32], batch B: Int,
                                         length T: Int, gradClip: Float, group: DataParallelGroup,
                                         reducer: OverlappedGradientReducer? = nil) throws -> Double {
    let (_, loss) = model.forward(x, targets: y, batch: B, length: T)
    let value = Double(try group.allreduceSum([loss.item])[0]) / Double(group.size)
    guard value.isFinite else { optimizer.zeroGrad(); return value }
    if let reducer {
        loss.backward(leafGradientReady: reducer.gradientReady)   // buckets reduce while backward goes on
        try reducer.finish()
    } else {
        loss.backward()
        try group.averageGradients(model.parameters)
    }
    if gradClip > 0 { clipGradNorm(model.parameters, maxNorm: gradClip) }
    optimizer.step()
    optimizer.zeroGrad()
    return value
}

