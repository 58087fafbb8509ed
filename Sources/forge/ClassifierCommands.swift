import ArgumentParser
import Foundation
import TensorCore
import DataIO
import Models
import Training
import Figures
import Metrics
import Sampling

// `forge train classifier`, `forge eval classifier`, `forge eval synthetic`.

/// Channels for a data folder: 1 for IDX data, 3 otherwise, unless given.
/// `--channels`, or 1 for a folder of IDX files (MNIST-style sets are grey) and 3 otherwise.
func defaultChannels(_ path: String, _ given: Int?) -> Int {
    given ?? (IDX.findFiles(in: path, split: .train) != nil ? 1 : 3)
}

/// "T-shirt/top  91.2%" lines for each class.
private func perClassLines(_ names: [String], _ columns: [(String, ClassificationAccuracy)]) -> [String] {
    let width = max(12, names.map(\.count).max() ?? 0)
    var lines = ["  " + "class".padding(toLength: width, withPad: " ", startingAt: 0)
                 + columns.map { "  " + $0.0.padding(toLength: 10, withPad: " ", startingAt: 0) }.joined()]
    for (i, name) in names.enumerated() {
        lines.append("  " + name.padding(toLength: width, withPad: " ", startingAt: 0)
                     + columns.map { "  " + String(format: "%6.2f%%   ", 100 * $0.1.perClass[i]) }.joined())
    }
    return lines
}

struct TrainClassifier: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classifier",
        abstract: "Train the small CNN classifier (3 conv stages + 2 linear layers) on a labelled image folder or IDX files.")

    @Option(help: "Image folder (class sub-folders = classes) or a folder of MNIST-style IDX files.", completion: .file()) var data: String
    @Option(help: "Image size (a multiple of 8).") var size: Int = 32
    @Option(help: "Channels: 1 or 3 (default: 1 for IDX data, 3 otherwise).") var channels: Int?
    @Option(help: "Batch size.") var batch: Int = 64
    @Option(parsing: .unconditional, help: "Adam learning rate (default 1e-3).") var lr: Float?
    @Option(help: "Channels of the first conv stage (then 2x, 4x).") var width: Int = 16
    @Option(help: "Size of the penultimate feature layer.") var features: Int = 128
    @Flag(help: "Random horizontal flips of training images.") var flip = false
    @OptionGroup var training: RunFlags

    func run() throws {
        try training.refuseFineTuningFlags(except: [], command: "train classifier")
        let runDirectory = training.runDirectory(kind: "classifier", data: data)
        let set = try ImageDataset.load(path: data, size: size, channels: defaultChannels(data, channels))
        say("data: \(set.count) images \(set.channels)x\(set.size)x\(set.size), \(set.classNames.count) classes from \(data), named from \(set.classSource)")
        var config = ClassifierConfig()
        (config.imageSize, config.channels, config.classCount) = (size, set.channels, set.classNames.count)
        (config.width, config.featureDim, config.learningRate, config.seed) = (width, features, lr ?? 1e-3, training.seedValue)
        config.batchSize = batchSizeFitting(batch, items: set.count, noun: "images")
        if let saved = try training.savedConfig(ClassifierConfig.self, kind: "classifier", runDirectory: runDirectory) {
            try refuseResumeChanges([("--lr", lr.map { "\($0)" }, "\(saved.learningRate)"),
                                     ("--seed", training.seed.map { "\($0)" }, "\(saved.seed)")])
            config = saved
        }
        if let problem = config.problem { throw ValidationError(problem) }
        let classifier = ImageClassifier(config)
        say("model: SmallCNN \(config.width)/\(2 * config.width)/\(4 * config.width) channels, \(config.featureDim) features, "
              + "\(classifier.network.parameterCount) parameters · BLAS \(BLAS.coreName), \(Threads.count) threads")
        let task = try ClassifierTrainingTask(classifier: classifier, data: set, randomHorizontalFlip: flip)
        let options = training.options(runDirectory: runDirectory, defaultEpochs: 3, logEvery: 50)
        try runTraining(task, options) { summary in
            say(outcomeWords(summary) + String(format: "; last batch loss %.4f, accuracy %.3f",
                         summary.lastMetrics["loss"] ?? .nan, summary.lastMetrics["accuracy"] ?? .nan))
            if let test = try? ImageDataset.load(path: data, size: config.imageSize, channels: config.channels, split: .test, warn: { _ in }),
               test.classNames == set.classNames {
                let accuracy = ClassificationAccuracy(predictions: classifier.predict(test.images), labels: test.labels, classCount: config.classCount)
                say(String(format: "test accuracy: %.2f%% on %d held-out images", 100 * accuracy.overall, test.count))
            }
        }
    }
}

struct EvalClassifier: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "classifier",
        abstract: "Accuracy (overall and per class) of a `forge train classifier` checkpoint on a labelled image set.")

    @Option(help: "The classifier checkpoint.", completion: .file(extensions: ["safetensors"])) var checkpoint: String
    @Option(help: "Image folder or IDX folder.", completion: .file()) var data: String
    @Option(help: "Which split: test (held-out, default) or train.") var split: String = "test"

    func run() throws {
        do {
            let (classifier, classNames) = try ImageClassifier.load(checkpoint: checkpoint)
            let c = classifier.config
            let set = try ImageDataset.load(path: data, size: c.imageSize, channels: c.channels, split: split == "train" ? .train : .test)
            let aligned = try SyntheticEvaluation.align(set, toClassNames: classNames)
            let accuracy = ClassificationAccuracy(predictions: classifier.predict(aligned.images), labels: aligned.labels, classCount: c.classCount)
            say(String(format: "accuracy: %.2f%% on %d images (%@ split of %@)", 100 * accuracy.overall, set.count, split, data))
            for line in perClassLines(classNames, [("accuracy", accuracy)]) { say(line) }
        }
    }
}

struct EvalSynthetic: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synthetic",
        abstract: "Classification Accuracy Score: train the small CNN on real and on synthetic data, test both on real test data; plus a classifier-feature Fréchet distance.")

    @Option(help: "Real data (image folder or IDX folder); its training split trains the real classifier.", completion: .file()) var real: String
    @Option(help: "Synthetic image folder (class sub-folders, e.g. from `forge generate images`).", completion: .file()) var synthetic: String
    @Option(help: "Real test data (default: the held-out split of --real).", completion: .file()) var test: String?
    @Option(help: "Image size (a multiple of 8).") var size: Int = 32
    @Option(help: "Channels (default: 1 for IDX data, 3 otherwise).") var channels: Int?
    @Option(help: "Epochs of each classifier training.") var epochs: Int = 3
    @Option(help: "Train the real classifier on at most this many real images (seeded subset), e.g. the synthetic set's size.") var realLimit: Int?
    @Option(help: "Batch size.") var batch: Int = 64
    @Option(help: "Seed of the classifiers' weights and data order.") var seed: UInt64 = 1
    @Option(help: "Folder for the classifier checkpoints and metrics.", completion: .directory) var work: String = "checkpoints/eval-synthetic"

    func run() throws {
        do {
            let channelCount = defaultChannels(real, channels)
            let (realSet, testSet) = try loadRealAndTest(real: real, test: test, size: size, channels: channelCount)
            let syntheticSet = try ImageDataset.load(path: synthetic, size: size, channels: channelCount)
            say("real: \(realSet.count) training images, \(testSet.count) test images; synthetic: \(syntheticSet.count) images in \(syntheticSet.classNames.count) classes")
            var config = ClassifierConfig()
            (config.batchSize, config.seed) = (batch, seed)
            let options = SyntheticEvaluationOptions(epochs: epochs, classifier: config, realLimit: realLimit, workDirectory: work)
            let result = try SyntheticEvaluation.run(real: realSet, synthetic: syntheticSet, test: testSet, options: options, log: say)
            try reportSyntheticEvaluation(result, options: options, testCount: testSet.count, csvPath: work + "/results.csv")
        }
    }
}

/// Loads `--real`'s training split and the test set: `--test`'s held-out split when it has one (IDX
/// t10k files, test/ sub-folder), else the whole `--test` folder; without `--test`, `--real`'s held-out split.
private func loadRealAndTest(real: String, test: String?, size: Int, channels: Int) throws -> (ImageSet, ImageSet) {
    let realSet = try ImageDataset.load(path: real, size: size, channels: channels)
    let testSet: ImageSet
    if let test {
        if let heldOut = try? ImageDataset.load(path: test, size: size, channels: channels, split: .test, warn: { _ in }) {
            testSet = heldOut
        } else {
            testSet = try ImageDataset.load(path: test, size: size, channels: channels)
        }
    } else {
        testSet = try ImageDataset.load(path: real, size: size, channels: channels, split: .test)
    }
    return (realSet, testSet)
}

/// Prints what `forge eval synthetic` and `forge eval gan` measure (CAS, the feature Fréchet distance,
/// then the per-class table) and writes the table as CSV to `csvPath`.
private func reportSyntheticEvaluation(_ result: SyntheticEvaluationResult, options: SyntheticEvaluationOptions, testCount: Int,
                                       csvPath: String) throws {
    let featureDim = options.classifier.featureDim
    say("")
    say("Classification Accuracy Score (small CNN, \(options.epochs) epochs each, tested on \(testCount) real test images):")
    say(String(format: "  trained on real      (%6d images): %6.2f%%", result.realTrainCount, 100 * result.realAccuracy.overall))
    say(String(format: "  trained on synthetic (%6d images): %6.2f%%   (CAS; ratio to real %.3f)", result.syntheticTrainCount,
                 100 * result.syntheticAccuracy.overall, result.accuracyRatio))
    say(String(format: "Fréchet distance, real test vs synthetic: %.3f  (real train vs real test: %.3f)",
                 result.featureDistance, result.realToRealDistance))
    say("  computed on the penultimate \(featureDim)-d features of the real-trained small CNN: NOT Inception FID, not comparable with published FIDs")
    say("")
    say("Per class, synthetic against the real test images of the same class, on the same \(featureDim)-d features of the real-trained classifier:")
    say("  real% / CAS%: test accuracy of the real- / synthetic-trained classifier; ratio = CAS / real")
    say("  prec / recall: improved precision and recall (Kynkäänniemi et al. 2019), k-NN balls with k = \(options.neighbourCount)"
        + " (row 'all': seeded subsets of at most \(options.precisionRecallCap) images per side)")
    say("  FD: Fréchet distance (per class: intra-class); spread / real sp: mean pairwise feature distance inside the synthetic / real images; div = spread / real sp")
    for line in result.tableLines { say(line) }
    try FileIO.writeAtomically(Array(result.csv.utf8), to: csvPath)
    say("table: \(csvPath)")
}

struct EvalGAN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gan",
        abstract: "Quality of a conditional GAN (or VAE) checkpoint: generate N images per class, then CAS, precision/recall, intra-class Fréchet distance and within-class diversity, overall and per class.")

    @Option(help: "The checkpoint (.safetensors) or a run folder.") var checkpoint: String
    @Option(help: "Real data (image folder or IDX folder): its training split trains the real classifier, its test split is the reference.") var data: String
    @Option(help: "Real test data (default: the held-out split of --data).") var test: String?
    @Option(help: "Images generated per class.") var perClass: Int = 1000
    @Option(help: "Seed of the generated images (item i uses a seed derived from (seed, i), as `forge generate images`).") var seed: UInt64 = 2026
    @Option(help: "Epochs of each classifier training.") var epochs: Int = 3
    @Option(help: "Train the real classifier on at most this many real images (seeded subset); default: as many as generated.") var realLimit: Int?
    @Option(help: "Classifier batch size.") var batch: Int = 64
    @Option(help: "Seed of the classifiers' weights and data order.") var classifierSeed: UInt64 = 1
    @Option(help: "k of precision/recall's k-nearest-neighbour balls.") var k: Int = 3
    @Option(help: "Output folder: synthetic/ (the generated images and manifest), the classifiers, results.csv, grid.png.") var out: String = "checkpoints/eval-gan"

    func validate() throws {
        guard perClass > k else { throw ValidationError("--per-class must be larger than --k (\(k)): precision/recall needs more than k images per class") }
        guard k >= 1 else { throw ValidationError("--k must be at least 1") }
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
        if let realLimit, realLimit < 1 { throw ValidationError("--real-limit must be positive") }
    }

    func run() throws {
        do {
            let source = try ImageSampler.open(checkpoint: checkpoint)
            guard !source.classNames.isEmpty else {
                throw ValidationError("\(checkpoint) is an unconditional model: `eval gan` measures per class and needs a conditional checkpoint")
            }
            let syntheticDirectory = out + "/synthetic"
            let options = ImageGenerationOptions(count: 0, perClass: perClass, seed: seed, batchSize: 100, resume: true, only: nil)
            let generator = try ImageDatasetGenerator(source: source, checkpointPath: Checkpoint.file(at: checkpoint), options: options,
                                                      outputDirectory: syntheticDirectory)
            let report = try generator.run()
            say(String(format: "generated %d images (%d kept from an earlier run) of %d classes from %@ (seed %llu) → %@ in %.1f s",
                       report.written - report.kept, report.kept, source.classNames.count, checkpoint, seed, syntheticDirectory, report.seconds))
            try writePreviewGrid(generator, to: out + "/grid.png")
            say("preview grid: \(out)/grid.png")

            let channels = source.channels, size = source.imageSize
            let (realSet, testSet) = try loadRealAndTest(real: data, test: test, size: size, channels: channels)
            let syntheticSet = try ImageDataset.load(path: syntheticDirectory, size: size, channels: channels)
            say("real: \(realSet.count) training images, \(testSet.count) test images; synthetic: \(syntheticSet.count) images in \(syntheticSet.classNames.count) classes")
            var config = ClassifierConfig()
            (config.batchSize, config.seed) = (batch, classifierSeed)
            let evaluation = SyntheticEvaluationOptions(epochs: epochs, classifier: config, realLimit: realLimit ?? syntheticSet.count,
                                                        workDirectory: out, neighbourCount: k)
            let result = try SyntheticEvaluation.run(real: realSet, synthetic: syntheticSet, test: testSet, options: evaluation, log: say)
            try reportSyntheticEvaluation(result, options: evaluation, testCount: testSet.count, csvPath: out + "/results.csv")
        }
    }
}
