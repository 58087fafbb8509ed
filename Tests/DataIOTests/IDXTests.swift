import Foundation
import XCTest
import DataIO
import TensorCore

final class IDXTests: XCTestCase {
    private func idx(_ dims: [Int], _ data: [UInt8]) -> [UInt8] {
        [0, 0, 8, UInt8(dims.count)] + dims.flatMap { d in [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] } + data
    }

    func testReadsGeneratedIDXFolderThroughTheEntryPoint() throws {
        let root = try makeTemporaryFolder(self).appendingPathComponent("tiny-mnist")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        // 3 images of 2x2, labels 2, 0, 1; uncompressed train, gzip-compressed test.
        let pixels: [UInt8] = [0, 255, 255, 0, 51, 51, 51, 51, 255, 255, 255, 255]
        try Data(idx([3, 2, 2], pixels)).write(to: root.appendingPathComponent("train-images-idx3-ubyte"))
        try Data(idx([3], [2, 0, 1])).write(to: root.appendingPathComponent("train-labels-idx1-ubyte"))
        try gzip(idx([1, 2, 2], [0, 0, 0, 255]), to: root.appendingPathComponent("t10k-images-idx3-ubyte.gz"))
        try gzip(idx([1], [1]), to: root.appendingPathComponent("t10k-labels-idx1-ubyte.gz"))

        let train = try ImageDataset.load(path: root.path, size: 2, channels: 1, split: .train)
        XCTAssertEqual(train.images.shape, [3, 1, 2, 2])
        XCTAssertEqual(train.labels, [2, 0, 1])
        XCTAssertEqual(train.classNames, ["0", "1", "2"])
        XCTAssertEqual(train.images.scalars, pixels.map { Float($0) / 255 * 2 - 1 })
        let test = try ImageDataset.load(path: root.path, size: 4, channels: 3, split: .test)
        XCTAssertEqual(test.images.shape, [1, 3, 4, 4])
        XCTAssertEqual(test.labels, [1])
        // Bilinear 2x2 → 4x4 of [[0,0],[0,1]]: bottom-right corner is 1, top-left is 0 (→ -1).
        let red = Array(test.images.scalars[0..<16])
        XCTAssertEqual(red[0], -1)
        XCTAssertEqual(red[15], 1)
        XCTAssertEqual(red[5], (0.0625 * 2 - 1), accuracy: 1e-6)
        XCTAssertEqual(Array(test.images.scalars[16..<32]), red)  // gray copied to every channel
    }

    func testRejectsMalformedIDX() throws {
        assertThrowsDataIOError(["a.idx", "bad magic"]) { _ = try IDX.parse([1, 2, 8, 1, 0, 0, 0, 0], source: "a.idx") }
        assertThrowsDataIOError(["element type 0x0D"]) { _ = try IDX.parse([0, 0, 0x0D, 1, 0, 0, 0, 0]) }
        assertThrowsDataIOError(["ends inside"]) { _ = try IDX.parse([0, 0, 8, 3, 0, 0, 0, 1]) }
        // Dimensions claiming 4 billion images with 4 bytes of data: refused before allocating.
        assertThrowsDataIOError(["claim more data"]) { _ = try IDX.parse(idx([0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], [1, 2, 3, 4])) }
        assertThrowsDataIOError(["need 8 data bytes but the file has 7"]) { _ = try IDX.parse(idx([2, 2, 2], [UInt8](repeating: 0, count: 7))) }
        assertThrowsDataIOError(["has 1 dimensions, expected 3"]) { _ = try IDX.parse(idx([4], [0, 0, 0, 0]), rank: 3) }
        XCTAssertEqual(try IDX.parse(idx([2, 3], [1, 2, 3, 4, 5, 6])).shape, [2, 3])
        let folder = try makeTemporaryFolder(self)
        try Data([0x1F, 0x8B, 8, 0, 0, 0]).write(to: folder.appendingPathComponent("cut.gz"))
        assertThrowsDataIOError(["cut.gz", "gzip"]) { _ = try IDX.read(path: folder.appendingPathComponent("cut.gz").path) }
        try Data(idx([2, 1, 1], [0, 0])).write(to: folder.appendingPathComponent("x-images-idx3-ubyte"))
        try Data(idx([3], [0, 0, 0])).write(to: folder.appendingPathComponent("x-labels-idx1-ubyte"))
        assertThrowsDataIOError(["3 labels for the 2 images"]) {
            _ = try IDX.loadImageSet(images: folder.path + "/x-images-idx3-ubyte", labels: folder.path + "/x-labels-idx1-ubyte")
        }
    }

    func testRealFashionMNIST() throws {
        let path = "/usr/share/datasets/fashion-mnist"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("Fashion-MNIST is not installed") }
        var start = Date()
        let train = try ImageDataset.load(path: path, size: 28, channels: 1, split: .train)
        let trainSeconds = Date().timeIntervalSince(start)
        start = Date()
        let test = try ImageDataset.load(path: path, size: 32, channels: 1, split: .test)
        let testSeconds = Date().timeIntervalSince(start)
        print("Fashion-MNIST: 60000 train at 28x28 in \(String(format: "%.2f", trainSeconds)) s, 10000 test at 32x32 in \(String(format: "%.2f", testSeconds)) s")
        XCTAssertEqual(train.images.shape, [60000, 1, 28, 28])
        XCTAssertEqual(test.images.shape, [10000, 1, 32, 32])
        XCTAssertEqual(train.classNames, IDX.fashionMNISTClassNames)
        XCTAssertEqual(train.classNames.count, 10)
        // Balanced: 6000 of each class in train, 1000 in test.
        XCTAssertEqual(Dictionary(grouping: train.labels, by: { $0 }).mapValues(\.count), Dictionary(uniqueKeysWithValues: (0..<10).map { ($0, 6000) }))
        XCTAssertEqual(Dictionary(grouping: test.labels, by: { $0 }).mapValues(\.count), Dictionary(uniqueKeysWithValues: (0..<10).map { ($0, 1000) }))
        // The well-known first training label is 9 (ankle boot), first test label 9 too.
        XCTAssertEqual(train.labels[0], 9)
        XCTAssertEqual(test.labels[0], 9)
        let values = train.images.scalars
        XCTAssertEqual(values.min(), -1)
        XCTAssertEqual(values.max(), 1)
    }

    private func gzip(_ bytes: [UInt8], to url: URL) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        let raw = url.deletingPathExtension()
        try Data(bytes).write(to: raw)
        process.arguments = ["-c", "gzip -f -n '\(raw.path)'"]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
    }
}
