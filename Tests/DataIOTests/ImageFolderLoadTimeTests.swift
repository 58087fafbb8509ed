import Foundation
import XCTest
import DataIO
import TensorCore

final class ImageFolderLoadTimeTests: XCTestCase {
    /// Converts Fashion-MNIST's 10,000 test images to PNGs in class folders, loads them with
    /// ImageFolder and checks the result equals the IDX data (PNG is lossless); prints the load time.
    func testTenThousandFashionMNISTPNGsLoadQuickly() throws {
        let path = "/usr/share/datasets/fashion-mnist"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("Fashion-MNIST is not installed") }
        let reference = try ImageDataset.load(path: path, size: 28, channels: 1, split: .test)
        // On tmpfs when there is one: the fixture step creates 10,000 files.
        let shm = URL(fileURLWithPath: "/dev/shm/forge-dataio-\(UUID().uuidString)")
        let base = (try? FileManager.default.createDirectory(at: shm, withIntermediateDirectories: true)) != nil ? shm : try makeTemporaryFolder(self)
        addTeardownBlock { try? FileManager.default.removeItem(at: base) }
        let root = base.appendingPathComponent("fashion-png")
        for name in reference.classNames {
            try FileManager.default.createDirectory(at: root.appendingPathComponent(name.replacingOccurrences(of: "/", with: "-")), withIntermediateDirectories: true)
        }
        let fixtureStart = Date()
        // Fixture step: write the PNGs (in parallel; plain writes, no fsync per file).
        let values = reference.images.scalars
        let folders = reference.classNames.map { root.path + "/" + $0.replacingOccurrences(of: "/", with: "-") }
        let failures = UnsafeSendableBox(NSLock())
        nonisolated(unsafe) var failed = 0
        parallelFor(reference.count, grain: 64) { start, end in
            for i in start..<end {
                let pixels = values[(i * 784)..<((i + 1) * 784)].map { ($0 + 1) / 2 }
                let name = folders[reference.labels[i]] + String(format: "/%05d.png", i)
                do {
                    let png = try ImageCodec.encodePNG(PixelImage(width: 28, height: 28, channels: 1, pixels: pixels), compressionLevel: 1)
                    try Data(png).write(to: URL(fileURLWithPath: name))
                } catch {
                    failures.value.lock(); failed += 1; failures.value.unlock()
                }
            }
        }
        XCTAssertEqual(failed, 0)

        print(String(format: "fixture step: 10000 PNGs written in %.2f s", Date().timeIntervalSince(fixtureStart)))
        ImageFolder.clearMemoryCache()
        let start = Date()
        let folder = try ImageFolder(path: root.path, size: 28, channels: 1)
        let seconds = Date().timeIntervalSince(start)
        print(String(format: "ImageFolder: %d 28x28 PNGs decoded in %.2f s on %d threads", folder.count, seconds, Threads.count))
        // The time is reported, not asserted: unit tests never assert timings (the machine is shared).
        XCTAssertEqual(folder.count, 10_000)
        XCTAssertEqual(folder.images.shape, [10_000, 1, 28, 28])
        XCTAssertEqual(folder.classNames, ["Ankle boot", "Bag", "Coat", "Dress", "Pullover", "Sandal", "Shirt", "Sneaker", "T-shirt-top", "Trouser"])
        // Same pixels as the IDX set: image i of the folder is the file named by its IDX index.
        let folderValues = folder.images.scalars
        for (slot, file) in folder.files.enumerated().filter({ $0.offset % 97 == 0 }) {
            let index = Int((file as NSString).lastPathComponent.prefix(5))!
            XCTAssertEqual(Array(folderValues[(slot * 784)..<((slot + 1) * 784)]), Array(values[(index * 784)..<((index + 1) * 784)]))
            XCTAssertEqual(folder.classNames[folder.labels[slot]], reference.classNames[reference.labels[index]].replacingOccurrences(of: "/", with: "-"))
        }
    }
}
