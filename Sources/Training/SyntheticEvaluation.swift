import Foundation
import TensorCore
import DataIO
import Models
import Metrics

/// Settings of `forge eval synthetic`.
public struct SyntheticEvaluationOptions: Sendable {
    /// Epochs of each classifier training (the same for both).
    public var epochs: Int
    /// Classifier configuration (its class count and image shape are set from the data).
    public var classifier: ClassifierConfig
    /// Train on at most this many real images (a seeded random subset), e.g. to match the
    /// synthetic set's size; nil = all.
    public var realLimit: Int?
    /// Folder for the two classifier checkpoints and their metrics.
    public var workDirectory: String
    /// Show the training progress lines.
    public var showProgress: Bool

    public init(epochs: Int = 3, classifier: ClassifierConfig = ClassifierConfig(), realLimit: Int? = nil,
                workDirectory: String, showProgress: Bool = true) {
        self.epochs = epochs
        self.classifier = classifier
        self.realLimit = realLimit
        self.workDirectory = workDirectory
        self.showProgress = showProgress
    }
}

/// What `forge eval synthetic` measures.
public struct SyntheticEvaluationResult: Sendable {
    /// Class names in the real data's order (the ids of the accuracies).
    public let classNames: [String]
    /// Training-set sizes of the two classifiers.
    public let realTrainCount: Int, syntheticTrainCount: Int
    /// Real-trained classifier tested on the real test set.
    public let realAccuracy: ClassificationAccuracy
    /// Synthetic-trained classifier tested on the real test set: the Classification Accuracy Score.
    public let syntheticAccuracy: ClassificationAccuracy
    /// Fréchet distance between the real test set and the synthetic set on the real-trained
    /// classifier's penultimate features (not Inception FID).
    public let featureDistance: Double
    /// The same distance between real training images (as many as synthetic ones, up to the cap)
    /// and the real test set: the floor that sampling noise alone gives.
    public let realToRealDistance: Double
}

/// Classification Accuracy Score (Ravuri & Vinyals 2019) and a classifier-feature Fréchet distance.
public enum SyntheticEvaluation {
    /// Re-labels a synthetic image folder so its ids are the real data's: folder names are matched
    /// to the real class names (as `classFolderName` wrote them). Throws if a folder matches none.
    public static func align(_ synthetic: ImageSet, toClassNames realNames: [String]) throws -> ImageSet {
        guard synthetic.isLabelled else { throw TrainingError.invalidConfiguration("the synthetic set has no class folders; CAS needs a conditional model's output") }
        let byFolder = Dictionary(uniqueKeysWithValues: realNames.enumerated().map { (classFolderName($0.element), $0.offset) })
        let mapping = try synthetic.classNames.map { name -> Int in
            guard let id = byFolder[name] ?? realNames.firstIndex(of: name) else {
                throw TrainingError.invalidConfiguration("synthetic class folder \"\(name)\" matches no real class (\(realNames.joined(separator: ", ")))")
            }
            return id
        }
        return ImageSet(images: synthetic.images, labels: synthetic.labels.map { mapping[$0] }, classNames: realNames)
    }

    /// `count` images of `set` chosen by a seeded permutation (all when count ≥ set.count).
    public static func subset(_ set: ImageSet, count: Int, seed: UInt64) -> ImageSet {
        guard count < set.count else { return set }
        var g = RandomGenerator(seed: seed)
        let chosen = Array(g.permutation(set.count).prefix(count)).sorted()
        return ImageSet(images: set.images.indexSelect(chosen), labels: set.isLabelled ? chosen.map { set.labels[$0] } : [],
                        classNames: set.classNames)
    }

    /// Trains a classifier for `epochs` with the shared loop (checkpoint in `directory`).
    public static func trainClassifier(on data: ImageSet, config: ClassifierConfig, epochs: Int, directory: String,
                                       name: String, showProgress: Bool, log: @escaping (String) -> Void) throws -> ImageClassifier {
        var config = config
        config.classCount = data.classNames.count
        config.channels = data.channels
        config.imageSize = data.size
        if let problem = config.problem { throw TrainingError.invalidConfiguration(problem) }
        let classifier = ImageClassifier(config)
        let task = try ClassifierTrainingTask(classifier: classifier, data: data)
        let options = TrainingOptions(runDirectory: directory + "/\(name)", epochs: epochs, logEvery: 100,
                                      handleInterrupts: false, showProgress: showProgress, isTerminal: false)
        _ = try TrainingLoop(task: task, options: options, log: log).run()
        return classifier
    }

    /// Trains the same classifier on `real` and on `synthetic`, tests both on `test`, and
    /// measures the feature distance (features capped at `featureCap` images per set).
    public static func run(real: ImageSet, synthetic: ImageSet, test: ImageSet, options: SyntheticEvaluationOptions,
                           featureCap: Int = 10_000, log: @escaping (String) -> Void = { _ in }) throws -> SyntheticEvaluationResult {
        guard real.isLabelled, test.isLabelled else { throw TrainingError.invalidConfiguration("the real training and test sets need labels") }
        guard test.classNames == real.classNames else {
            throw TrainingError.invalidConfiguration("the real test set's classes (\(test.classNames)) differ from the training set's (\(real.classNames))")
        }
        guard synthetic.channels == real.channels, synthetic.size == real.size else {
            throw TrainingError.invalidConfiguration("synthetic images are \(synthetic.channels)×\(synthetic.size)², real ones \(real.channels)×\(real.size)²")
        }
        let aligned = try align(synthetic, toClassNames: real.classNames)
        let realTrain = options.realLimit.map { subset(real, count: $0, seed: options.classifier.seed) } ?? real
        try FileManager.default.createDirectory(atPath: options.workDirectory, withIntermediateDirectories: true)

        log("training the classifier on \(realTrain.count) real images (\(options.epochs) epochs)")
        let onReal = try trainClassifier(on: realTrain, config: options.classifier, epochs: options.epochs,
                                         directory: options.workDirectory, name: "classifier-real", showProgress: options.showProgress, log: log)
        log("training the classifier on \(aligned.count) synthetic images (\(options.epochs) epochs)")
        let onSynthetic = try trainClassifier(on: aligned, config: options.classifier, epochs: options.epochs,
                                              directory: options.workDirectory, name: "classifier-synthetic", showProgress: options.showProgress, log: log)
        let k = real.classNames.count
        let realAccuracy = ClassificationAccuracy(predictions: onReal.predict(test.images), labels: test.labels, classCount: k)
        let syntheticAccuracy = ClassificationAccuracy(predictions: onSynthetic.predict(test.images), labels: test.labels, classCount: k)

        log("feature statistics (real-trained classifier, \(options.classifier.featureDim)-d penultimate layer)")
        let testStats = FeatureStatistics(rows: onReal.features(subset(test, count: featureCap, seed: 7).images))
        let syntheticRows = subset(aligned, count: featureCap, seed: 8)
        let syntheticStats = FeatureStatistics(rows: onReal.features(syntheticRows.images))
        let realReference = FeatureStatistics(rows: onReal.features(subset(real, count: syntheticRows.count, seed: 9).images))
        return SyntheticEvaluationResult(classNames: real.classNames, realTrainCount: realTrain.count, syntheticTrainCount: aligned.count,
                                         realAccuracy: realAccuracy, syntheticAccuracy: syntheticAccuracy,
                                         featureDistance: frechetDistance(testStats, syntheticStats),
                                         realToRealDistance: frechetDistance(realReference, testStats))
    }
}
