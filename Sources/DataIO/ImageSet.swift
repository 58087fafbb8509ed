import Foundation
import TensorCore

/// A labelled (or unlabelled) set of equally sized images, ready for training.
public struct ImageSet: @unchecked Sendable {
    /// `(N, C, size, size)` with values in [-1, 1].
    public let images: Tensor
    /// One class id per image; empty when the set is unlabelled.
    public let labels: [Int]
    /// Class names by id (`labels` index into this); empty when unlabelled.
    public let classNames: [String]
    /// Where the class names came from, for the user ("the sub-folder names", "classes.txt", …); "" when unknown.
    public let classSource: String

    /// A set from `(N, C, H, W)` images in [-1, 1] with one label per image (or none) and the names the labels
    /// index.
    public init(images: Tensor, labels: [Int], classNames: [String], classSource: String = "") {
        precondition(images.shape.count == 4, "ImageSet: images must be (N, C, H, W), got \(images.shape)")
        precondition(labels.isEmpty || labels.count == images.shape[0], "ImageSet: \(labels.count) labels for \(images.shape[0]) images")
        self.images = images
        self.labels = labels
        self.classNames = classNames
        self.classSource = classSource
    }

    /// Number of images N.
    public var count: Int { images.shape[0] }
    /// Channels per image C (1 gray, 3 RGB).
    public var channels: Int { images.shape[1] }
    /// Image height H in pixels (`images.shape[2]`); the sets the project loads are square.
    public var size: Int { images.shape[2] }
    /// Whether the set has labels (`labels` is not empty).
    public var isLabelled: Bool { !labels.isEmpty }

    /// The batches of one epoch, shuffled by a generator seeded from `seed` and `epoch` (so
    /// every epoch has its own order and a run can be replayed). Labels are 0 when unlabelled.
    public func batches(size batchSize: Int, seed: UInt64, epoch: Int = 0, randomHorizontalFlip: Bool = false,
                        dropLast: Bool = false) -> ImageBatches {
        ImageBatches(set: self, batchSize: batchSize, seed: seed, epoch: epoch, flip: randomHorizontalFlip, dropLast: dropLast)
    }
}

/// One epoch of shuffled `(images, labels)` batches from an `ImageSet`.
public struct ImageBatches: Sequence, IteratorProtocol {
    private let source: ImageSet
    private let batchSize: Int
    private let order: [Int]
    private let flip: Bool
    private let dropLast: Bool
    private var generator: RandomGenerator
    private var position = 0

    init(set: ImageSet, batchSize: Int, seed: UInt64, epoch: Int, flip: Bool, dropLast: Bool) {
        precondition(batchSize > 0, "batches: batch size must be positive")
        self.source = set
        self.batchSize = batchSize
        self.flip = flip
        self.dropLast = dropLast
        // Mix the epoch into the seed so each epoch is shuffled differently but reproducibly.
        generator = RandomGenerator(seed: seed ^ (UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9_7F4A_7C15))
        order = generator.permutation(set.count)
    }

    /// Number of batches this epoch yields.
    public var batchCount: Int { dropLast ? order.count / batchSize : (order.count + batchSize - 1) / batchSize }

    /// The next batch, `(n, C, H, W)` images (each flipped left-right with probability ½ when asked) with their
    /// labels; nil after the last (a short last batch is dropped when `dropLast`).
    public mutating func next() -> (images: Tensor, labels: [Int])? {
        let remaining = order.count - position
        guard remaining > 0, !(dropLast && remaining < batchSize) else { return nil }
        let n = Swift.min(batchSize, remaining)
        let indices = order[position..<(position + n)]
        position += n
        let (c, h, w) = (source.channels, source.images.shape[2], source.images.shape[3])
        let imageLength = c * h * w
        let pixels = source.images.pointer
        var flips = [Bool](repeating: false, count: n)
        if flip { for i in 0..<n { flips[i] = generator.nextFloat() < 0.5 } }
        let batch = Tensor(shape: [n, c, h, w]) { out in
            for (slot, index) in indices.enumerated() {
                let src = pixels + index * imageLength
                let dst = out.baseAddress! + slot * imageLength
                if flips[slot] {
                    for row in 0..<(c * h) {
                        for x in 0..<w { dst[row * w + x] = src[row * w + (w - 1 - x)] }
                    }
                } else {
                    dst.update(from: src, count: imageLength)
                }
            }
        }
        let labels = source.isLabelled ? indices.map { source.labels[$0] } : [Int](repeating: 0, count: n)
        return (batch, labels)
    }
}
