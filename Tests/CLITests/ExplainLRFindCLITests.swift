import XCTest
import Foundation
import DataIO
import TensorCore

/// `forge lr-find`, `forge explain char` and `forge sweep vae|gan` as a user runs them: outputs written
/// where --out says, nothing else, and bad values refused with exit 2 naming the flag.
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
        let shipped = packageFolder + "/checkpoints/shakespeare-char.safetensors"
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

    /// A folder of two classes of 28×28 grey PNGs (light squares at the left or the right).
    private func twoClassFolder(in dir: String) throws -> String {
        for (name, offset) in [("left", 4), ("right", 16)] {
            try FileManager.default.createDirectory(atPath: "\(dir)/images/\(name)", withIntermediateDirectories: true)
            for i in 0..<12 {
                var pixels = [Float](repeating: 0, count: 28 * 28)
                for y in (8 + i % 3)..<(16 + i % 3) { for x in offset..<(offset + 8) { pixels[y * 28 + x] = 1 } }
                try ImageCodec.writePNG(Tensor(shape: [1, 28, 28], data: pixels), to: "\(dir)/images/\(name)/\(i).png")
            }
        }
        return dir + "/images"
    }

    func testSweepVAEPrintsTheTableAndWritesTheBestFlags() throws {
        let dir = folder()
        let data = try twoClassFolder(in: dir)
        let (status, stdout, stderr) = try run(["sweep", "vae", "--data", data, "--channels", "1", "--budget-minutes", "0.1", "--trials", "2",
                                                "--eta", "2", "--out", dir + "/sweep"], in: dir)
        XCTAssertEqual(status, 0, stderr)
        XCTAssertTrue(stdout.contains("test −ELBO") && stdout.contains("← best") && stdout.contains("best: forge train vae --data"), stdout)
        let files = try FileManager.default.contentsOfDirectory(atPath: dir + "/sweep").sorted()
        XCTAssertEqual(files, ["best.safetensors", "best_flags.txt", "results.csv", "sweep.json", "sweep.png", "trial-00", "trial-01"])
        XCTAssertTrue(try String(contentsOfFile: dir + "/sweep/best_flags.txt", encoding: .utf8).hasPrefix("--arch mlp --latent "))
    }

    /// Bad char-sweep flags are refused by name before any trial runs.
    func testSweepCharRefusesBadFlagsByName() throws {
        let dir = folder()
        try String(repeating: "to be or not to be, that is the question. ", count: 100).write(toFile: dir + "/t.txt", atomically: true, encoding: .utf8)
        for (flags, named) in [(["--eval-chars", "1"], "--eval-chars"), (["--block", "0"], "--block")] {
            let (status, _, stderr) = try run(["sweep", "char", "--data", dir + "/t.txt", "--budget-minutes", "1", "--out", dir + "/sweep"] + flags, in: dir)
            XCTAssertNotEqual(status, 0, stderr)
            XCTAssertTrue(stderr.contains(named), stderr)
            XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/sweep"))
        }
    }

    func testSweepGANRefusesDataWithoutClassesNamingTheFlag() throws {
        let dir = folder()
        try FileManager.default.createDirectory(atPath: dir + "/flat", withIntermediateDirectories: true)
        for i in 0..<4 { try ImageCodec.writePNG(Tensor(shape: [1, 8, 8], repeating: Float(i) / 4), to: "\(dir)/flat/\(i).png") }
        let (status, _, stderr) = try run(["sweep", "gan", "--data", dir + "/flat", "--budget-minutes", "1", "--out", dir + "/sweep"], in: dir)
        XCTAssertEqual(status, 2, stderr)
        XCTAssertTrue(stderr.contains("--data") && stderr.contains("classes"), stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/sweep"))
    }
}
