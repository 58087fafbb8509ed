import Foundation
import XCTest
import DataIO
import TensorCore

/// Class names come from an explicit source, stated in `classSource`: the sub-folder names, a
/// classes.txt beside IDX files, or Fashion-MNIST's names recognised by its label files (not by the
/// folder's name: Fashion-MNIST linked as mydata/ still gets "Sneaker").
final class ClassNamesTests: XCTestCase {
    private func idx(_ dims: [Int], _ data: [UInt8]) -> [UInt8] {
        [0, 0, 8, UInt8(dims.count)] + dims.flatMap { d in [UInt8(d >> 24 & 0xFF), UInt8(d >> 16 & 0xFF), UInt8(d >> 8 & 0xFF), UInt8(d & 0xFF)] } + data
    }

    private func idxFolder(labels: [UInt8], named name: String = "mydata") throws -> URL {
        let root = try makeTemporaryFolder(self).appendingPathComponent(name)
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try Data(idx([labels.count, 1, 1], [UInt8](repeating: 7, count: labels.count))).write(to: root.appendingPathComponent("train-images-idx3-ubyte"))
        try Data(idx([labels.count], labels)).write(to: root.appendingPathComponent("train-labels-idx1-ubyte"))
        return root
    }

    func testNumberedWithoutANamesFileAndSaysHowToName() throws {
        let set = try ImageDataset.load(path: try idxFolder(labels: [2, 0, 1]).path, size: 1, channels: 1)
        XCTAssertEqual(set.classNames, ["0", "1", "2"])
        XCTAssertTrue(set.classSource.contains("classes.txt"), set.classSource)
    }

    func testClassesFileNamesTheClasses() throws {
        let root = try idxFolder(labels: [2, 0, 1])
        try Data("cat\ndog\nbird\n\n".utf8).write(to: root.appendingPathComponent("classes.txt"))
        let set = try ImageDataset.load(path: root.path, size: 1, channels: 1)
        XCTAssertEqual(set.classNames, ["cat", "dog", "bird"])
        XCTAssertEqual(set.classSource, "classes.txt")
        try Data("cat\ndog\n".utf8).write(to: root.appendingPathComponent("classes.txt"))
        XCTAssertThrowsError(try ImageDataset.load(path: root.path, size: 1, channels: 1)) { XCTAssertTrue("\($0)".contains("label 2 has no class name"), "\($0)") }
        try Data("cat\n\ndog\n".utf8).write(to: root.appendingPathComponent("classes.txt"))
        XCTAssertThrowsError(try ImageDataset.load(path: root.path, size: 1, channels: 1)) { XCTAssertTrue("\($0)".contains("one distinct, non-empty"), "\($0)") }
    }

    /// Fashion-MNIST's own test labels start 9, 2, 1, 1, 6, …: recognised in any folder.
    func testFashionMNISTIsRecognisedByItsLabelsNotItsFolderName() throws {
        var labels: [UInt8] = [9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5, 7, 3, 4, 1]
        labels += [UInt8](repeating: 0, count: 10_000 - labels.count)
        let set = try ImageDataset.load(path: try idxFolder(labels: labels).path, size: 1, channels: 1)
        XCTAssertEqual(set.classNames[7], "Sneaker")
        XCTAssertTrue(set.classSource.contains("Fashion-MNIST"), set.classSource)
        // the same folder name with other labels: numbered
        let other = try ImageDataset.load(path: try idxFolder(labels: [UInt8](repeating: 3, count: 10_000), named: "fashion-mnist").path,
                                          size: 1, channels: 1)
        XCTAssertEqual(other.classNames.last, "3")
    }
}
