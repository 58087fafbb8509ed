import XCTest
import Foundation

/// `forge generate text --validate` as a user runs it: the valid rate printed, the verdicts in the
/// manifest, and a missing or hanging checker as a clear error with exit status 2.
final class GenerateTextCLITests: CLITestCase {
    private var shippedModel: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("checkpoints/shakespeare-char.safetensors").path
    }

    func testValidRateAndManifestColumns() throws {
        let dir = folder()
        // valid = the item holds an "e"; 6 items of 20 characters from the shipped Shakespeare model
        let (status, out, err) = try run(["generate", "text", "--checkpoint", shippedModel, "--count", "6", "--length", "20",
                                          "--out", dir + "/t", "--validate", "grep -q e {} || { echo no e >&2; exit 1; }", "--keep-invalid"])
        XCTAssertEqual(status, 0, err)
        let manifest = try String(contentsOfFile: dir + "/t/manifest.csv", encoding: .utf8)
        let lines = manifest.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines[0].hasSuffix(",parameters,valid,check_error"), lines[0])
        var valid = 0
        for i in 0..<6 {
            let item = try String(contentsOfFile: dir + "/t/" + String(format: "%06d.txt", i), encoding: .utf8)
            let row = lines.first { $0.hasPrefix(String(format: "%06d.txt,", i)) } ?? ""
            XCTAssertTrue(row.hasSuffix(item.contains("e") ? ",true," : ",false,no e"), "item \(i): \(row)")
            if item.contains("e") { valid += 1 }
        }
        XCTAssertTrue(out.contains(String(format: "valid: %d of 6 checked items (%.1f %%), invalid ones kept", valid, 100 * Double(valid) / 6)), out)
    }

    func testMissingCheckerIsAClearError() throws {
        let dir = folder()
        let (status, _, err) = try run(["generate", "text", "--checkpoint", shippedModel, "--count", "2", "--length", "5",
                                        "--out", dir + "/t", "--validate", "forge-no-such-checker {}"])
        XCTAssertEqual(status, 2, err)
        XCTAssertTrue(err.contains("--validate: the checker `forge-no-such-checker {}` could not be run (exit 127"), err)
        XCTAssertTrue(err.contains("check that the command exists"), err)
    }

    func testHangingCheckerIsAClearError() throws {
        let dir = folder()
        let (status, _, err) = try run(["generate", "text", "--checkpoint", shippedModel, "--count", "2", "--length", "5",
                                        "--out", dir + "/t", "--validate", "sleep 60; true {}", "--validate-timeout", "0.5"])
        XCTAssertEqual(status, 2, err)
        XCTAssertTrue(err.contains("did not finish within 0.5 s on 00000"), err)
        XCTAssertTrue(err.contains("(--validate-timeout 0.5)"), err)
    }
}
