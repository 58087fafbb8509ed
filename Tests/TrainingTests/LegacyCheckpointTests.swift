import XCTest
import Foundation
import TensorCore
import DataIO
import Models
import Training

/// Checkpoints written before the one training loop and checkpoint schema (Fixtures/legacy, made by
/// commit be947bc: see its README) still load, sample what that code sampled, and resume.
final class LegacyCheckpointTests: XCTestCase {
    private func fixture(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.url(forResource: "Fixtures/legacy/" + name, withExtension: nil)).path
    }

    private func folder() -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("forge-legacy-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    /// The old char layout reads as a Forge checkpoint of kind "char" at its saved iteration, with
    /// its optimizer state and its data and dropout generators.
    func testOldCharCheckpointReadsAsTheOneSchema() throws {
        let saved = try Checkpoint.load(try fixture("char-checkpoint.safetensors"), expectedKind: "char")
        XCTAssertEqual(saved.kind, "char")
        XCTAssertEqual(saved.state.step, 6)
        XCTAssertEqual(Set(saved.generators.keys), ["data", "dropout"])
        XCTAssertNotNil(saved.tensors["optimizer.model.state.0.exp_avg"])
        XCTAssertNotNil(saved.tensors["lm_head.weight"])
        XCTAssertThrowsError(try Checkpoint.load(try fixture("char-checkpoint.safetensors"), expectedKind: "gan")) {
            XCTAssertTrue("\($0)".contains("not a \"gan\""), "\($0)")
        }
    }

    /// An old char run resumes in the one loop: it continues from step 6 to 10 in the same folder.
    func testOldCharRunResumes() throws {
        let dir = folder()
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: try fixture("char-checkpoint.safetensors"), toPath: dir + "/checkpoint.safetensors")
        // The fixture's run trained on the first 60,000 characters of tinyshakespeare; any text with
        // the same vocabulary will do to continue it, so rebuild that vocabulary from the checkpoint.
        let vocabulary = try CharCheckpoint.load(path: dir + "/checkpoint.safetensors").vocabulary
        let text = String(repeating: String(String.UnicodeScalarView(vocabulary)), count: 400)
        let corpus = try TextCorpus(text: text)
        XCTAssertEqual(corpus.vocabulary, vocabulary)
        let meta = try Checkpoint.load(dir + "/checkpoint.safetensors").metadata
        var options = try XCTUnwrap(CharTrainingOptions(metadata: meta))
        options.iterations = 10
        let task = try CharTrainingTask(corpus: corpus, options: options)
        var loopOptions = task.trainingOptions(runDirectory: dir, resume: true)
        (loopOptions.handleInterrupts, loopOptions.showProgress) = (false, false)
        let summary = try TrainingLoop(task: task, options: loopOptions, log: { _ in }).run()
        XCTAssertEqual(summary.state.step, 10)
        XCTAssertEqual(summary.outcome, .finished)
        XCTAssertEqual(try Checkpoint.load(dir + "/checkpoint.safetensors").metadata["forge.kind"], "char")
    }

    /// The old char checkpoint and the shipped model sample what the old code sampled.
    func testOldCharCheckpointsSampleAsBefore() throws {
        let ck = try CharCheckpoint.load(path: try fixture("char-checkpoint.safetensors"))
        XCTAssertEqual(ck.model.config.layers, 1)
        let shipped = packageFolder.appendingPathComponent("checkpoints/shakespeare-char.safetensors").path
        let model = try CharCheckpoint.load(path: shipped)
        XCTAssertEqual(try Checkpoint.load(shipped).kind, "char")
        let expected = try String(contentsOfFile: try fixture("shipped-greedy.txt"), encoding: .utf8)
        // greedy decoding of 100 characters after "ROMEO:" (the old CLI printed prompt + text + "\n")
        var tokens = try model.encode("ROMEO:")
        for _ in 0..<100 {
            let logits = withNoGrad { model.model.forward(Array(tokens.suffix(model.model.config.blockSize)), batch: 1,
                                                          length: min(tokens.count, model.model.config.blockSize)) }
            let V = model.model.config.vocabSize
            let last = Array(logits.scalars.suffix(V))
            tokens.append(Int32(last.indices.max { last[$0] < last[$1] }!))
        }
        XCTAssertEqual(model.decode(tokens) + "\n", expected)
    }
}
