import Foundation
import TensorCore
import DataIO
import Figures

// Hyper-parameter search under a wall-time budget for the char model: synchronous successive
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
///      "dropout": [0, 0.1], "batchSize": [8, 16]}
public struct CharSweepSpace: Codable, Equatable, Sendable {
    /// Lower and upper bound of the log-uniform learning rate.
    public var learningRate: [Float] = [1e-4, 3e-3]
    /// Transformer layer counts to draw from.
    public var layers: [Int] = [2, 3, 4, 6]
    /// Embedding widths to draw from; each must be a multiple of `headSize`.
    public var embedding: [Int] = [64, 128, 192, 256]
    /// Channels per attention head: heads = embedding / headSize.
    public var headSize: Int = 32
    /// Dropout probabilities in [0, 1) to draw from.
    public var dropout: [Float] = [0, 0.1, 0.2]
    /// Blocks per step to draw from.
    public var batchSize: [Int] = [8, 12, 16, 32]

    /// The default space listed on each field.
    public init() {}

    private enum CodingKeys: String, CodingKey { case learningRate, layers, embedding, headSize, dropout, batchSize }

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
    }

    /// What is wrong with the space, or nil.
    public var problem: String? {
        if learningRate.count != 2 || !(learningRate[0] > 0) || !(learningRate[1] >= learningRate[0]) {
            return "learningRate must be [low, high] with 0 < low ≤ high, got \(learningRate)"
        }
        if layers.isEmpty || layers.contains(where: { $0 < 1 }) { return "layers must list positive counts, got \(layers)" }
        if headSize < 1 { return "headSize must be positive, got \(headSize)" }
        if embedding.isEmpty || embedding.contains(where: { $0 < headSize || $0 % headSize != 0 }) {
            return "embedding must list multiples of headSize \(headSize), got \(embedding)"
        }
        if dropout.isEmpty || dropout.contains(where: { !($0 >= 0 && $0 < 1) }) { return "dropout must list values in [0, 1), got \(dropout)" }
        if batchSize.isEmpty || batchSize.contains(where: { $0 < 1 }) { return "batchSize must list positive sizes, got \(batchSize)" }
        return nil
    }

    /// Trial `index`'s configuration: `base` with the sampled fields, drawn from a generator seeded
    /// by (seed, index), so a trial's draw does not depend on how many trials there are.
    public func sample(index: Int, seed: UInt64, base: CharTrainingOptions) -> CharTrainingOptions {
        var g = RandomGenerator(seed: SplitMix64.output(seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15)))
        func pick<T>(_ values: [T]) -> T { values[g.nextInt(below: values.count)] }
        var o = base
        let (lo, hi) = (Double(learningRate[0]), Double(learningRate[1]))
        let u = Double(g.next() >> 11) / Double(1 << 53)
        o.learningRate = Float(Foundation.exp(Foundation.log(lo) + u * (Foundation.log(hi) - Foundation.log(lo))))
        o.minLearningRate = o.learningRate
        o.layers = pick(layers)
        o.embedding = pick(embedding)
        o.heads = o.embedding / headSize
        o.dropout = pick(dropout)
        o.batchSize = pick(batchSize)
        return o
    }
}

/// One trial of a sweep and what each of its rungs measured.
public struct SweepTrial: Codable, Equatable, Sendable {
    /// The trial's number in the sweep (0-based), which also names its run folder `trial-NN`.
    public var index: Int
    /// The sampled settings (as `CharTrainingOptions.metadata` keys and values).
    public var settings: [String: String]
    /// Per finished rung: the cumulative training minutes allotted, the steps reached and the val loss.
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
    /// The val-loss estimate of the weights the rung ended with; `Double.greatestFiniteMagnitude` when it diverged.
    public var valLoss: Double
}

/// The saved state of a sweep (`DIR/sweep.json`).
public struct SweepState: Codable, Equatable, Sendable {
    /// The sweep's whole wall-time budget in minutes (every rung of every trial).
    public var budgetMinutes: Double
    /// The halving factor η: each rung keeps the best ⌈n/η⌉ trials of the previous one.
    public var eta: Int
    /// The seed the trials' configurations are drawn with.
    public var seed: UInt64
    /// The search space the trials were drawn from.
    public var space: CharSweepSpace
    /// Every trial, pruned or alive, in index order.
    public var trials: [SweepTrial]
    /// Wall seconds the sweep has spent so far (over resumes).
    public var elapsedSeconds: Double
}

/// Successive halving of char trials on one corpus under a wall-time budget.
public final class CharSweep {
    /// The text every trial trains and is evaluated on.
    public let corpus: TextCorpus
    /// The options a trial starts from before its sampled fields replace theirs (block size, warm-up, seed …).
    public let base: CharTrainingOptions
    /// The sweep folder: `sweep.json`, one `trial-NN` run folder per trial, and the final outputs.
    public let directory: String
    /// The sweep's progress as saved in `sweep.json` after every finished trial-rung.
    public private(set) var state: SweepState
    /// Progress lines (one per finished trial-rung).
    public var log: (String) -> Void = { StandardOutput.line($0) }

    /// `trials` configurations from `space` (seeded with `seed`), halved by `eta` per rung; the rung
    /// count is 1 + ⌊log_eta(trials)⌋. With `resume`, `DIR/sweep.json` must describe the same sweep.
    public init(corpus: TextCorpus, base: CharTrainingOptions, space: CharSweepSpace, trials: Int, eta: Int,
                budgetMinutes: Double, seed: UInt64, directory: String, resume: Bool) throws {
        if let p = space.problem { throw TrainingError.invalidConfiguration("the search space: \(p)") }
        guard trials >= 2 else { throw TrainingError.invalidValue(field: "trials", value: "\(trials)", requirement: "at least 2") }
        guard eta >= 2 else { throw TrainingError.invalidValue(field: "eta", value: "\(eta)", requirement: "at least 2") }
        guard budgetMinutes.isFinite, budgetMinutes > 0 else {
            throw TrainingError.invalidValue(field: "budgetMinutes", value: "\(budgetMinutes)", requirement: "a positive number of minutes")
        }
        (self.corpus, self.base, self.directory) = (corpus, base, directory)
        let statePath = directory + "/sweep.json"
        if resume, let data = FileManager.default.contents(atPath: statePath) {
            let saved = try JSONDecoder().decode(SweepState.self, from: data)
            guard saved.eta == eta, saved.seed == seed, saved.space == space, saved.trials.count == trials,
                  saved.budgetMinutes == budgetMinutes else {
                throw TrainingError.invalidConfiguration("\(statePath) holds another sweep (\(saved.trials.count) trials, eta \(saved.eta), seed \(saved.seed), \(saved.budgetMinutes) minutes); give its settings, or a new folder")
            }
            state = saved
        } else {
            if FileManager.default.fileExists(atPath: statePath) {
                throw TrainingError.invalidConfiguration("\(directory) already holds a sweep; resume it or choose a new folder")
            }
            let configs = (0..<trials).map { space.sample(index: $0, seed: seed, base: base) }
            state = SweepState(budgetMinutes: budgetMinutes, eta: eta, seed: seed, space: space,
                               trials: configs.enumerated().map { SweepTrial(index: $0, settings: $1.metadata, rungs: [], prunedAfterRung: nil) },
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
                let options = try optionsOfTrial(i)
                let task = try CharTrainingTask(corpus: corpus, options: options)
                let previous = state.trials[i].rungs.last?.minutes ?? 0
                var training = task.trainingOptions(runDirectory: trialDirectory(i), minutes: share,
                                                    resume: FileManager.default.fileExists(atPath: trialDirectory(i) + "/checkpoint.safetensors"))
                training.showProgress = false
                training.evaluateEvery = 0
                var loss = Double.greatestFiniteMagnitude   // a diverged trial ranks last (JSON has no infinity)
                var step = 0
                do {
                    let summary = try TrainingLoop(task: task, options: training, log: { _ in }).run()
                    if summary.outcome == .interrupted { interrupted = true; break }
                    // the rung's objective: the val-loss estimate of the weights the rung ended with
                    let value = try summary.lastEvaluation["val_loss"] ?? task.evaluate()[1]
                    if value.isFinite { loss = value }
                    step = summary.state.step
                } catch let TrainingError.diverged(at, metric, value, _) {
                    log("rung \(r + 1) trial \(String(format: "%02d", i)): diverged at step \(at) (\(metric) \(value)); ranked last")
                    step = at
                }
                state.trials[i].rungs.append(SweepRungResult(rung: r, minutes: previous + share, step: step, valLoss: loss))
                state.elapsedSeconds = spentBefore + Date().timeIntervalSince(start)
                try save()
                log(String(format: "rung %d/%d trial %02d: %@ → val loss %.4f at step %d (%.1f min so far)", r + 1, rungCount, i,
                           flags(options), loss, step, state.elapsedSeconds / 60))
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

    /// Trial `i`'s training options (the sampled settings on the base options, a long schedule
    /// whose rate stays at its sampled value after warm-up, evaluation only at the end of a rung).
    public func optionsOfTrial(_ i: Int) throws -> CharTrainingOptions {
        guard var o = CharTrainingOptions(metadata: state.trials[i].settings) else {
            throw TrainingError.invalidConfiguration("sweep.json: trial \(i) has no settings")
        }
        o.iterations = 1_000_000   // the rung's minutes end the run, not the step count
        o.decayIterations = 0
        o.evalEvery = 0
        if let problem = o.problem() { throw problem }
        return o
    }

    /// The flags that reproduce trial `i`'s configuration with `forge train char`.
    public func flags(_ o: CharTrainingOptions) -> String {
        String(format: "--layers %d --heads %d --embd %d --block %d --batch %d --dropout %g --lr %.3g --min-lr %.3g",
               o.layers, o.heads, o.embedding, o.blockSize, o.batchSize, Double(o.dropout), Double(o.learningRate), Double(o.minLearningRate))
    }

    private func save() throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try FileIO.writeAtomically(Array(try encoder.encode(state)), to: directory + "/sweep.json")
    }

    /// `results.csv`, `sweep.png` (val loss against training minutes per trial, pruned ones dashed
    /// in the legend as "(pruned)"), `best_flags.txt` and `best.safetensors`.
    private func writeOutputs(best: Int) throws {
        var csv = "trial,rung,minutes,step,val_loss,pruned_after_rung,layers,heads,embd,batch,dropout,lr\n"
        var series: [LinePlot.Series] = []
        for t in state.trials {
            let o = try optionsOfTrial(t.index)
            for r in t.rungs {
                csv += String(format: "%d,%d,%.3f,%d,%.4f,%@,%d,%d,%d,%d,%g,%.4g\n", t.index, r.rung, r.minutes, r.step, r.valLoss,
                              t.prunedAfterRung.map(String.init) ?? "", o.layers, o.heads, o.embedding, o.batchSize, Double(o.dropout), Double(o.learningRate))
            }
            let name = String(format: "trial %02d%@", t.index, t.index == best ? " (best)" : t.prunedAfterRung != nil ? " (pruned)" : "")
            series.append(LinePlot.Series(name: name, x: t.rungs.map(\.minutes), y: t.rungs.map(\.valLoss)))
        }
        try FileIO.writeAtomically(Array(csv.utf8), to: directory + "/results.csv")
        let plot = LinePlot(title: "sweep: val loss against training minutes", xLabel: "training minutes", yLabel: "val loss", series: series)
        try plot.write(to: directory + "/sweep.png")
        try FileIO.writeAtomically(Array((flags(try optionsOfTrial(best)) + "\n").utf8), to: directory + "/best_flags.txt")
        let source = trialDirectory(best) + "/checkpoint.safetensors"
        let target = directory + "/best.safetensors"
        try? FileManager.default.removeItem(atPath: target)
        try FileManager.default.copyItem(atPath: source, toPath: target)
    }
}
