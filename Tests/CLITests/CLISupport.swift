import XCTest
import Foundation

/// What the CLI tests share: the forge binary this test build made, a temporary folder, and a run
/// of the binary with its exit status and output.
class CLITestCase: XCTestCase {
    /// The forge binary beside the test bundle (on Linux the bundle's URL is the products folder).
    var forge: String {
        get throws {
            var dir = Bundle(for: CLITestCase.self).bundleURL
            for _ in 0..<3 {
                let candidate = dir.appendingPathComponent("forge").path
                if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
                dir = dir.deletingLastPathComponent()
            }
            throw XCTSkip("no forge binary beside \(Bundle(for: CLITestCase.self).bundleURL.path)")
        }
    }

    /// The package's folder (the shipped checkpoints are in its checkpoints/), found from this source file.
    var packageFolder: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    }

    /// A new temporary folder, removed after the test.
    func folder() -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("forge-cli-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    /// Runs forge with `arguments` (in `directory` when given, with `environment` added to this
    /// process's); returns (exit status, stdout, stderr).
    @discardableResult
    func run(_ arguments: [String], in directory: String? = nil, environment: [String: String] = [:]) throws -> (Int32, String, String) {
        try runExecutable(try forge, arguments, in: directory, environment: environment)
    }

    /// Runs `executable` with `arguments` (in `directory` when given, with `environment` added to this
    /// process's); returns (exit status, stdout, stderr).
    func runExecutable(_ executable: String, _ arguments: [String], in directory: String? = nil,
                       environment: [String: String] = [:]) throws -> (Int32, String, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
    }
}

/// The tensors of a safetensors file as raw bytes by name (the header's `__metadata__` left out),
/// read with no Forge module, so a test can compare two checkpoints bit for bit.
func safetensorsPayloads(_ path: String) throws -> [String: Data] {
    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    let n = bytes.prefix(8).enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) }
    guard let header = try JSONSerialization.jsonObject(with: bytes.subdata(in: 8..<(8 + n))) as? [String: Any] else { return [:] }
    var out: [String: Data] = [:]
    for (name, entry) in header where name != "__metadata__" {
        guard let e = entry as? [String: Any], let range = e["data_offsets"] as? [Int], range.count == 2 else { continue }
        out[name] = bytes.subdata(in: (8 + n + range[0])..<(8 + n + range[1]))
    }
    return out
}

