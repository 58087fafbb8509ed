import XCTest
import Foundation

/// scripts/python-stdlib-corpus.py --code-only builds the corpus the shipped code model learned from; its
/// docstring and comment stripping is checked by the script's own unit tests, run here so CI runs them.
final class CodeCorpusScriptTests: XCTestCase {
    func testCodeOnlyStrippingKeepsTheProgram() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") else {
            throw XCTSkip("/usr/bin/python3 is not installed")
        }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/test_python_stdlib_corpus.py").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        process.arguments = [script]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0, output)
        XCTAssertTrue(output.contains("Ran 7 tests"), output)
    }
}
