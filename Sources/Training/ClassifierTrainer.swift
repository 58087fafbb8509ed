import Foundation
import TensorCore
import DataIO
import Models

/// `SmallCNN` training on a labelled `ImageSet` as a `TrainingTask` (so `forge train classifier`
/// gets the shared loop's progress, metrics.csv, checkpoints, time budget and resume): shuffled
/// batches in a (seed, epoch) order, one Adam step per batch, loss and batch accuracy as metrics.
public final class ClassifierTrainingTask: TrainingTask {
    /// The classifier being trained (its config gives the image shape, class count, batch size and seed).
    public let classifier: ImageClassifier
    /// Adam over the network's parameters (`ImageClassifier.makeOptimizer`).
    public let optimizer: Adam
    /// The labelled training images, (N, C, S, S) pixels, with as many classes as the classifier.
    public let data: ImageSet
    /// Random horizontal flips of training images (off for digits and Fashion-MNIST's asymmetric classes).
    public let randomHorizontalFlip: Bool
    private var batches: ImageBatches?

    /// Checks that `data` is labelled, matches the classifier's shape and classes and holds one batch; throws `TrainingError` if not.
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

    /// Checkpoint kind "classifier".
    public var kind: String { "classifier" }
    /// The `ClassifierConfig` as JSON.
    public var configJSON: String { (try? Checkpoint.jsonString(classifier.config)) ?? "{}" }
    /// The network, saved under the name "classifier".
    public var modules: [(name: String, module: any Module)] { [("classifier", classifier.network)] }
    /// The Adam optimizer, saved under the name "classifier".
    public var optimizers: [(name: String, optimizer: any Optimizer)] { [("classifier", optimizer)] }
    /// The data order comes from (seed, epoch); the task draws no other random numbers.
    public var generators: [String: RandomGenerator] {
        get { [:] }
        set {}
    }
    /// The class names as `forge.classes`, so predictions can be named.
    public var extraMetadata: [String: String] { ["forge.classes": (try? Checkpoint.jsonString(data.classNames)) ?? "[]"] }

    /// Full batches only (BatchNorm statistics of a tiny tail batch would be noise).
    public var stepsPerEpoch: Int { data.count / classifier.config.batchSize }
    /// Images per batch (`ClassifierConfig.batchSize`).
    public var itemsPerStep: Int { classifier.config.batchSize }
    /// Steps are counted in images.
    public var itemName: String { "images" }
    /// The batch's mean cross-entropy (nats) and its accuracy in [0, 1].
    public var metricNames: [String] { ["loss", "accuracy"] }
    /// Only the loss in `loss.png`.
    public var plottedMetrics: [String] { ["loss"] }

    /// Starts the (seed, epoch) shuffle of full batches, with the optional flips, and skips the steps already done.
    public func beginEpoch(_ epoch: Int, skippingSteps: Int) {
        var it = data.batches(size: classifier.config.batchSize, seed: classifier.config.seed, epoch: epoch,
                              randomHorizontalFlip: randomHorizontalFlip, dropLast: true)
        for _ in 0..<skippingSteps { _ = it.next() }
        batches = it
    }

    /// One `classifierTrainingStep` on the next batch; returns [loss, accuracy].
    public func step() -> [Double] {
        guard let (images, labels) = batches?.next() else { preconditionFailure("ClassifierTrainingTask: epoch ran out of batches") }
        let r = classifierTrainingStep(classifier, optimizer: optimizer, images: images, labels: labels)
        return [r.loss, r.accuracy]
    }
}

