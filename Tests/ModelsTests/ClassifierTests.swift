import Foundation
import XCTest
import TensorCore
import Models
import Training

/// The small CNN of `forge train classifier` / `forge eval synthetic`.
final class ClassifierTests: XCTestCase {
    private func config(classes: Int = 3) -> ClassifierConfig {
        var c = ClassifierConfig()
        (c.imageSize, c.channels, c.classCount, c.width, c.featureDim, c.batchSize, c.learningRate, c.seed) = (16, 1, classes, 4, 16, 24, 3e-3, 2)
        return c
    }

    /// Images whose class is where a bright square sits (left, middle or right third) plus noise.
    private func toyData(count: Int, seed: UInt64) -> (Tensor, [Int]) {
        var g = RandomGenerator(seed: seed)
        let labels = (0..<count).map { $0 % 3 }
        let images = Tensor(shape: [count, 1, 16, 16]) { out in
            for (n, label) in labels.enumerated() {
                for y in 0..<16 {
                    for x in 0..<16 {
                        let inside = y >= 5 && y < 11 && x >= label * 5 && x < label * 5 + 5
                        out[n * 256 + y * 16 + x] = (inside ? 0.8 : -0.8) + 0.3 * g.nextNormal()
                    }
                }
            }
        }
        return (images, labels)
    }

    func testShapesParametersAndNames() {
        let net = SmallCNN(config())
        let x = Tensor.zeros([5, 1, 16, 16])
        XCTAssertEqual(net(x).shape, [5, 3])
        XCTAssertEqual(net.features(x).shape, [5, 16])
        // conv 1→4, 4→8, 8→16 (3×3 + bias), BatchNorm affine, fc1 16·2·2→16, fc2 16→3
        let expected = (9 * 1 * 4 + 4) + (9 * 4 * 8 + 8) + (9 * 8 * 16 + 16) + 2 * (4 + 8 + 16) + (64 * 16 + 16) + (16 * 3 + 3)
        XCTAssertEqual(net.parameterCount, expected)
        let names = net.namedParameters().map(\.0)
        XCTAssertTrue(names.contains("convs.0.weight") && names.contains("convs.1.running_mean") == false && names.contains("fc2.bias"))
        XCTAssertNotNil(config().problem == nil ? 1 : nil)
        var bad = config()
        bad.imageSize = 20
        XCTAssertNotNil(bad.problem)
    }

    func testLearnsAToyTaskAndGeneralises() {
        let classifier = ImageClassifier(config())
        let (train, trainLabels) = toyData(count: 96, seed: 1)
        let (test, testLabels) = toyData(count: 60, seed: 2)
        let before = ClassificationAccuracy(predictions: classifier.predict(test), labels: testLabels, classCount: 3)
        var firstLoss = 0.0, lastLoss = 0.0
        let optimizer = classifier.makeOptimizer()
        for step in 0..<40 {
            let start = (step % 4) * 24
            let r = classifierTrainingStep(classifier, optimizer: optimizer, images: train.slice(axis: 0, start..<start + 24), labels: Array(trainLabels[start..<start + 24]))
            if step == 0 { firstLoss = r.loss }
            lastLoss = r.loss
        }
        XCTAssertLessThan(lastLoss, firstLoss * 0.5)
        let after = ClassificationAccuracy(predictions: classifier.predict(test, batchSize: 7), labels: testLabels, classCount: 3)
        XCTAssertGreaterThan(after.overall, 0.95)
        XCTAssertGreaterThan(after.overall, before.overall)
        XCTAssertEqual(after.counts, [20, 20, 20])
        // prediction and features run in evaluation mode: independent of the batch split
        XCTAssertEqual(classifier.predict(test, batchSize: 60), classifier.predict(test, batchSize: 7))
        let f = classifier.features(test, batchSize: 11)
        XCTAssertEqual(f.count, 60)
        XCTAssertEqual(f[0].count, 16)
        XCTAssertTrue(classifier.network.isTraining, "evaluation restores the training mode")
    }

    func testAccuracyPerClass() {
        let a = ClassificationAccuracy(predictions: [0, 1, 1, 2, 0, 2], labels: [0, 1, 2, 2, 0, 1], classCount: 4)
        XCTAssertEqual(a.overall, 4.0 / 6.0, accuracy: 1e-12)
        XCTAssertEqual(a.perClass[0], 1)
        XCTAssertEqual(a.perClass[1], 0.5)
        XCTAssertEqual(a.perClass[2], 0.5)
        XCTAssertTrue(a.perClass[3].isNaN)
        XCTAssertEqual(a.counts, [2, 2, 2, 0])
    }
}
