import ArgumentParser
import Foundation
import TensorCore
import DataIO
import Models
import Training
import Figures
import Metrics
import Sampling

// `forge generate images` and `forge generate text`: trained models become datasets.

extension DataParallelGroup: GenerationGroup {}

/// `forge generate …` as the one process, or under `mpirun -np N` as one rank of a job that splits
/// the batches (`BatchSchedule`): `body` gets the group (nil outside mpirun) and a `say` that prints
/// on rank 0 only. A run that stops on every rank together (`CollectiveGenerationStop`) shuts MPI
/// down; rank 0 then throws the error to report, the other ranks exit with status 1 quietly.
func runGeneration(_ body: (DataParallelGroup?, _ say: @escaping (String) -> Void) throws -> Void) throws {
    guard let group = try DataParallelGroup.fromEnvironment() else { return try body(nil, { say($0) }) }
    do {
        try body(group, group.isRoot ? { say($0) } : { _ in })
        group.finalize()
    } catch let stop as CollectiveGenerationStop {
        group.finalize()
        if let error = stop.underlying { throw error }
        throw ExitCode(1)
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Generate a synthetic dataset (a folder of items plus manifest.csv) from a checkpoint.",
        subcommands: [GenerateImages.self, GenerateText.self, GenerateAudio.self])
}

struct GenerateImages: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "images",
        abstract: "Write N images from a GAN or VAE checkpoint: DIR/<class>/<index>.png (conditional: an ImageFolder training set) or DIR/<index>.png.")

    @Option(help: "The checkpoint (.safetensors) or a run folder (default: the shipped Fashion-MNIST conditional GAN).",
            completion: .file(extensions: ["safetensors"])) var checkpoint: String = shippedGANCheckpointName
    @Option(help: "Number of images (ignored with --per-class); conditional models give item i the class i mod K.") var count: Int?
    @Option(help: "Images per class (conditional models): count = per-class × classes.") var perClass: Int?
    @Option(help: "Output folder.", completion: .file()) var out: String
    @Option(help: "Run seed; item i uses a seed derived from (seed, i).") var seed: UInt64 = defaultSeed
    @Option(help: "Image format (png).") var format: String = "png"
    @Option(help: "Images per forward pass (recorded in the manifest; keep it when resuming).") var batch: Int = 100
    @Flag(help: "Continue an interrupted run: keep valid items, generate the missing ones.") var resume = false
    @Option(help: "Recreate only item N (same arguments as the original run).") var only: Int?
    @Option(help: "Also write a preview grid PNG of the written files: one row per class (10 per row).") var grid: String?

    func validate() throws {
        guard format.lowercased() == "png" else { throw ValidationError("--format: only png is supported") }
        guard count != nil || perClass != nil else { throw ValidationError("give --count or --per-class") }
        if let count, count < 1 { throw ValidationError("--count must be positive") }
        if let perClass, perClass < 1 { throw ValidationError("--per-class must be positive") }
        guard batch >= 1 else { throw ValidationError("--batch must be positive") }
        if resume && only != nil { throw ValidationError("give --resume or --only, not both") }
    }

    func run() throws {
        try runGeneration { group, say in
            let checkpoint = resolveShippedGAN(self.checkpoint)
            let source = try ImageSampler.open(checkpoint: checkpoint)
            let options = ImageGenerationOptions(count: count ?? 0, perClass: perClass, seed: seed, batchSize: batch,
                                                 resume: resume, only: only)
            let generator = try ImageDatasetGenerator(source: source, checkpointPath: Checkpoint.file(at: checkpoint), options: options, outputDirectory: out)
            let classes = source.classNames
            say("generate images: \(generator.items.count) × \(source.channels)x\(source.imageSize)x\(source.imageSize) from \(source.modelKind) "
                  + (classes.isEmpty ? "(unconditional)" : "(\(classes.count) classes)")
                  + " → \(out) · checkpoint sha256 \(generator.checkpointSHA256.prefix(16))…")
            let start = Date()
            var lastLine = Date.distantPast
            let report = try generator.run(group: group) { done, total in
                let now = Date()
                guard now.timeIntervalSince(lastLine) > 2 || done == total else { return }
                lastLine = now
                say(String(format: "  %d/%d images, %.1f images/s", done, total, Double(done) / max(1e-9, now.timeIntervalSince(start))))
            }
            guard group?.isRoot != false else { return }
            say(String(format: "wrote %d images (%@kept %d from an earlier run) in %.1f s: %.1f images/s; manifest %@/manifest.csv%@",
                         report.written, only != nil ? "--only, " : "", report.kept, report.seconds, report.itemsPerSecond, out,
                         group.map { "; \($0.size) ranks" } ?? ""))
            if let grid {
                try writePreviewGrid(generator, to: grid)
                say("preview grid: \(grid)")
            }
        }
    }
}

/// A grid of the dataset as written on disk (read back from the PNG files, so it shows exactly the
/// data): a row per class of its first `columns` items (fewer when a class has fewer) with the class
/// name in the left margin, or the first 10 rows of an unconditional run.
func writePreviewGrid(_ generator: ImageDatasetGenerator, columns: Int = 10, to path: String) throws {
    let classNames = generator.source.classNames
    var chosen: [PlannedItem] = [], rowLabels: [String] = [], shownColumns = columns
    if classNames.count > 1 {
        let perClass = classNames.indices.map { c in Array(generator.items.filter { $0.label == c }.prefix(columns)) }
        shownColumns = max(1, perClass.map(\.count).min() ?? columns)
        chosen = perClass.flatMap { $0.prefix(shownColumns) }
        rowLabels = classNames
    } else {
        chosen = Array(generator.items.prefix(10 * columns))
    }
    let tensors = try chosen.map { try ImageCodec.load(path: generator.outputDirectory + "/" + $0.file).tensor(range: -1...1) }
    try LabelledGrid.write(images: Tensor.stack(tensors), rowLabels: rowLabels, columns: shownColumns, range: .minusOneToOne, to: path)
}

extension TextUnit: ExpressibleByArgument {}

struct GenerateText: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "text",
        abstract: "Write N texts from a char-transformer checkpoint: DIR/<index><ext> (or DIR/samples.jsonl with --jsonl) and DIR/manifest.csv.")

    @Option(help: "The char checkpoint (.safetensors) or a run folder.", completion: .file(extensions: ["safetensors"])) var checkpoint: String
    @Option(help: "Number of texts.") var count: Int
    @Option(help: "Characters generated per text, at most (fewer when a --stop string or the --unit ends it).") var length: Int
    @Option(help: ArgumentHelp("Where a text ends: length (after --length characters) or function (a whole top-level unit of Python-like code: stop at two blank lines, or before the next line that starts at column 0 with a letter, _ or @, i.e. a new def, class, decorator or statement; the first generated line never ends it; cut at --length if still open). E.g. --prompt 'def ' --unit function gives one function per item.", valueName: "length|function"))
    var unit: TextUnit = .length
    @Option(help: "Output folder.", completion: .file()) var out: String
    @Option(help: "Text every item starts from (kept in the item).") var prompt: String = "\n"
    @Option(help: "File extension of the items.") var ext: String = ".txt"
    @Option(help: "End each item before the first occurrence of this separator (escapes \\n and \\t are understood), e.g. \"\\n\\n\".") var splitOn: String?
    @Flag(help: "Write one samples.jsonl ({index, seed, text} per line) instead of one file per item.") var jsonl = false
    @Option(help: "Run seed; item i uses a seed derived from (seed, i).") var seed: UInt64 = defaultSeed
    @OptionGroup var sampling: TextSamplingFlags
    @Option(help: "Sequences decoded side by side (recorded in the manifest; keep it when resuming).") var batch: Int = 16
    @Flag(help: "Continue an interrupted run: keep the items present, generate the missing ones.") var resume = false
    @Option(help: "Recreate only item N (same arguments as the original run).") var only: Int?
    @Option(name: .customLong("validate"), help: ArgumentHelp("Check every item with this shell command, {} standing for the item's file; exit 0 = valid, e.g. 'python3 -m py_compile {}'. Runs beside generation, several checks at a time; rejected items are deleted (see --keep-invalid); each item's verdict and the checker's message (its first stderr line, and the last when there are more) go to DIR/manifest.csv's valid and check_error columns. For whole functions add --unit function.", valueName: "command"))
    var checkCommand: String?
    @Flag(help: "With --validate: keep the items the checker rejects.") var keepInvalid = false
    @Option(help: "With --validate: seconds one check may take before the run fails.") var validateTimeout: Double = 30

    func validate() throws {
        guard count >= 1, length >= 1, batch >= 1 else { throw ValidationError("--count, --length and --batch must be positive") }
        if let checkCommand {
            guard checkCommand.contains("{}") else { throw ValidationError("--validate needs a {} standing for the item's file, e.g. 'python3 -m py_compile {}'") }
            guard !jsonl else { throw ValidationError("--validate checks one file per item; drop --jsonl") }
        } else if keepInvalid {
            throw ValidationError("--keep-invalid only applies with --validate")
        }
        guard validateTimeout > 0, validateTimeout.isFinite else { throw ValidationError("--validate-timeout must be a positive number of seconds, got \(validateTimeout)") }
        if resume && only != nil { throw ValidationError("give --resume or --only, not both") }
    }

    func run() throws {
        let unescape = unescapeControlCharacters
        let options = TextGenerationOptions(count: count, length: length, unit: unit, prompt: unescape(prompt), seed: seed, batchSize: batch,
                                            fileExtension: ext.hasPrefix(".") || ext.isEmpty ? ext : "." + ext,
                                            splitOn: splitOn.map(unescape), jsonl: jsonl,
                                            sampling: sampling.options,
                                            resume: resume, only: only,
                                            checkCommand: checkCommand, keepInvalid: keepInvalid, checkTimeLimit: validateTimeout)
        do {
          try runGeneration { group, say in
            let generator = try TextDatasetGenerator(checkpointPath: Checkpoint.file(at: checkpoint), options: options, outputDirectory: out)
            let c = generator.checkpoint.model.config
            say("generate text: \(count) × \(length) characters from a char transformer (\(c.layers) layers, \(c.embedding) wide, "
                  + "vocabulary \(c.vocabSize)) → \(out) · checkpoint sha256 \(generator.checkpointSHA256.prefix(16))…")
            let start = Date()
            var lastLine = Date.distantPast
            let (report, characters, validation) = try generator.run(group: group) { done, total, chars in
                let now = Date()
                guard now.timeIntervalSince(lastLine) > 2 || done == total else { return }
                lastLine = now
                say(String(format: "  %d/%d texts, %.0f chars/s", done, total, Double(chars) / max(1e-9, now.timeIntervalSince(start))))
            }
            guard group?.isRoot != false else { return }
            say(String(format: "wrote %d texts (kept %d from an earlier run), %d generated characters in %.1f s: %.0f chars/s; manifest %@/manifest.csv%@",
                         report.written, report.kept, characters, report.seconds, Double(characters) / max(1e-9, report.seconds), out,
                         group.map { "; \($0.size) ranks" } ?? ""))
            if let validation {
                say(String(format: "valid: %d of %d checked items (%.1f %%)%@; verdicts in %@/manifest.csv (columns valid, check_error)",
                             validation.valid, validation.checked, 100 * validation.validRate,
                             keepInvalid ? ", invalid ones kept" : ", invalid ones deleted", out))
            }
          }
        } catch let error as TextSamplingError {
            throw ValidationError(flagMessage(error))
        } catch let error as CheckerError {
            // bad input: the --validate command
            if case .timedOut = error { throw ValidationError("\(error) (--validate-timeout \(validateTimeout))") }
            throw ValidationError("--validate: \(error)")
        }
    }
}
