import ArgumentParser
import TensorCore

@main
struct Forge: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forge",
        abstract: "Train generative models on images, text and sound, and generate data from them.",
        version: "0.1.0",
        subcommands: [Bench.self]
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
