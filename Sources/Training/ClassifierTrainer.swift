import Foundation
import TensorCore
import DataIO
import Models

/// `SmallCNN` training on a labelled `ImageSet` as a `TrainingTask` (so `forge train classifier`
/// gets the shared loop's progress, metrics.csv, checkpoints, time budget and resume): shuffled
/// batches in a (seed, epoch) order, one Adam step per batch, loss and batch accuracy as metrics.
public final class ClassifierTrainingTask: TrainingTask {
    public let classifier: ImageClassifier
    /// Adam over the network's parameters (`ImageClassifier.makeOptimizer`).
    public let optimizer: Adam
    public let data: ImageSet
    /// Random horizontal flips of training images (off for digits and Fashion-MNIST's asymmetric classes).
    public let randomHorizontalFlip: Bool
    private var batches: ImageBatches?

    public init(classifier: ImageClassifier, data: ImageSet, randomHorizontalFlip: Bool = false) throws {
        let c = classifier.config
        guard data.isLabelled else { throw TrainingError.invalidConfiguration("a classifier needs labelled data (class sub-folders or IDX labels)") }
        guard data.channels == c.channels, data.size == c.imageSize else {
            throw TrainingError.invalidConfiguration("the data is \(data.channels)×\(data.size)×\(data.size) but the classifier wants \(c.channels)×\(c.imageSize)×\(c.imageSize)")
        }
        guard data.classNames.count == c.classCount else {
            throw TrainingError.invalidConfiguration("the data has \(data.classNames.count) classes, the classifier \(c.classCount)")
        }
        guard data.count >= c.batchSize else {
            throw TrainingError.invalidConfiguration("\(data.count) images are fewer than one batch of \(c.batchSize)")
        }
        self.classifier = classifier
        optimizer = classifier.makeOptimizer()
        self.data = data
        self.randomHorizontalFlip = randomHorizontalFlip
    }

    public var kind: String { "classifier" }
    public var configJSON: String { (try? Checkpoint.jsonString(classifier.config)) ?? "{}" }
    public var modules: [(name: String, module: any Module)] { [("classifier", classifier.network)] }
    public var optimizers: [(name: String, optimizer: any Optimizer)] { [("classifier", optimizer)] }
    /// The data order comes from (seed, epoch); the task draws no other random numbers.
    public var generators: [String: RandomGenerator] {
        get { [:] }
        set {}
    }
    public var extraMetadata: [String: String] { ["forge.classes": (try? Checkpoint.jsonString(data.classNames)) ?? "[]"] }

    /// Full batches only (BatchNorm statistics of a tiny tail batch would be noise).
    public var stepsPerEpoch: Int { data.count / classifier.config.batchSize }
    public var itemsPerStep: Int { classifier.config.batchSize }
    public var itemName: String { "images" }
    public var metricNames: [String] { ["loss", "accuracy"] }
    public var plottedMetrics: [String] { ["loss"] }

    public func beginEpoch(_ epoch: Int, skippingSteps: Int) {
        var it = data.batches(size: classifier.config.batchSize, seed: classifier.config.seed, epoch: epoch,
                              randomHorizontalFlip: randomHorizontalFlip, dropLast: true)
        for _ in 0..<skippingSteps { _ = it.next() }
        batches = it
    }

    public func step() -> [Double] {
        guard let (images, labels) = batches?.next() else { preconditionFailure("ClassifierTrainingTask: epoch ran out of batches") }
        let r = classifierTrainingStep(classifier, optimizer: optimizer, images: images, labels: labels)
        return [r.loss, r.accuracy]
    }
}

