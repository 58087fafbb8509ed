import XCTest
import Foundation

/// `forge lr-find` and `forge explain char` as a user runs them: outputs written where --out says,
/// nothing else, and bad values refused with exit 2 naming the flag.
final class ExplainLRFindCLITests: CLITestCase {
    func testLRFindCharWritesOnlyItsOutputsAndSuggestsARate() throws {
        let dir = folder()
        let line = "First Citizen: Before we proceed any further, hear me speak. All: Speak, speak.\n"
        try String(repeating: line, count: 60).write(toFile: dir + "/input.txt", atomically: true, encoding: .utf8)
        let (status, stdout, stderr) = try run(["lr-find", "char", "--data", "input.txt", "--layers", "1", "--heads", "2", "--embd", "16",
                                                "--block", "8", "--batch", "4", "--steps", "40", "--out", "find"], in: dir)
        XCTAssertEqual(status, 0, stderr)
        XCTAssertTrue(stdout.contains("suggested --lr "), stdout)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir + "/find").sorted(), ["lr_find.csv", "lr_find.png"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["find", "input.txt"])
        let (bad, _, message) = try run(["lr-find", "char", "--data", "input.txt", "--start-lr", "0"], in: dir)
        XCTAssertEqual(bad, 2)
        XCTAssertTrue(message.contains("--start-lr"), message)
    }

    func testExplainCharOnTheShippedModelWritesTheHeatmapsAndTheReport() throws {
        let dir = folder()
        var package = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { package.deleteLastPathComponent() }
        let shipped = package.appendingPathComponent("checkpoints/shakespeare-char.safetensors").path
        guard FileManager.default.fileExists(atPath: shipped) else { throw XCTSkip("no shipped model at \(shipped)") }
        let (status, stdout, stderr) = try run(["explain", "char", "--checkpoint", shipped, "--text", "ROMEO:\nBut soft",
                                                "--layer", "0", "--out", "att.png"], in: dir)
        XCTAssertEqual(status, 0, stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/att.png"))
        for part in ["layer 0 head 5:", "next character (top 5):", "logit lens", "after layer 5"] {
            XCTAssertTrue(stdout.contains(part), "\(part) missing from:\n\(stdout)")
        }
        let (bad, _, message) = try run(["explain", "char", "--checkpoint", shipped, "--text", "ROMEO", "--head", "99"], in: dir)
        XCTAssertEqual(bad, 2)
        XCTAssertTrue(message.contains("--head"), message)
    }
}
