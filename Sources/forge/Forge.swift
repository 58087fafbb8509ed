import ArgumentParser
import Foundation
import Training
import TensorCore

/// `forge`: the command-line front end. It only parses arguments and calls the library modules.
/// Each model family keeps its commands in its own file (`GANCommands.swift`, `CharCommands.swift`, …)
/// and registers them in the groups below.
@main
struct Forge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forge",
        abstract: "Forge: train generative models on images, text and sound, and generate data from them.",
        discussion: ForgeExit.table,
        version: "forge 0.1.0",
        subcommands: [Train.self, Sample.self, Generate.self, Eval.self, Bench.self, Import.self, LRFind.self, Sweep.self, Explain.self, Info.self, Plot.self])

    /// BLAS set-up must come first: it may re-exec the process to pick fast OpenBLAS kernels.
    /// Errors print one way for every command: `forge: error: …` on stderr, with the exit codes of
    /// `ForgeExit` (help and `--version` print as usual and exit 0).
    static func main() {
        DataParallelGroup.defaultThreadsPerRank()  // under mpirun: cores ÷ ranks per node, before the thread count is read
        BLAS.configure()
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)
        } catch let error as ValidationError {
            // thrown by a command's own checks: the message says what to change; usage adds nothing
            printError("forge: error: \(error.message)")
            Foundation.exit(ForgeExit.badInput)
        } catch {
            let own = forgeExitCode(for: error)
            if own != 1 {
                printError("forge: error: " + userMessage(error))
                Foundation.exit(own)
            }
            if Self.exitCode(for: error) == .success { Self.exit(withError: error) }  // --help, --version
            var message = Self.fullMessage(for: error)
            if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
            printError("forge: error: " + message)
            Foundation.exit(error is ValidationError || Self.exitCode(for: error) == .validationFailure ? ForgeExit.badInput : 1)
        }
    }
}

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model.",
        subcommands: [TrainGAN.self, TrainVAE.self, TrainChar.self, TrainClassifier.self])
}

struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample from a trained checkpoint.",
        subcommands: [SampleGAN.self, SampleVAE.self, SampleChar.self])
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput (compare with the PyTorch scripts in bench/: make bench).",
        subcommands: [BenchAll.self, BenchCore.self, BenchGAN.self, BenchVAE.self, BenchChar.self])
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a trained checkpoint.",
        subcommands: [EvalVAE.self, EvalChar.self, EvalClassifier.self, EvalSynthetic.self, EvalGAN.self])
}

struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert checkpoints from other tools.",
        subcommands: [ImportNanoGPT.self])
}
