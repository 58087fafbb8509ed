import Foundation
import XCTest
import DataIO
import TensorCore

/// The committed fixtures folder (copied into the test bundle).
func fixtureURL(_ relativePath: String) -> URL {
    Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent(relativePath)
}

/// A fresh temporary folder, removed when the test case ends.
func makeTemporaryFolder(_ testCase: XCTestCase) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("forge-dataio-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    testCase.addTeardownBlock { try? FileManager.default.removeItem(at: url) }
    return url
}

func loadJSON(_ url: URL) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
}

/// Asserts that `body` throws a `DataIOError` whose description contains every one of `fragments`.
func assertThrowsDataIOError(_ fragments: [String], file: StaticString = #filePath, line: UInt = #line,
                             _ body: () throws -> Void) {
    do {
        try body()
        XCTFail("expected an error containing \(fragments)", file: file, line: line)
    } catch let error as DataIOError {
        for fragment in fragments {
            XCTAssertTrue(error.description.contains(fragment), "\"\(error.description)\" does not contain \"\(fragment)\"", file: file, line: line)
        }
    } catch {
        XCTFail("unexpected error type \(error)", file: file, line: line)
    }
}

/// A Python interpreter with the `safetensors` and `numpy` packages, or nil (tests then skip).
let pythonWithSafeTensors: String? = {
    let candidates = [ProcessInfo.processInfo.environment["FORGE_PYTHON"], "/work/torch-venv/bin/python",
                      "/tmp/st-venv/bin/python", "/usr/bin/python3"].compactMap { $0 }
    for candidate in candidates where FileManager.default.isExecutableFile(atPath: candidate) {
        if (try? runProcess(candidate, ["-c", "import safetensors.numpy, numpy"]))?.status == 0 { return candidate }
    }
    return nil
}()

/// Runs `executable` with `arguments`; returns its exit status and standard output.
func runProcess(_ executable: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}
