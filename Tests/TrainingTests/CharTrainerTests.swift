import XCTest
import Foundation
import TensorCore
import DataIO
import Models
import Training

final class CharTrainerTests: XCTestCase {
    private func tinyOptions(iterations: Int) -> CharTrainingOptions {
        var o = CharTrainingOptions()
        (o.layers, o.heads, o.embedding, o.blockSize, o.batchSize) = (1, 2, 16, 8, 4)
        (o.iterations, o.evalEvery, o.evalIterations, o.warmupIterations, o.logEvery) = (iterations, 5, 2, 2, 5)
        o.learningRate = 3e-3
        o.dropout = 0.1  // so resuming must also restore the dropout masks' generator
        return o
    }

    private func folder() throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("forge-char-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    private let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 20)

    /// A stopped run saves its full state; resuming it reaches the same weights as an uninterrupted run.
    func testInterruptAndResumeMatchUninterruptedRun() throws {
        let corpus = try TextCorpus(text: text)
        let straight = try CharTrainer(corpus: corpus, options: tinyOptions(iterations: 12), outputDirectory: try folder())
        _ = try straight.run { _ in }

        let dir = try folder()
        let first = try CharTrainer(corpus: corpus, options: tinyOptions(iterations: 12), outputDirectory: dir)
        let r1 = try first.run(shouldStop: { first.iteration >= 7 }) { _ in }
        XCTAssertTrue(r1.interrupted)
        XCTAssertEqual(first.iteration, 7)
        let resumed = try CharTrainer(corpus: corpus, options: tinyOptions(iterations: 12), outputDirectory: dir, resume: true)
        XCTAssertEqual(resumed.iteration, 7)
        _ = try resumed.run { _ in }
        XCTAssertEqual(resumed.iteration, 12)
        for ((n, a), (_, b)) in zip(straight.model.namedParameters(), resumed.model.namedParameters()) {
            XCTAssertEqual(a.scalars, b.scalars, n)
        }
        // files a run leaves behind
        for f in ["checkpoint.safetensors", "best.safetensors", "metrics.csv", "loss.png"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/" + f), f)
        }
        let csv = try String(contentsOfFile: dir + "/metrics.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.first, "step,epoch,wall_s,tokens_per_s,train_loss,val_loss,lr")
        XCTAssertEqual(csv.dropFirst().map { Int($0.split(separator: ",")[0])! }, [0, 5, 10, 12])
    }

    /// A checkpoint written before the dropout generator was saved still resumes (with freshly seeded
    /// dropout masks) and trains on to the end.
    func testResumesACheckpointWithoutTheDropoutGenerator() throws {
        let corpus = try TextCorpus(text: text)
        let dir = try folder()
        let first = try CharTrainer(corpus: corpus, options: tinyOptions(iterations: 8), outputDirectory: dir)
        _ = try first.run(shouldStop: { first.iteration >= 4 }) { _ in }
        let url = URL(fileURLWithPath: dir + "/checkpoint.safetensors")
        let file = try SafeTensors.read(url)
        XCTAssertNotNil(file.entries["trainer.dropout_generator"])
        let items: [SafeTensors.Item] = try file.names.filter { $0 != "trainer.dropout_generator" }.map { name in
            let entry = file.entries[name]!
            return entry.dtype == .I64 ? .int64(name, shape: entry.shape, values: try file.int64Array(name))
                                         : .float32(name, try file.tensor(name))
        }
        try SafeTensors.write(items: items, metadata: file.metadata, to: url)
        XCTAssertNil(try SafeTensors.read(url).entries["trainer.dropout_generator"])
        let resumed = try CharTrainer(corpus: corpus, options: tinyOptions(iterations: 8), outputDirectory: dir, resume: true)
        XCTAssertEqual(resumed.iteration, 4)
        let result = try resumed.run { _ in }
        XCTAssertEqual(result.iterations, 8)
        XCTAssertTrue(result.lastValLoss.isFinite)
    }

    /// The best checkpoint loads with its vocabulary; encode names an unknown character or drops it.
    func testBestCheckpointLoadsWithVocabulary() throws {
        let corpus = try TextCorpus(text: text)
        let dir = try folder()
        let trainer = try CharTrainer(corpus: corpus, options: tinyOptions(iterations: 10), outputDirectory: dir)
        let result = try trainer.run { _ in }
        XCTAssertLessThan(result.bestValLoss, log(Double(corpus.vocabularySize)))
        let ck = try CharCheckpoint.load(path: dir + "/best.safetensors")
        XCTAssertEqual(ck.vocabulary, corpus.vocabulary)
        XCTAssertEqual(ck.model.config, trainer.model.config)
        XCTAssertEqual(ck.decode(try ck.encode("lazy dog")), "lazy dog")
        XCTAssertThrowsError(try ck.encode("lazy cat!")) { XCTAssertTrue("\($0)".contains("'!'"), "\($0)") }
        XCTAssertEqual(ck.decode(try ck.encode("dog!", skipUnknown: true)), "dog")
        let val = evaluateCharLoss(ck.model, tokens: corpus.validationTokens)
        XCTAssertTrue(val.isFinite && val > 0)
    }

    /// The shipped model (checkpoints/shakespeare-char.safetensors) predicts held-out Shakespeare well:
    /// on the first 16K characters of the validation split its loss is far below the 4.17 of chance.
    /// Runs only where /work/shared's tinyshakespeare.txt exists.
    func testShippedModelOnTinyShakespeare() throws {
        let text = "/work/shared/data/text/tinyshakespeare.txt"
        let shipped = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("checkpoints/shakespeare-char.safetensors").path
        try XCTSkipUnless(FileManager.default.fileExists(atPath: text) && FileManager.default.fileExists(atPath: shipped),
                          "needs \(text) and \(shipped)")
        let ck = try CharCheckpoint.load(path: shipped)
        let corpus = try TextCorpus(path: text)
        XCTAssertEqual(ck.vocabulary, corpus.vocabulary)
        let loss = evaluateCharLoss(ck.model, tokens: Array(corpus.validationTokens.prefix(16_384)))
        XCTAssertLessThan(loss, 1.8, "shipped model val loss \(loss)")
        XCTAssertLessThan(try FileManager.default.attributesOfItem(atPath: shipped)[.size] as! Int, 15_000_000)
    }
}
