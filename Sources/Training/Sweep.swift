import Foundation
import TensorCore
import DataIO
import Figures

// Hyper-parameter search under a wall-time budget (char, VAE and GAN): synchronous successive
// halving (Jamieson & Talwalkar 2016; the synchronous form of ASHA, Li et al. 2020). Every trial is
// an ordinary training run in its own run folder (checkpoint, metrics.csv, loss.png); a rung
// continues each surviving run from its checkpoint with more minutes, so no work is repeated. The
// sweep's own state (`sweep.json`) records every finished (trial, rung), so an interrupted sweep
// resumes without redoing them.

/// The search space of a char sweep. Each field lists the values drawn uniformly, except the
/// learning rate, drawn log-uniformly between its two bounds. As JSON (`--space FILE`) every field
/// is optional and replaces the default:
///
///     {"learningRate": [1e-4, 3e-3], "layers": [2, 4], "embedding": [64, 128], "headSize": 32,
///      "dropout": [0, 0.1], "batchSize": [8, 16], "blockSize": [64, 256], "firstTrialIsBase": false}
///
/// The default space is a neighbourhood of the baby recipe (`forge train char`'s defaults: 4 layers,
/// 128 wide, block 64, batch 12, rate 1e-3): a factor of 3 either way in the rate, one layer fewer
/// to two more, and so on. Trials of wildly different cost compete badly under successive halving,
/// whose first rung is short: there a model that trains 5× slower ranks last whatever it would
/// reach (a 40-minute sweep's 6-layer, 256-wide trials got 67–349 steps in their first rung).
public struct CharSweepSpace: Codable, Equatable, Sendable {
    /// Lower and upper bound of the log-uniform learning rate.
    public var learningRate: [Float] = [3e-4, 3e-3]
    /// Transformer layer counts to draw from.
    public var layers: [Int] = [3, 4, 5, 6]
    /// Embedding widths to draw from; each must be a multiple of `headSize`.
    public var embedding: [Int] = [96, 128, 160, 192]
    /// Channels per attention head: heads = embedding / headSize.
    public var headSize: Int = 32
    /// Dropout probabilities in [0, 1) to draw from.
    public var dropout: [Float] = [0, 0.1]
    /// Blocks per step to draw from.
    public var batchSize: [Int] = [8, 12, 16, 24]
    /// Block sizes (context lengths) to draw from: nanoGPT's `block_size`.
    public var blockSize: [Int] = [64, 128]
    /// Whether trial 0 trains the base options as they are (the incumbent, as Optuna's
    /// `enqueue_trial` or Vizier's default trial) rather than a draw, so a drawn config is picked
    /// only when it beat the recipe at every rung. The base need not lie inside the space.
    public var firstTrialIsBase = true

    /// The default space listed on each field.
    public init() {}

    private enum CodingKeys: String, CodingKey { case learningRate, layers, embedding, headSize, dropout, batchSize, blockSize, firstTrialIsBase }

    /// Decodes a `--space` JSON object; a missing field keeps its default.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = CharSweepSpace()
        learningRate = try c.decodeIfPresent([Float].self, forKey: .learningRate) ?? d.learningRate
        layers = try c.decodeIfPresent([Int].self, forKey: .layers) ?? d.layers
        embedding = try c.decodeIfPresent([Int].self, forKey: .embedding) ?? d.embedding
        headSize = try c.decodeIfPresent(Int.self, forKey: .headSize) ?? d.headSize
        dropout = try c.decodeIfPresent([Float].self, forKey: .dropout) ?? d.dropout
        batchSize = try c.decodeIfPresent([Int].self, forKey: .batchSize) ?? d.batchSize
        blockSize = try c.decodeIfPresent([Int].self, forKey: .blockSize) ?? d.blockSize
        firstTrialIsBase = try c.decodeIfPresent(Bool.self, forKey: .firstTrialIsBase) ?? d.firstTrialIsBase
    }

    /// What is wrong with the space, or nil.
    public var problem: String? {
        if let p = logUniformBoundsProblem(learningRate, name: "learningRate") { return p }
        if layers.isEmpty || layers.contains(where: { $0 < 1 }) { return "layers must list positive counts, got \(layers)" }
        if headSize < 1 { return "headSize must be positive, got \(headSize)" }
        if embedding.isEmpty || embedding.contains(where: { $0 < headSize || $0 % headSize != 0 }) {
            return "embedding must list multiples of headSize \(headSize), got \(embedding)"
        }
        if dropout.isEmpty || dropout.contains(where: { !($0 >= 0 && $0 < 1) }) { return "dropout must list values in [0, 1), got \(dropout)" }
        if batchSize.isEmpty || batchSize.contains(where: { $0 < 1 }) { return "batchSize must list positive sizes, got \(batchSize)" }
        if blockSize.isEmpty || blockSize.contains(where: { $0 < 1 }) { return "blockSize must list positive sizes, got \(blockSize)" }
        return nil
    }

    /// Trial `index`'s configuration: `base` with the sampled fields, drawn from a generator seeded
    /// by (seed, index), so a trial's draw does not depend on how many trials there are. The block
    /// size is drawn last. With `firstTrialIsBase`, trial 0 is `base` itself. Every trial's rate is
    /// constant after warm-up (the floor equals the peak) until the sweep's last rung.
    public func sample(index: Int, seed: UInt64, base: CharTrainingOptions) -> CharTrainingOptions {
        var o = base
        if index == 0 && firstTrialIsBase {
            o.minLearningRate = o.learningRate
            return o
        }
        var g = RandomGenerator.sweepTrial(index: index, seed: seed)
        o.learningRate = g.logUniform(learningRate)
        o.minLearningRate = o.learningRate
        o.layers = g.pick(layers)
        o.embedding = g.pick(embedding)
        o.heads = o.embedding / headSize
        o.dropout = g.pick(dropout)
        o.batchSize = g.pick(batchSize)
        o.blockSize = g.pick(blockSize)
        return o
    }
}

/// A model family a sweep can search: it draws each trial's settings from its space and turns
/// settings into an ordinary training run, with the rung's objective (lower is better).
public protocol SweepFamily: AnyObject {
    /// The family's name, as in `forge train KIND` ("char", "vae", "gan").
    var kind: String { get }
    /// The search space as JSON: recorded in `sweep.json`, and a resume must find the same.
    var spaceJSON: String { get }
    /// What the objective measures, for the table and the plot ("val loss", "test −ELBO", "FD").
    var objectiveName: String { get }
    /// The objective's results.csv column ("val_loss", "test_neg_elbo", "fd").
    var objectiveColumn: String { get }
    /// The results.csv columns that describe a trial, each a (column name, settings key) pair.
    var settingColumns: [(name: String, key: String)] { get }
    /// Trial `index`'s settings, drawn with a generator seeded by (seed, index), so a trial's draw
    /// does not depend on how many trials there are.
    func settings(index: Int, seed: UInt64) throws -> [String: String]
    /// The training run of a trial with `settings` in `runDirectory`, for `minutes` more of training
    /// (continuing its checkpoint when `resume`), and how to measure the objective once it stopped.
    /// `decay` is set for the last rung: a family whose recipe decays its rate does it then.
    func trial(settings: [String: String], runDirectory: String, minutes: Double, resume: Bool, decay: SweepDecay?) throws -> SweepTrialRun
    /// The `forge train KIND` flags that reproduce a trial's settings.
    func flags(_ settings: [String: String]) throws -> String
}

/// The learning-rate decay of a trial's last rung. Earlier rungs train at the trial's peak rate,
/// so that a run can be continued and compared at any length; the last rung's length is known, so
/// it decays there (warm-up, stable, decay: Hägele et al. 2024 find it matches a cosine schedule
/// of the whole length), and the sweep's best checkpoint is a finished model.
public struct SweepDecay: Equatable, Sendable {
    /// The step the rung starts at: the rate holds until here.
    public var startStep: Int
    /// The step the rate reaches its floor at: the start plus the rung's minutes at the trial's
    /// steps per minute in its previous rung.
    public var endStep: Int
    /// A decay from `startStep` to `endStep`.
    public init(startStep: Int, endStep: Int) { (self.startStep, self.endStep) = (startStep, endStep) }
}

/// One rung of one trial: the task, the loop's options, and the objective of the trained task.
public struct SweepTrialRun {
    /// The trial's task (a fresh model, or the one `options.resume` loads).
    public var task: any TrainingTask
    /// The loop options (run folder, minutes, resume); the sweep turns progress and evaluations off.
    public var options: TrainingOptions
    /// The objective after the rung (lower is better), from the loop's summary and the task.
    public var objective: (TrainingSummary) throws -> Double
    /// A run of `task` with `options`, measured by `objective`.
    public init(task: any TrainingTask, options: TrainingOptions, objective: @escaping (TrainingSummary) throws -> Double) {
        (self.task, self.options, self.objective) = (task, options, objective)
    }
}

/// A uniform draw in [0, 1) and a log-uniform draw for sweep spaces.
extension RandomGenerator {
    /// A log-uniform value between `bounds[0]` and `bounds[1]`.
    mutating func logUniform(_ bounds: [Float]) -> Float {
        let (lo, hi) = (Double(bounds[0]), Double(bounds[1]))
        let u = Double(next() >> 11) / Double(1 << 53)
        return Float(Foundation.exp(Foundation.log(lo) + u * (Foundation.log(hi) - Foundation.log(lo))))
    }

    /// One of `values`, uniformly.
    mutating func pick<T>(_ values: [T]) -> T { values[nextInt(below: values.count)] }

    /// The generator of trial `index` of a sweep seeded with `seed`.
    static func sweepTrial(index: Int, seed: UInt64) -> RandomGenerator {
        RandomGenerator(seed: SplitMix64.output(seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15)))
    }
}

/// What is wrong with `[low, high]` bounds of a log-uniform draw, or nil.
func logUniformBoundsProblem(_ bounds: [Float], name: String) -> String? {
    guard bounds.count == 2, bounds[0] > 0, bounds[1] >= bounds[0], bounds[1].isFinite else {
        return "\(name) must be [low, high] with 0 < low ≤ high, got \(bounds)"
    }
    return nil
}

/// One trial of a sweep and what each of its rungs measured.
public struct SweepTrial: Codable, Equatable, Sendable {
    /// The trial's number in the sweep (0-based), which also names its run folder `trial-NN`.
    public var index: Int
    /// The sampled settings (for char, `CharTrainingOptions.metadata` keys and values).
    public var settings: [String: String]
    /// Per finished rung: the cumulative training minutes allotted, the steps reached and the objective.
    public var rungs: [SweepRungResult]
    /// The rung after which the trial was pruned (nil while it survives).
    public var prunedAfterRung: Int?
}

/// A finished rung of one trial.
public struct SweepRungResult: Codable, Equatable, Sendable {
    /// The rung (0-based) this result belongs to.
    public var rung: Int
    /// The trial's cumulative training minutes allotted up to the end of this rung.
    public var minutes: Double
    /// The trial's total optimisation steps at the end of the rung (or the step it diverged at).
    public var step: Int
    /// The objective (val loss, −ELBO, FD) of the weights the rung ended with;
    /// `Double.greatestFiniteMagnitude` when it diverged. Stored as `valLoss` in sweep.json.
    public var valLoss: Double
}

/// The saved state of a sweep (`DIR/sweep.json`).
public struct SweepState: Codable, Equatable, Sendable {
    /// The family searched ("char", "vae", "gan").
    public var kind: String
    /// The sweep's whole wall-time budget in minutes (every rung of every trial).
    public var budgetMinutes: Double
    /// The halving factor η: each rung keeps the best ⌈n/η⌉ trials of the previous one.
    public var eta: Int
    /// The seed the trials' configurations are drawn with.
    public var seed: UInt64
    /// The search space the trials were drawn from, as the family's JSON.
    public var space: String
    /// Every trial, pruned or alive, in index order.
    public var trials: [SweepTrial]
    /// Wall seconds the sweep has spent so far (over resumes).
    public var elapsedSeconds: Double
}

/// Successive halving of one family's trials under a wall-time budget.
public class HyperparameterSweep {
    /// What is searched: the space, the trials' runs and their objective.
    public let family: any SweepFamily
    /// The sweep folder: `sweep.json`, one `trial-NN` run folder per trial, and the final outputs.
    public let directory: String
    /// The sweep's progress as saved in `sweep.json` after every finished trial-rung.
    public private(set) var state: SweepState
    /// Progress lines (one per finished trial-rung).
    public var log: (String) -> Void = { StandardOutput.line($0) }

    /// `trials` configurations drawn from the family's space (seeded with `seed`), halved by `eta`
    /// per rung; the rung count is 1 + ⌊log_eta(trials)⌋. With `resume`, `DIR/sweep.json` must
    /// describe the same sweep.
    public init(family: any SweepFamily, trials: Int, eta: Int, budgetMinutes: Double, seed: UInt64, directory: String, resume: Bool) throws {
        guard trials >= 2 else { throw TrainingError.invalidValue(field: "trials", value: "\(trials)", requirement: "at least 2") }
        guard eta >= 2 else { throw TrainingError.invalidValue(field: "eta", value: "\(eta)", requirement: "at least 2") }
        guard budgetMinutes.isFinite, budgetMinutes > 0 else {
            throw TrainingError.invalidValue(field: "budgetMinutes", value: "\(budgetMinutes)", requirement: "a positive number of minutes")
        }
        (self.family, self.directory) = (family, directory)
        let statePath = directory + "/sweep.json"
        if resume, let data = FileManager.default.contents(atPath: statePath) {
            guard let saved = try? JSONDecoder().decode(SweepState.self, from: data) else {
                throw TrainingError.invalidConfiguration("\(statePath) is not a sweep state this version can resume")
            }
            guard saved.kind == family.kind, saved.eta == eta, saved.seed == seed, saved.space == family.spaceJSON,
                  saved.trials.count == trials, saved.budgetMinutes == budgetMinutes else {
                throw TrainingError.invalidConfiguration("\(statePath) holds another sweep (\(saved.kind), \(saved.trials.count) trials, eta \(saved.eta), seed \(saved.seed), \(saved.budgetMinutes) minutes); give its settings, or a new folder")
            }
            state = saved
        } else {
            if FileManager.default.fileExists(atPath: statePath) {
                throw TrainingError.invalidConfiguration("\(directory) already holds a sweep; resume it or choose a new folder")
            }
            let drawn = try (0..<trials).map { try family.settings(index: $0, seed: seed) }
            state = SweepState(kind: family.kind, budgetMinutes: budgetMinutes, eta: eta, seed: seed, space: family.spaceJSON,
                               trials: drawn.enumerated().map { SweepTrial(index: $0, settings: $1, rungs: [], prunedAfterRung: nil) },
                               elapsedSeconds: 0)
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// Rungs of this sweep: 1 plus how often ⌈n/η⌉ is taken while n ≥ η (9 trials at η = 3 → 3 rungs).
    public var rungCount: Int {
        var r = 1, n = state.trials.count
        while n >= state.eta { n = (n + state.eta - 1) / state.eta; r += 1 }
        return r
    }

    /// The trials alive at rung `r` (all at 0; then the best ⌈n/η⌉ of the previous rung's).
    func survivors(atRung r: Int) -> [Int] {
        var alive = Array(state.trials.indices)
        for rung in 0..<r {
            let ranked = alive.sorted { lossAt(rung, $0) < lossAt(rung, $1) }
            alive = Array(ranked.prefix(max(1, (alive.count + state.eta - 1) / state.eta)))
        }
        return alive
    }

    private func lossAt(_ rung: Int, _ trial: Int) -> Double {
        state.trials[trial].rungs.first { $0.rung == rung }?.valLoss ?? .infinity
    }

    /// Trial `i`'s run folder, `DIR/trial-NN`.
    public func trialDirectory(_ i: Int) -> String { directory + String(format: "/trial-%02d", i) }

    /// The flags that reproduce trial `i` with `forge train KIND`.
    public func flags(ofTrial i: Int) throws -> String { try family.flags(state.trials[i].settings) }

    /// Runs (or resumes) every rung; returns the index of the best trial of the last rung.
    /// Each rung gets an equal share of the budget left, split evenly over its trials; a trial of
    /// rung r trains its share more minutes from where its previous rung stopped.
    @discardableResult
    public func run() throws -> Int {
        let start = Date()
        let spentBefore = state.elapsedSeconds
        var interrupted = false
        for r in 0..<rungCount {
            let alive = survivors(atRung: r)
            let pending = alive.filter { i in !state.trials[i].rungs.contains { $0.rung == r } }
            let left = state.budgetMinutes - (spentBefore + Date().timeIntervalSince(start)) / 60
            let share = max(0.05, left / Double(rungCount - r) / Double(max(pending.count, 1)))
            for i in pending {
                let previous = state.trials[i].rungs.last?.minutes ?? 0
                let decay = r == rungCount - 1 ? predictedDecay(ofTrial: i, minutes: share) : nil
                var run = try family.trial(settings: state.trials[i].settings, runDirectory: trialDirectory(i), minutes: share,
                                           resume: FileManager.default.fileExists(atPath: trialDirectory(i) + "/checkpoint.safetensors"),
                                           decay: decay)
                run.options.showProgress = false
                run.options.evaluateEvery = 0
                var loss = Double.greatestFiniteMagnitude   // a diverged trial ranks last (JSON has no infinity)
                var step = 0
                do {
                    let summary = try TrainingLoop(task: run.task, options: run.options, log: { _ in }).run()
                    if summary.outcome == .interrupted { interrupted = true; break }
                    // the rung's objective, measured on the weights the rung ended with
                    let value = try run.objective(summary)
                    if value.isFinite { loss = value }
                    step = summary.state.step
                } catch let TrainingError.diverged(at, metric, value, _) {
                    log("rung \(r + 1) trial \(String(format: "%02d", i)): diverged at step \(at) (\(metric) \(value)); ranked last")
                    step = at
                }
                state.trials[i].rungs.append(SweepRungResult(rung: r, minutes: previous + share, step: step, valLoss: loss))
                state.elapsedSeconds = spentBefore + Date().timeIntervalSince(start)
                try save()
                log(String(format: "rung %d/%d trial %02d: %@ → %@ %.4f at step %d (%.1f min so far)", r + 1, rungCount, i,
                           try flags(ofTrial: i), family.objectiveName, loss, step, state.elapsedSeconds / 60))
            }
            if interrupted { break }
            // Trials that do not go on to the next rung are marked pruned after this one.
            if r + 1 < rungCount {
                let next = Set(survivors(atRung: r + 1))
                for i in alive where !next.contains(i) && state.trials[i].prunedAfterRung == nil { state.trials[i].prunedAfterRung = r }
                try save()
            }
        }
        state.elapsedSeconds = spentBefore + Date().timeIntervalSince(start)
        try save()
        if interrupted { throw TrainingError.invalidConfiguration("the sweep was interrupted; its finished rungs are saved in \(directory)/sweep.json: run it again with --resume") }
        let last = survivors(atRung: rungCount - 1)
        guard let best = last.min(by: { lossAt(rungCount - 1, $0) < lossAt(rungCount - 1, $1) }) else {
            throw TrainingError.invalidConfiguration("the sweep has no trial")
        }
        try writeOutputs(best: best)
        return best
    }

    /// The last rung's decay of trial `i` for `minutes` more: from the step its previous rung ended
    /// at, over as many steps as that rung's pace gives in `minutes`. Nil without a previous rung.
    func predictedDecay(ofTrial i: Int, minutes: Double) -> SweepDecay? {
        let rungs = state.trials[i].rungs
        guard let last = rungs.last else { return nil }
        let before = rungs.dropLast().last
        let steps = Double(last.step - (before?.step ?? 0)), spent = last.minutes - (before?.minutes ?? 0)
        guard steps > 0, spent > 0 else { return nil }
        return SweepDecay(startStep: last.step, endStep: last.step + max(1, Int((steps / spent * minutes).rounded())))
    }

    private func save() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileIO.writeAtomically(Array(try encoder.encode(state)), to: directory + "/sweep.json")
    }

    /// `results.csv`, `sweep.png` (the objective against training minutes per trial, pruned ones
    /// marked "(pruned)" in the legend), `best_flags.txt` and `best.safetensors`.
    private func writeOutputs(best: Int) throws {
        let columns = family.settingColumns
        var csv = (["trial", "rung", "minutes", "step", family.objectiveColumn, "pruned_after_rung"] + columns.map(\.name)).joined(separator: ",") + "\n"
        var series: [LinePlot.Series] = []
        for t in state.trials {
            for r in t.rungs {
                csv += String(format: "%d,%d,%.3f,%d,%.4f,%@", t.index, r.rung, r.minutes, r.step, r.valLoss, t.prunedAfterRung.map(String.init) ?? "")
                csv += columns.map { "," + csvCell(t.settings[$0.key] ?? "") }.joined() + "\n"
            }
            let name = String(format: "trial %02d%@", t.index, t.index == best ? " (best)" : t.prunedAfterRung != nil ? " (pruned)" : "")
            series.append(LinePlot.Series(name: name, x: t.rungs.map(\.minutes), y: t.rungs.map(\.valLoss)))
        }
        try FileIO.writeAtomically(Array(csv.utf8), to: directory + "/results.csv")
        let plot = LinePlot(title: "\(family.kind) sweep: \(family.objectiveName) against training minutes", xLabel: "training minutes",
                            yLabel: family.objectiveName, series: series)
        try plot.write(to: directory + "/sweep.png")
        try FileIO.writeAtomically(Array((try flags(ofTrial: best) + "\n").utf8), to: directory + "/best_flags.txt")
        let source = trialDirectory(best) + "/checkpoint.safetensors"
        let target = directory + "/best.safetensors"
        try? FileManager.default.removeItem(atPath: target)
        try FileManager.default.copyItem(atPath: source, toPath: target)
    }
}

/// `value` quoted for CSV when it holds a comma or a quote.
private func csvCell(_ value: String) -> String {
    value.contains(",") || value.contains("\"") ? "\"" + value.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : value
}

// MARK: - the char family

/// The char transformer as a sweep family: trials are `CharTrainingOptions` drawn from a
/// `CharSweepSpace`; the objective is the loss, in nats per character, over the same stretch of the
/// validation split for every trial and rung (its first `objectiveCharacters`, cut into blocks as
/// `forge eval char` does), so rankings carry no sampling noise.
public final class CharSweepFamily: SweepFamily {
    /// The text every trial trains and is evaluated on.
    public let corpus: TextCorpus
    /// The options a trial starts from before its sampled fields replace theirs (warm-up, seed …);
    /// its floor-to-peak rate ratio is the one the last rung decays to.
    public let base: CharTrainingOptions
    /// The space the trials are drawn from.
    public let space: CharSweepSpace
    /// How much of the validation split the objective reads (all of it when shorter).
    public let objectiveCharacters: Int
    private let objectiveTokens: [Int32]

    /// A family over `space` on `corpus`; throws when the space is malformed or the validation
    /// split holds no block of the largest size a trial can have.
    public init(corpus: TextCorpus, base: CharTrainingOptions, space: CharSweepSpace, objectiveCharacters: Int = 262_144) throws {
        if let p = space.problem { throw TrainingError.invalidConfiguration("the search space: \(p)") }
        guard objectiveCharacters >= 2 else {
            throw TrainingError.invalidValue(field: "objectiveCharacters", value: "\(objectiveCharacters)", requirement: "at least 2")
        }
        (self.corpus, self.base, self.space, self.objectiveCharacters) = (corpus, base, space, objectiveCharacters)
        objectiveTokens = Array(corpus.validationTokens.prefix(objectiveCharacters))
        // trial 0 may be the base recipe, whose block need not lie in the space
        let block = max(space.blockSize.max() ?? 0, space.firstTrialIsBase ? base.blockSize : 0)
        guard objectiveTokens.count > block else {
            throw TrainingError.invalidConfiguration("the validation split has \(corpus.validationTokens.count) characters, too few for blocks of \(block): use a longer text or smaller blocks")
        }
    }

    /// "char".
    public var kind: String { "char" }
    /// The space as sorted-key JSON.
    public var spaceJSON: String { sortedJSON(space) }
    /// "val loss".
    public var objectiveName: String { "val loss" }
    /// "val_loss".
    public var objectiveColumn: String { "val_loss" }
    /// layers, heads, embd, block, batch, dropout, lr.
    public var settingColumns: [(name: String, key: String)] {
        [("layers", "train.layers"), ("heads", "train.heads"), ("embd", "train.embedding"), ("block", "train.block"),
         ("batch", "train.batch"), ("dropout", "train.dropout"), ("lr", "train.lr")]
    }

    /// The sampled options' `metadata`.
    public func settings(index: Int, seed: UInt64) -> [String: String] { space.sample(index: index, seed: seed, base: base).metadata }

    /// The rate the last rung decays to: the sampled peak times the base options' floor-to-peak ratio
    /// (nanoGPT's min_lr = learning_rate / 10 for the defaults).
    public func floorRate(peak: Float) -> Float {
        base.learningRate > 0 ? peak * min(1, base.minLearningRate / base.learningRate) : peak
    }

    /// Trial options from `settings`: a long schedule whose rate stays at its sampled value after
    /// warm-up, the rung's minutes ending the run, no evaluation inside it; with `decay`, the rate
    /// holds until its start and then decays to `floorRate` at its end.
    public func options(_ settings: [String: String], decay: SweepDecay? = nil) throws -> CharTrainingOptions {
        guard var o = CharTrainingOptions(metadata: settings) else {
            throw TrainingError.invalidConfiguration("sweep.json: a trial has no char settings")
        }
        o.iterations = 1_000_000   // the rung's minutes end the run, not the step count
        o.decayIterations = 0
        o.decayStart = 0
        o.evalEvery = 0
        if let decay {
            o.decayStart = max(decay.startStep, o.warmupIterations)
            o.decayIterations = max(decay.endStep, o.decayStart + 1)
            o.minLearningRate = floorRate(peak: o.learningRate)
        }
        if let problem = o.problem() { throw problem }
        return o
    }

    /// A `CharTrainingTask` run; the objective is the loss over the validation stretch.
    public func trial(settings: [String: String], runDirectory: String, minutes: Double, resume: Bool, decay: SweepDecay?) throws -> SweepTrialRun {
        let task = try CharTrainingTask(corpus: corpus, options: try options(settings, decay: decay))
        return SweepTrialRun(task: task, options: task.trainingOptions(runDirectory: runDirectory, minutes: minutes, resume: resume)) { [objectiveTokens] _ in
            try evaluateCharLoss(task.model, tokens: objectiveTokens)
        }
    }

    /// `--layers … --block … --lr … --min-lr …` for `forge train char`: the sampled peak rate and
    /// the floor the last rung decays to.
    public func flags(_ settings: [String: String]) throws -> String {
        var o = try options(settings)
        o.minLearningRate = floorRate(peak: o.learningRate)
        return flags(o)
    }

    /// The flags of options `o`.
    public func flags(_ o: CharTrainingOptions) -> String {
        String(format: "--layers %d --heads %d --embd %d --block %d --batch %d --dropout %g --lr %.3g --min-lr %.3g",
               o.layers, o.heads, o.embedding, o.blockSize, o.batchSize, Double(o.dropout), Double(o.learningRate), Double(o.minLearningRate))
    }
}

/// `value` as JSON with sorted keys (a stable text to compare on resume).
func sortedJSON<T: Encodable>(_ value: T) -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
}

/// Successive halving of char trials on one corpus: a `HyperparameterSweep` of a `CharSweepFamily`.
public final class CharSweep: HyperparameterSweep {
    /// The char family searched.
    public let charFamily: CharSweepFamily

    /// `trials` configurations from `space` (seeded with `seed`), halved by `eta` per rung; with
    /// `resume`, `DIR/sweep.json` must describe the same sweep.
    public init(corpus: TextCorpus, base: CharTrainingOptions, space: CharSweepSpace, trials: Int, eta: Int,
                budgetMinutes: Double, seed: UInt64, directory: String, resume: Bool, objectiveCharacters: Int = 262_144) throws {
        charFamily = try CharSweepFamily(corpus: corpus, base: base, space: space, objectiveCharacters: objectiveCharacters)
        try super.init(family: charFamily, trials: trials, eta: eta, budgetMinutes: budgetMinutes, seed: seed, directory: directory, resume: resume)
    }

    /// Trial `i`'s training options (`CharSweepFamily.options`).
    public func optionsOfTrial(_ i: Int) throws -> CharTrainingOptions { try charFamily.options(state.trials[i].settings) }

    /// The flags that reproduce options `o` with `forge train char`.
    public func flags(_ o: CharTrainingOptions) -> String { charFamily.flags(o) }
}
