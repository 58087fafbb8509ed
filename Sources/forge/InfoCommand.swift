import ArgumentParser
import Foundation
import Models
import Training

// `forge info CKPT|RUNDIR`: what a checkpoint is, from the file alone.

struct Info: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe a checkpoint: kind, config, classes or vocabulary, step, lineage and parameter counts.",
        discussion: "A run folder gives its best.safetensors, else its checkpoint.safetensors. Lineage is what the file records: the checkpoint it was fine-tuned from (file name, sha256, step) and that one's ancestors.")

    @Argument(help: "A checkpoint file or a run folder.", completion: .file()) var checkpoint: String

    func run() throws {
        let summary = try CheckpointSummary(Checkpoint.load(checkpoint))
        let ck = summary.checkpoint
        let s = ck.state
        say("file: \(ck.path)")
        say("kind: \(ck.kind)")
        say("config: \(ck.configJSON)")
        if let vocabulary = summary.vocabulary {
            say("vocabulary: \(vocabulary.count) characters: \(CharCheckpoint.printable(vocabulary))")
        }
        if !summary.classes.isEmpty {
            say("classes: \(summary.classes.count): " + summary.classes.map { "\"\($0)\"" }.joined(separator: ", "))
        }
        var position = "step: \(s.step), epoch \(s.epoch + (s.stepInEpoch > 0 ? 1 : 0))"
        if s.wallSeconds > 0 { position += ", " + formatDuration(s.wallSeconds) + " of training" }
        if let best = s.bestValue { position += String(format: ", best %.4f at step %d", best, s.bestStep ?? 0) }
        say(position)
        if summary.lineage.isEmpty {
            say("lineage: none (trained from scratch)")
        } else {
            say("lineage: \(summary.lineage.count) ancestor\(summary.lineage.count == 1 ? "" : "s"), nearest first")
            for (i, parent) in summary.lineage.enumerated() {
                say("  \(i + 1). \(parent.file) at step \(parent.step), sha256 \(parent.sha256)")
            }
        }
        if !summary.frozenPatterns.isEmpty { say("frozen: " + summary.frozenPatterns.joined(separator: " ")) }
        say("parameters: \(summary.parameterCount)")
        let width = summary.modules.map(\.name.count).max() ?? 0
        for (name, count) in summary.modules {
            say("  \(name.padding(toLength: width, withPad: " ", startingAt: 0))  \(count)")
        }
        for (name, target) in summary.tiedNames.sorted(by: { $0.key < $1.key }) { say("  \(name) is tied to \(target)") }
    }
}

// `forge plot`: one metric of several runs in one PNG.

struct Plot: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw one metric of several runs in one PNG, e.g. the val loss of a fine-tuned run against one from scratch.")

    @Argument(help: "Runs as NAME=RUNDIR (or NAME=metrics.csv); NAME labels the curve.", completion: .directory) var runs: [String]
    @Option(help: "The metrics.csv column to draw.") var metric: String = "val_loss"
    @Option(help: "The x column: step or wall_s.") var x: String = "step"
    @Option(help: "Title of the picture.") var title: String?
    @Option(help: "The PNG to write.", completion: .file(extensions: ["png"])) var out: String

    func run() throws {
        let named = try runs.map { spec -> (name: String, path: String) in
            guard let eq = spec.firstIndex(of: "="), eq != spec.startIndex else {
                throw ValidationError("a run is NAME=RUNDIR, got \(spec)")
            }
            return (String(spec[..<eq]), String(spec[spec.index(after: eq)...]))
        }
        guard !named.isEmpty else { throw ValidationError("give at least one NAME=RUNDIR") }
        try RunComparison.plot(runs: named, metric: metric, x: x, title: title ?? metric, to: out)
        say("wrote \(out)")
    }
}
