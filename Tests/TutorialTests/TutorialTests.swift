import XCTest
import Foundation
import TensorCore
import DataIO

// The code of the DocC tutorial "Training a small model" (Sources/TensorCore/TensorCore.docc/
// TrainingASmallModel.md). Every ```swift block of the article must appear in this file word for
// word (`testTheArticleShowsThisCode`), so the article's code is compiled and run here and cannot rot.

// tutorial: model
/// A two-layer perceptron for 28×28 grey images: 784 → 128 → 10 logits.
final class TinyClassifier: Module {
    var isTraining = true
    let fc1: Linear
    let fc2: Linear

    init(generator: inout RandomGenerator) {
        fc1 = Linear(784, 128, generator: &generator)
        fc2 = Linear(128, 10, generator: &generator)
    }

    /// x (B, 1, 28, 28) → logits (B, 10)
    func callAsFunction(_ x: Tensor) -> Tensor {
        fc2(fc1(x.flattened(from: 1)).relu())
    }
}
// end

final class TutorialTests: XCTestCase {
    private let fashionMNIST = "/usr/share/datasets/fashion-mnist"

    func testTrainingASmallModelOnFashionMNIST() throws {
        guard FileManager.default.fileExists(atPath: fashionMNIST) else {
            throw XCTSkip("\(fashionMNIST) is missing (apt-get install dataset-fashion-mnist); the tutorial's code is still compiled")
        }
        let checkpoint = FileManager.default.temporaryDirectory.appendingPathComponent("tutorial-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: checkpoint) }

        // tutorial: data
        let train = try ImageDataset.load(path: fashionMNIST, size: 28, channels: 1, split: .train)
        let test = try ImageDataset.load(path: fashionMNIST, size: 28, channels: 1, split: .test)
        // end

        // tutorial: train
        var generator = RandomGenerator(seed: 1)
        let model = TinyClassifier(generator: &generator)
        let optimizer = Adam(model.parameters, learningRate: 1e-3)
        var batches = train.batches(size: 64, seed: 1, epoch: 0)
        for step in 0..<300 {
            guard let (images, labels) = batches.next() else { break }
            optimizer.zeroGrad()
            let loss = crossEntropy(model(images), labels: labels)
            loss.backward()
            optimizer.step()
            if step % 100 == 0 { print("step \(step): loss \(loss.item)") }
        }
        // end

        // tutorial: evaluate
        model.eval()
        let logits = withNoGrad { model(test.images) }
        let correct = zip(logits.argmax(axis: 1), test.labels).filter { $0 == $1 }.count
        print("test accuracy: \(Double(correct) / Double(test.count))")
        // end
        XCTAssertGreaterThan(Double(correct) / Double(test.count), 0.75, "300 Adam steps of an MLP reach ~80 % on Fashion-MNIST")

        // tutorial: save
        try SafeTensors.write(model.namedParameters(), metadata: ["format": "pt"], to: checkpoint)
        let saved = try SafeTensors.read(checkpoint)
        // end
        let restored = TinyClassifier(generator: &generator)
        for (name, tensor) in restored.namedParameters() {
            let stored = try saved.tensor(name)
            XCTAssertEqual(stored.shape, tensor.shape, name)
            tensor.mutablePointer.update(from: stored.pointer, count: stored.count)
        }
        restored.eval()
        XCTAssertEqual(withNoGrad { restored(test.images) }.scalars, logits.scalars, "the saved weights give the same logits")
    }

    /// Each code block of the article appears in this file exactly (after trimming each line's
    /// indentation), so what the article shows is what this test compiles and runs.
    func testTheArticleShowsThisCode() throws {
        let here = URL(fileURLWithPath: #filePath)
        let article = here.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/TensorCore/TensorCore.docc/TrainingASmallModel.md")
        let text = try String(contentsOf: article, encoding: .utf8)
        let source = try String(contentsOf: here, encoding: .utf8)
        func normalized(_ s: String) -> String {
            s.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
                .joined(separator: "\n")
        }
        let blocks = text.components(separatedBy: "```swift\n").dropFirst().map { String($0.components(separatedBy: "```")[0]) }
        XCTAssertGreaterThanOrEqual(blocks.count, 5, "the article's code blocks")
        for block in blocks {
            XCTAssertTrue(normalized(source).contains(normalized(block).trimmingCharacters(in: .newlines)),
                          "the article shows code this test does not compile:\n\(block)")
        }
    }
}
