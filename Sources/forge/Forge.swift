import ArgumentParser
import TensorCore

/// The `forge` command. (Minimal root for the char branch; the shared root lives on another branch.)
@main
struct Forge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forge",
        abstract: "Forge: a generative-model workbench.",
        subcommands: [Train.self, Sample.self, Eval.self, Bench.self, Import.self])

    static func main() {
        BLAS.configure()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Train a model.", subcommands: [TrainChar.self])
}

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Sample from a trained model.", subcommands: [SampleChar.self])
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Evaluate a trained model.", subcommands: [EvalChar.self])
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure training and sampling speed.", subcommands: [BenchChar.self])
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Convert checkpoints from other tools.", subcommands: [ImportNanoGPT.self])
}
