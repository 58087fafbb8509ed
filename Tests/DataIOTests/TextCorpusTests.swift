import Foundation
import XCTest
import DataIO
import TensorCore

final class TextCorpusTests: XCTestCase {
    func testVocabularyEncodingSplitAndBatches() throws {
        let corpus = try TextCorpus(text: "hello wörld, hello!")
        XCTAssertEqual(String(String.UnicodeScalarView(corpus.vocabulary)), " !,dehlorwö")
        XCTAssertEqual(corpus.vocabularySize, 11)
        XCTAssertEqual(try corpus.encode("hö!"), [5, 10, 1])
        XCTAssertEqual(corpus.decode(corpus.tokens), "hello wörld, hello!")
        XCTAssertEqual(corpus.trainTokens.count, 17)  // int(19 * 0.9)
        XCTAssertEqual(corpus.validationTokens.count, 2)
        assertThrowsDataIOError(["U+7A", "not in the vocabulary"]) { _ = try corpus.encode("z") }

        var generator = RandomGenerator(seed: 42)
        let batch = try corpus.batch(.train, batchSize: 3, blockLength: 5, generator: &generator)
        XCTAssertEqual(batch.shape, [3, 5])
        XCTAssertEqual(batch.x.count, 15)
        let train = corpus.trainTokens
        for b in 0..<3 {
            let row = Array(batch.x[(b * 5)..<(b * 5 + 5)])
            let next = Array(batch.y[(b * 5)..<(b * 5 + 5)])
            // Each row is a real window of the training tokens and y is x shifted by one.
            let start = (0..<(train.count - 5)).first { Array(train[$0..<($0 + 5)]) == row && Array(train[($0 + 1)...($0 + 5)]) == next }
            XCTAssertNotNil(start)
        }
        var again = RandomGenerator(seed: 42)
        XCTAssertEqual(try corpus.batch(.train, batchSize: 3, blockLength: 5, generator: &again), batch)
        assertThrowsDataIOError(["validation text has 2 characters"]) { _ = try corpus.batch(.validation, batchSize: 1, blockLength: 4, generator: &generator) }
    }

    func testFolderAndInvalidUTF8() throws {
        let folder = try makeTemporaryFolder(self)
        try Data("ab".utf8).write(to: folder.appendingPathComponent("1.txt"))
        try FileManager.default.createDirectory(at: folder.appendingPathComponent("sub"), withIntermediateDirectories: true)
        try Data("cd".utf8).write(to: folder.appendingPathComponent("sub/2.txt"))
        let corpus = try TextCorpus(path: folder.path, separator: "|")
        XCTAssertEqual(corpus.decode(corpus.tokens), "ab|cd")
        // "é" then a lone continuation byte at offset 3, then an overlong "/".
        try Data([0x61, 0xC3, 0xA9, 0x80, 0x62]).write(to: folder.appendingPathComponent("sub/3.txt"))
        assertThrowsDataIOError(["3.txt", "invalid UTF-8 at byte offset 3"]) { _ = try TextCorpus(path: folder.path) }
        try Data([0x61, 0xC0, 0xAF]).write(to: folder.appendingPathComponent("sub/3.txt"))
        assertThrowsDataIOError(["3.txt", "byte offset 1"]) { _ = try TextCorpus(path: folder.path) }
        try Data([0x61, 0xE2, 0x82]).write(to: folder.appendingPathComponent("sub/3.txt"))  // truncated sequence
        assertThrowsDataIOError(["3.txt", "byte offset 1"]) { _ = try TextCorpus(path: folder.path) }
    }

    func testTinyShakespeareFigures() throws {
        // ../shared beside the package (three folders above this file), when it is there
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/data/text/tinyshakespeare.txt").path
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("needs \(path) (../shared beside the package)") }
        let corpus = try TextCorpus(path: path)
        XCTAssertEqual(corpus.vocabularySize, 65)
        XCTAssertEqual(corpus.trainTokens.count, 1_003_854)
        XCTAssertEqual(corpus.validationTokens.count, 111_540)
        XCTAssertEqual(String(String.UnicodeScalarView(corpus.vocabulary.prefix(13))), "\n !$&',-.3:;?")
        XCTAssertEqual(corpus.decode(Array(corpus.tokens.prefix(14))), "First Citizen:")
    }
}
