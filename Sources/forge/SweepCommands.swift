import ArgumentParser
import Foundation
import DataIO
import Training

// `forge sweep`: successive halving under a wall-time budget (Training/Sweep.swift); this file only
// parses flags and prints.

struct Sweep: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Search hyper-parameters under a time budget by successive halving.",
        subcommands: [SweepChar.self])
}

struct SweepChar: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "char",
        abstract: "Successive halving of char-model trials within --budget-minutes.",
        discussion: """
            Every trial is an ordinary training run in OUT/trial-NN (checkpoint, metrics.csv, loss.png). \
            Rung 0 trains all --trials; each later rung continues the best 1/--eta of the previous one from \
            its checkpoint. Each rung gets an equal share of the budget left, split evenly over its trials, \
            so the sweep ends within the budget (plus the last evaluations). The objective is the val loss \
            (nanoGPT's estimate over --eval-iters batches) at the end of each rung. A trial's learning rate \
            stays at its sampled value after warm-up (no cosine decay), so rungs of different lengths \
            compare rates fairly; train the chosen config with a decay for the final model.

            Default space: learning rate log-uniform in [1e-4, 3e-3], layers {2, 3, 4, 6}, width {64, 128, \
            192, 256} with 32 channels per head, dropout {0, 0.1, 0.2}, batch {8, 12, 16, 32}. --space FILE \
            replaces any of them with JSON, e.g. {"learningRate": [3e-4, 3e-3], "layers": [4], "embedding": \
            [128, 192], "headSize": 32, "dropout": [0], "batchSize": [12]}.

            Writes OUT/results.csv, OUT/sweep.png (val loss against training minutes, pruned trials marked), \
            OUT/best_flags.txt and OUT/best.safetensors. --resume continues an interrupted sweep without \
            repeating finished rungs.
            """)

    @Option(help: "A UTF-8 text file, or a folder of them.", completion: .file()) var data: String
    @Option(help: "Wall-time budget of the whole sweep, in minutes.") var budgetMinutes: Double
    @Option(help: "Trials in the first rung.") var trials: Int = 9
    @Option(help: "Keep the best 1/eta of the trials at each rung.") var eta: Int = 3
    @Option(help: "A JSON file with the search space (see above).", completion: .file(extensions: ["json"])) var space: String?
    @Option(help: "Block size of every trial.") var block: Int = 64
    @Option(help: "Batches per val-loss estimate.") var evalIters: Int = 20
    @Option(help: "Seed of the trial draws and of every trial's run.") var seed: UInt64 = defaultSeed
    @Option(help: "Sweep folder.", completion: .directory) var out: String
    @Flag(help: "Continue the sweep saved in --out.") var resume = false

    func run() throws {
        var searchSpace = CharSweepSpace()
        if let space {
            guard let bytes = FileManager.default.contents(atPath: space) else { throw ValidationError("cannot read --space \(space)") }
            do { searchSpace = try JSONDecoder().decode(CharSweepSpace.self, from: bytes) } catch {
                throw ValidationError("--space \(space) is not a valid search space: \(error)")
            }
        }
        var base = CharTrainingOptions()
        (base.blockSize, base.evalIterations, base.seed, base.warmupIterations) = (block, evalIters, seed, 50)
        let corpus = try TextCorpus(path: data)
        let sweep = try CharSweep(corpus: corpus, base: base, space: searchSpace, trials: trials, eta: eta,
                                  budgetMinutes: budgetMinutes, seed: seed, directory: out, resume: resume)
        say("sweep: \(trials) trials, eta \(eta), \(sweep.rungCount) rungs, \(budgetMinutes) minutes on \(data) → \(out)")
        let best = try sweep.run()
        say("")
        say(String(format: "%-6@ %-5@ %-8@ %-9@ %@", "trial", "rung", "minutes", "val loss", "config"))
        for t in sweep.state.trials {
            guard let last = t.rungs.last else { continue }
            let o = try sweep.optionsOfTrial(t.index)
            say(String(format: "%-6@ %-5d %-8.2f %-9.4f %@%@", String(format: "%02d", t.index), last.rung, last.minutes, last.valLoss,
                       sweep.flags(o), t.index == best ? "   ← best" : t.prunedAfterRung != nil ? "   (pruned)" : ""))
        }
        say(String(format: "took %.1f of %.1f minutes", sweep.state.elapsedSeconds / 60, budgetMinutes))
        say("best: forge train char --data \(data) \(sweep.flags(try sweep.optionsOfTrial(best)))")
        say("wrote \(out)/results.csv, sweep.png, best_flags.txt, best.safetensors")
    }
}
