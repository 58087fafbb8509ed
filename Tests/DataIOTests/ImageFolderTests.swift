import Foundation
import XCTest
import DataIO
import TensorCore

final class ImageFolderTests: XCTestCase {
    /// Writes a solid-colour PNG of `value` (per channel, [0, 1]).
    private func writeSolid(_ path: String, width: Int, height: Int, channels: Int, value: [Float]) throws {
        let pixels = (0..<(width * height)).flatMap { _ in value }
        try ImageCodec.writePNG(PixelImage(width: width, height: height, channels: channels, pixels: pixels), to: path)
    }

    func testClassFoldersGiveSortedLabelsShapesAndValues() throws {
        let root = try makeTemporaryFolder(self).appendingPathComponent("pets")
        for name in ["dog", "cat", "bird/nested"] {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(name), withIntermediateDirectories: true)
        }
        try writeSolid(root.path + "/cat/a.png", width: 20, height: 10, channels: 3, value: [1, 0, 0])   // red, wide
        try writeSolid(root.path + "/cat/b.PNG", width: 8, height: 8, channels: 1, value: [0.5])
        try writeSolid(root.path + "/dog/c.png", width: 4, height: 6, channels: 4, value: [0, 0, 0, 0])   // transparent → white
        try writeSolid(root.path + "/bird/nested/d.png", width: 16, height: 16, channels: 2, value: [0, 1])  // black, opaque
        // A JPEG from the fixtures and two broken files.
        try FileManager.default.copyItem(atPath: fixtureURL("jpeg/gray_baseline.jpg").path, toPath: root.path + "/dog/e.jpeg")
        try Data("not an image".utf8).write(to: root.appendingPathComponent("dog/broken.jpg"))
        try Data([0x89, 0x50, 0x4E, 0x47]).write(to: root.appendingPathComponent("cat/cut.png"))
        try Data("ignored".utf8).write(to: root.appendingPathComponent("dog/notes.txt"))

        var warnings: [String] = []
        let folder = try ImageFolder(path: root.path, size: 8, channels: 3, warn: { warnings.append($0) })
        XCTAssertEqual(folder.classNames, ["bird", "cat", "dog"])
        XCTAssertEqual(folder.count, 5)
        XCTAssertEqual(folder.images.shape, [5, 3, 8, 8])
        XCTAssertEqual(folder.labels, [0, 1, 1, 2, 2])
        XCTAssertEqual(folder.files.map { ($0 as NSString).lastPathComponent }, ["d.png", "a.png", "b.PNG", "c.png", "e.jpeg"])
        XCTAssertEqual(folder.skipped.count, 2)
        XCTAssertEqual(warnings.count, 2)
        XCTAssertTrue(warnings.contains { $0.contains("broken.jpg") })
        XCTAssertTrue(warnings.contains { $0.contains("cut.png") })
        XCTAssertTrue(folder.summary.contains("5 images (3 classes, 3x8x8), 2 skipped"), folder.summary)
        let plane = 64
        let images = folder.images.scalars
        XCTAssertEqual(Array(images[0..<(3 * plane)]), [Float](repeating: -1, count: 3 * plane))  // black bird
        XCTAssertEqual(Array(images[(3 * plane)..<(4 * plane)]), [Float](repeating: 1, count: plane))  // red cat, R
        XCTAssertEqual(Array(images[(4 * plane)..<(6 * plane)]), [Float](repeating: -1, count: 2 * plane))  // G, B
        XCTAssertEqual(images[6 * plane], 128.0 / 255 * 2 - 1, accuracy: 1e-6)  // gray cat
        XCTAssertEqual(Array(images[(9 * plane)..<(12 * plane)]), [Float](repeating: 1, count: 3 * plane))  // transparent dog → white
        XCTAssertTrue(images.allSatisfy { $0 >= -1 && $0 <= 1 })
    }

    func testUnlabelledFolderBatchesAndCaches() throws {
        let root = try makeTemporaryFolder(self).appendingPathComponent("flat")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        for i in 0..<10 { try writeSolid(root.path + "/img\(i).png", width: 6, height: 6, channels: 1, value: [Float(i) / 9]) }
        ImageFolder.clearMemoryCache()
        let folder = try ImageFolder(path: root.path, size: 4, channels: 1, diskCache: true)
        XCTAssertFalse(folder.loadedFromCache)
        XCTAssertEqual(folder.classNames, [])
        XCTAssertEqual(folder.labels, [])
        XCTAssertEqual(folder.images.shape, [10, 1, 4, 4])
        // Batches: every image exactly once per epoch, a seeded order that differs per epoch.
        let epoch0 = Array(folder.batches(size: 4, seed: 1, epoch: 0))
        XCTAssertEqual(epoch0.map { $0.images.shape[0] }, [4, 4, 2])
        XCTAssertEqual(epoch0.flatMap { $0.labels }, [Int](repeating: 0, count: 10))
        let firstValues = { (batches: [(images: Tensor, labels: [Int])]) in batches.flatMap { b in (0..<b.images.shape[0]).map { b.images.scalars[$0 * 16] } } }
        let order0 = firstValues(epoch0)
        XCTAssertEqual(Set(order0.map { Int((($0 + 1) / 2 * 9).rounded()) }), Set(0..<10))
        XCTAssertEqual(order0, firstValues(Array(folder.batches(size: 4, seed: 1, epoch: 0))))
        XCTAssertNotEqual(order0, firstValues(Array(folder.batches(size: 4, seed: 1, epoch: 1))))
        XCTAssertEqual(folder.batches(size: 4, seed: 1, dropLast: true).batchCount, 2)
        // The second load comes from memory; after clearing memory, from the disk cache.
        XCTAssertTrue(try ImageFolder(path: root.path, size: 4, channels: 1).loadedFromCache)
        ImageFolder.clearMemoryCache()
        let fromDisk = try ImageFolder(path: root.path, size: 4, channels: 1, diskCache: true)
        XCTAssertTrue(fromDisk.loadedFromCache)
        XCTAssertEqual(fromDisk.images.scalars, folder.images.scalars)
        XCTAssertEqual(fromDisk.files, folder.files)
        // Changing a file invalidates both caches.
        try writeSolid(root.path + "/img3.png", width: 7, height: 6, channels: 1, value: [1])
        let changed = try ImageFolder(path: root.path, size: 4, channels: 1, diskCache: true)
        XCTAssertFalse(changed.loadedFromCache)
        XCTAssertEqual(changed.images.scalars[3 * 16], 1)
    }

    func testRandomFlipMirrorsRows() throws {
        let pixels: [Float] = [-1, -0.5, 0.5, 1]
        let set = ImageSet(images: Tensor(shape: [1, 1, 1, 4], data: pixels), labels: [0], classNames: ["x"])
        var seen = Set<[Float]>()
        for epoch in 0..<20 {
            for batch in set.batches(size: 1, seed: 5, epoch: epoch, randomHorizontalFlip: true) { seen.insert(batch.images.scalars) }
        }
        XCTAssertEqual(seen, [pixels, pixels.reversed()])
    }

    func testEmptyOrUnusableFolderIsAnError() throws {
        let root = try makeTemporaryFolder(self)
        assertThrowsDataIOError([root.path, "no usable image", "no .png"]) { _ = try ImageFolder(path: root.path, size: 8, channels: 1) }
        try Data("junk".utf8).write(to: root.appendingPathComponent("x.png"))
        assertThrowsDataIOError([root.path, "none of the 1 image files could be decoded"]) {
            _ = try ImageFolder(path: root.path, size: 8, channels: 1, warn: { _ in })
        }
        assertThrowsDataIOError(["channels must be 1 or 3"]) { _ = try ImageFolder(path: root.path, size: 8, channels: 2) }
    }
}
