import ArgumentParser
import TensorCore

/// `forge`: the command-line front end. It only parses arguments and calls the library modules.
/// Each model family keeps its commands in its own file (`GANCommands.swift`, …) and registers
/// them in the `train` / `sample` groups below (and `bench` in BenchCommands.swift).
@main
struct Forge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forge",
        abstract: "Train generative models on images, text and sound, and generate data from them.",
        version: "0.1.0",
        subcommands: [Train.self, Sample.self, Bench.self]
    )

    static func main() {
        BLAS.configure()  // may re-exec once to pick fast OpenBLAS kernels
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            exit(withError: error)
        }
    }
}

/// `forge train <family>`.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a model.",
        subcommands: [TrainGAN.self])
}

/// `forge sample <family>`.
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample from a trained checkpoint.",
        subcommands: [SampleGAN.self])
}
