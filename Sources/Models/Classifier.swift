import Foundation
import TensorCore
import DataIO

// A small CNN image classifier: the yardstick of `forge eval synthetic` (Classification Accuracy
// Score: train on synthetic data, test on real) and its penultimate layer is the feature space of
// the Fréchet distance. Also usable on its own (`forge train classifier`).
//
//   x (B, C, S, S)
//   → [Conv3×3 → BatchNorm → ReLU → MaxPool2] × 3      (B, 4w, S/8, S/8)
//   → flatten → Linear → ReLU = features               (B, featureDim)
//   → Linear = logits                                  (B, classes)

/// Hyper-parameters of `SmallCNN` and its training, stored in checkpoints as JSON.
public struct ClassifierConfig: Codable, Equatable, Sendable {
    /// Square input size; must be a multiple of 8 (three 2× poolings).
    public var imageSize: Int = 32
    /// Image channels: 1 (gray) or 3 (RGB).
    public var channels: Int = 1
    /// Number of classes (logits), at least 2.
    public var classCount: Int = 10
    /// Channels of the first conv stage (then 2w, 4w).
    public var width: Int = 16
    /// Size of the penultimate (feature) layer.
    public var featureDim: Int = 128
    /// Adam learning rate.
    public var learningRate: Float = 1e-3
    /// Images per training batch.
    public var batchSize: Int = 64
    /// Seed of the initial weights and the data order.
    public var seed: UInt64 = 1

    /// The defaults: 32×32 gray images, 10 classes, width 16, 128 features.
    public init() {}

    /// Why the configuration cannot work, or nil.
    public var problem: String? {
        if imageSize < 8 || imageSize % 8 != 0 { return "the classifier's image size must be a positive multiple of 8, got \(imageSize)" }
        if channels != 1 && channels != 3 { return "channels must be 1 or 3, got \(channels)" }
        if classCount < 2 { return "a classifier needs at least 2 classes, got \(classCount)" }
        if width < 1 || featureDim < 1 || batchSize < 1 { return "width, feature size and batch size must be positive" }
        return nil
    }
}

/// 2×2 max pooling as a layer, so a conv stage is one `Sequential`.
final class MaxPool2: Layer {
    var isTraining = true
    func forward(_ x: Tensor) -> Tensor { maxPool2d(x, kernel: 2) }
}

/// The classifier network (see the diagram at the top of the file).
public final class SmallCNN: Layer {
    /// True in training mode, where BatchNorm uses and updates batch statistics; false uses the running ones.
    public var isTraining = true
    /// The configuration the network was built from.
    public let config: ClassifierConfig
    /// The three conv stages.
    public let convs: Sequential
    /// Flattened conv output → features.
    public let fc1: Linear
    /// Features → logits.
    public let fc2: Linear

    /// Builds the network with PyTorch's default initialisation drawn from `config.seed`; `config` must have no
    /// `problem`.
    public init(_ config: ClassifierConfig) {
        precondition(config.problem == nil, "SmallCNN: \(config.problem ?? "")")
        self.config = config
        var g = RandomGenerator(seed: config.seed)
        let w = config.width
        var layers: [any Layer] = []
        for (input, output) in [(config.channels, w), (w, 2 * w), (2 * w, 4 * w)] {
            layers += [Conv2d(input, output, kernelSize: 3, padding: 1, generator: &g), BatchNorm2d(output), ReLU(), MaxPool2()]
        }
        convs = Sequential(layers)
        let side = config.imageSize / 8
        fc1 = Linear(4 * w * side * side, config.featureDim, generator: &g)
        fc2 = Linear(config.featureDim, config.classCount, generator: &g)
    }


    /// Penultimate features (B, featureDim), after the ReLU.
    public func features(_ x: Tensor) -> Tensor {
        fc1(convs(x).flattened(from: 1)).relu()
    }

    /// Logits (B, classCount).
    public func forward(_ x: Tensor) -> Tensor { fc2(features(x)) }
}

/// A `SmallCNN` with evaluation helpers that run in evaluation mode without a graph (its training
/// step: Training's `classifierTrainingStep`).
public final class ImageClassifier {
    /// The configuration the network was built from.
    public let config: ClassifierConfig
    /// The network; `predict` and `features` run it in evaluation mode without a graph.
    public let network: SmallCNN

    /// A classifier with a fresh `SmallCNN` for `config`.
    public init(_ config: ClassifierConfig) {
        self.config = config
        network = SmallCNN(config)
    }

    /// Runs `body` on the network in evaluation mode without a graph, restoring the mode after.
    private func evaluating<R>(_ body: () -> R) -> R {
        let wasTraining = network.isTraining
        network.eval()
        defer { network.train(wasTraining) }
        return withNoGrad(body)
    }

    /// Predicted class of every image of `images` (N, C, S, S), in batches of `batchSize`.
    public func predict(_ images: Tensor, batchSize: Int = 500) -> [Int] {
        evaluating {
            var out: [Int] = []
            out.reserveCapacity(images.shape[0])
            for start in stride(from: 0, to: images.shape[0], by: batchSize) {
                let end = min(images.shape[0], start + batchSize)
                out += network(images.slice(axis: 0, start..<end)).argmax(axis: 1)
            }
            return out
        }
    }

    /// Penultimate features of every image, as rows of a (N, featureDim) Double matrix.
    public func features(_ images: Tensor, batchSize: Int = 500) -> [[Double]] {
        evaluating {
            var rows: [[Double]] = []
            rows.reserveCapacity(images.shape[0])
            let d = config.featureDim
            for start in stride(from: 0, to: images.shape[0], by: batchSize) {
                let end = min(images.shape[0], start + batchSize)
                let f = network.features(images.slice(axis: 0, start..<end))
                let values = f.buffer
                for r in 0..<(end - start) { rows.append((0..<d).map { Double(values[r * d + $0]) }) }
            }
            return rows
        }
    }
}

/// Accuracy of predictions against labels, overall and per class.
public struct ClassificationAccuracy: Sendable, Equatable {
    /// Correct / total over all items.
    public let overall: Double
    /// Correct / total per class id (NaN for a class with no items).
    public let perClass: [Double]
    /// Items per class.
    public let counts: [Int]

    /// Counts how many `predictions` equal `labels` (class ids in 0..<classCount), in all and per class.
    public init(predictions: [Int], labels: [Int], classCount: Int) {
        precondition(predictions.count == labels.count, "ClassificationAccuracy: \(predictions.count) predictions for \(labels.count) labels")
        var correct = [Int](repeating: 0, count: classCount), total = [Int](repeating: 0, count: classCount)
        for (p, l) in zip(predictions, labels) {
            total[l] += 1
            if p == l { correct[l] += 1 }
        }
        overall = labels.isEmpty ? .nan : Double(correct.reduce(0, +)) / Double(labels.count)
        perClass = zip(correct, total).map { $1 == 0 ? .nan : Double($0) / Double($1) }
        counts = total
    }
}

extension ImageClassifier {
    /// Loads a classifier written by `forge train classifier` and its class names.
    public static func load(checkpoint path: String) throws -> (classifier: ImageClassifier, classNames: [String]) {
        let saved = try Checkpoint.load(path, expectedKind: "classifier")
        let config = try saved.config(as: ClassifierConfig.self)
        if let problem = config.problem { throw CheckpointError(path: path, message: "invalid configuration: \(problem)") }
        let classifier = ImageClassifier(config)
        try saved.restore(modules: [("classifier", classifier.network)])
        return (classifier, try saved.stringArray("forge.classes"))
    }
}
