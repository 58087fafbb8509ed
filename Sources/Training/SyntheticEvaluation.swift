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
    /// The neighbour rank k of precision/recall's k-NN balls (Kynkäänniemi et al. use 3).
    public var neighbourCount: Int
    /// At most this many images of each side in the all-classes precision/recall (seeded subsets).
    public var precisionRecallCap: Int

    /// Defaults: 3 epochs, the default classifier, every real image, 3 neighbours, at most 5 000 images per side.
    public init(epochs: Int = 3, classifier: ClassifierConfig = ClassifierConfig(), realLimit: Int? = nil,
                workDirectory: String, showProgress: Bool = true, neighbourCount: Int = 3, precisionRecallCap: Int = 5_000) {
        self.epochs = epochs
        self.classifier = classifier
        self.realLimit = realLimit
        self.workDirectory = workDirectory
        self.showProgress = showProgress
        self.neighbourCount = neighbourCount
        self.precisionRecallCap = precisionRecallCap
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
    /// Precision, recall, Fréchet distance and spread of the synthetic set against the real test set,
    /// all on the real-trained classifier's features: over all classes, then per class in id order.
    public let overallQuality: GenerativeQuality
    /// The same figures restricted to each class, in class-id order.
    public let perClassQuality: [GenerativeQuality]

    /// CAS as a ratio to the real-trained classifier's accuracy, overall.
    public var accuracyRatio: Double { syntheticAccuracy.overall / realAccuracy.overall }
}

/// How one synthetic set (all of it, or one class) compares with real images of the same scope,
/// measured on a real-trained classifier's penultimate features.
public struct GenerativeQuality: Sendable {
    /// "all" or the class name.
    public let scope: String
    /// Points of each side that the measures used.
    public let syntheticCount: Int, realCount: Int
    /// Improved precision and recall (Kynkäänniemi et al. 2019, k-NN balls).
    public let precisionRecall: PrecisionRecall
    /// Fréchet distance between the two sides' Gaussians (per class: the intra-class distance).
    public let frechetDistance: Double
    /// Mean pairwise feature distance inside the synthetic side and inside the real side.
    public let syntheticSpread: Double, realSpread: Double

    /// Within-class diversity: synthetic spread over real spread (1 = as varied as real images; a
    /// collapsed class is near 0).
    public var diversityRatio: Double { syntheticSpread / realSpread }

    /// Measures `synthetic` against `real` (rows of features; each needs more than k rows).
    public init(scope: String, real: [[Double]], synthetic: [[Double]], k: Int) {
        let realPoints = FeaturePoints(rows: real), syntheticPoints = FeaturePoints(rows: synthetic)
        self.scope = scope
        (syntheticCount, realCount) = (synthetic.count, real.count)
        precisionRecall = PrecisionRecall(real: realPoints, generated: syntheticPoints, k: k)
        frechetDistance = Metrics.frechetDistance(FeatureStatistics(rows: real), FeatureStatistics(rows: synthetic))
        syntheticSpread = meanPairwiseDistance(syntheticPoints)
        realSpread = meanPairwiseDistance(realPoints)
    }
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
        if data.count < config.batchSize && data.count >= 2 {
            // A set smaller than one batch trains on one short batch (as PyTorch's DataLoader yields).
            log("\(name): \(data.count) images are fewer than one batch of \(config.batchSize): training with batches of \(data.count)")
            config.batchSize = data.count
        }
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

        let neighbours = options.neighbourCount
        log("precision/recall (k = \(neighbours) nearest neighbours), intra-class Fréchet distance and spread on the same features")
        let (overall, perClass) = try quality(of: aligned, against: test, features: { onReal.features($0) }, k: neighbours,
                                          overallCap: options.precisionRecallCap)
        return SyntheticEvaluationResult(classNames: real.classNames, realTrainCount: realTrain.count, syntheticTrainCount: aligned.count,
                                         realAccuracy: realAccuracy, syntheticAccuracy: syntheticAccuracy,
                                         featureDistance: frechetDistance(testStats, syntheticStats),
                                         realToRealDistance: frechetDistance(realReference, testStats),
                                         overallQuality: overall, perClassQuality: perClass)
    }

    /// `GenerativeQuality` of `synthetic` against `real` over all classes (seeded subsets of at most
    /// `overallCap` images of each side, as k-NN balls cost n² distances) and for each class (all of its
    /// images). Classes whose either side has at most k images get NaN figures.
    public static func quality(of synthetic: ImageSet, against real: ImageSet, features: (Tensor) -> [[Double]], k: Int,
                               overallCap: Int) throws -> (overall: GenerativeQuality, perClass: [GenerativeQuality]) {
        guard synthetic.classNames == real.classNames else {
            throw TrainingError.invalidConfiguration("the synthetic set's classes (\(synthetic.classNames)) differ from the real set's (\(real.classNames))")
        }
        let syntheticFeatures = features(synthetic.images), realFeatures = features(real.images)
        func rows(_ all: [[Double]], _ indices: [Int]) -> [[Double]] { indices.map { all[$0] } }
        func cap(_ n: Int, seed: UInt64) -> [Int] {
            var g = RandomGenerator(seed: seed)
            return n <= overallCap ? Array(0..<n) : Array(g.permutation(n).prefix(overallCap)).sorted()
        }
        let overall = GenerativeQuality(scope: "all", real: rows(realFeatures, cap(real.count, seed: 11)),
                                        synthetic: rows(syntheticFeatures, cap(synthetic.count, seed: 12)), k: k)
        let perClass = real.classNames.enumerated().map { (id, name) -> GenerativeQuality in
            let s = synthetic.labels.indices.filter { synthetic.labels[$0] == id }
            let r = real.labels.indices.filter { real.labels[$0] == id }
            guard s.count > k, r.count > k else {
                return GenerativeQuality(scope: name, syntheticCount: s.count, realCount: r.count)
            }
            return GenerativeQuality(scope: name, real: rows(realFeatures, r), synthetic: rows(syntheticFeatures, s), k: k)
        }
        return (overall, perClass)
    }
}

extension GenerativeQuality {
    /// A class with too few images on one side: every figure NaN.
    init(scope: String, syntheticCount: Int, realCount: Int) {
        self.scope = scope
        (self.syntheticCount, self.realCount) = (syntheticCount, realCount)
        precisionRecall = PrecisionRecall(precision: .nan, recall: .nan, k: 0)
        (frechetDistance, syntheticSpread, realSpread) = (.nan, .nan, .nan)
    }
}

// MARK: - the report

extension SyntheticEvaluationResult {
    /// One row per scope (all, then each class): CAS (real and synthetic accuracy, their ratio),
    /// precision, recall, Fréchet distance, spreads and their ratio. Columns are named in `csvHeader`.
    public var tableRows: [(scope: String, values: [Double])] {
        let all = [(realAccuracy.overall, syntheticAccuracy.overall, overallQuality)]
        let classes = perClassQuality.indices.map { (realAccuracy.perClass[$0], syntheticAccuracy.perClass[$0], perClassQuality[$0]) }
        return (all + classes).map { (realAcc, synAcc, q) in
            (q.scope, [realAcc, synAcc, synAcc / realAcc, q.precisionRecall.precision, q.precisionRecall.recall,
                       q.frechetDistance, q.syntheticSpread, q.realSpread, q.diversityRatio, Double(q.syntheticCount), Double(q.realCount)])
        }
    }

    /// The CSV columns of `csv`: the scope, the two accuracies and their ratio, then the quality figures and counts.
    public static let csvHeader = ["scope", "real_trained_accuracy", "cas", "cas_ratio", "precision", "recall", "frechet_distance",
                                   "synthetic_spread", "real_spread", "diversity_ratio", "synthetic_count", "real_count"]

    /// The table as CSV (a header line, then one line per scope; NaN written as "nan").
    public var csv: String {
        var lines = [Self.csvHeader.joined(separator: ",")]
        for row in tableRows {
            let scope = row.scope.contains(",") || row.scope.contains("\"") ? "\"" + row.scope.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : row.scope
            lines.append(([scope] + row.values.map { $0.isNaN ? "nan" : String(format: "%.6g", $0) }).joined(separator: ","))
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The table for a terminal: accuracies in %, the rest with 3 decimals.
    public var tableLines: [String] {
        let width = max(12, tableRows.map(\.scope.count).max() ?? 0)
        func cell(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
        let header = ["real%", "CAS%", "ratio", "prec", "recall", "FD", "spread", "real sp", "div"]
        var lines = ["  " + "scope".padding(toLength: width, withPad: " ", startingAt: 0) + header.map { cell($0, 8) }.joined()]
        for row in tableRows {
            let v = row.values
            let cells = [String(format: "%.2f", 100 * v[0]), String(format: "%.2f", 100 * v[1])]
                + v[2...8].map { String(format: $0.magnitude >= 100 ? "%.1f" : "%.3f", $0) }
            lines.append("  " + row.scope.padding(toLength: width, withPad: " ", startingAt: 0) + cells.map { cell($0, 8) }.joined())
        }
        return lines
    }
}
