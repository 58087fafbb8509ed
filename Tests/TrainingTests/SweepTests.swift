import XCTest
import Foundation
import TensorCore
import DataIO
import Training

final class SweepTests: XCTestCase {
    private func folder() -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("forge-sweep-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    private func tinySpace() -> CharSweepSpace {
        var s = CharSweepSpace()
        (s.layers, s.embedding, s.headSize, s.dropout, s.batchSize) = ([1], [16], 8, [0], [4])
        s.learningRate = [3e-4, 3e-3]
        return s
    }

    /// Successive halving keeps the best 1/eta per rung, marks the rest pruned, writes its outputs,
    /// and a resumed finished sweep repeats no rung.
    func testSuccessiveHalvingPrunesAndResumesWithoutRepeating() throws {
        let text = String(repeating: "to be or not to be, that is the question. ", count: 200)
        let corpus = try TextCorpus(text: text)
        var base = CharTrainingOptions()
        (base.blockSize, base.evalIterations, base.warmupIterations, base.logEvery) = (8, 2, 2, 1000)
        let dir = folder()
        let sweep = try CharSweep(corpus: corpus, base: base, space: tinySpace(), trials: 3, eta: 3, budgetMinutes: 0.15,
                                  seed: 7, directory: dir, resume: false)
        sweep.log = { _ in }
        XCTAssertEqual(sweep.rungCount, 2)
        let best = try sweep.run()
        let trials = sweep.state.trials
        XCTAssertEqual(trials.map { $0.rungs.count }.sorted(), [1, 1, 2], "all three train rung 0, one goes on")
        XCTAssertEqual(trials.filter { $0.prunedAfterRung == 0 }.count, 2)
        XCTAssertEqual(trials[best].rungs.count, 2)
        // the survivor had the lowest rung-0 loss
        let rung0 = trials.map { $0.rungs[0].valLoss }
        XCTAssertEqual(rung0[best], rung0.min())
        // its second rung continued its run: more steps than its first
        XCTAssertGreaterThan(trials[best].rungs[1].step, trials[best].rungs[0].step)
        XCTAssertLessThan(sweep.state.elapsedSeconds, 0.15 * 60 + 20, "within the budget plus the evaluations")
        let csv = try String(contentsOfFile: dir + "/results.csv", encoding: .utf8)
        XCTAssertEqual(csv.split(separator: "\n").count, 1 + 4, "a header and one row per finished trial-rung")
        XCTAssertEqual(try ImageCodec.load(path: dir + "/sweep.png").width, 720)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/best.safetensors"))
        XCTAssertTrue(try String(contentsOfFile: dir + "/best_flags.txt", encoding: .utf8).hasPrefix("--layers 1 --heads 2 --embd 16"))
        // the learning rates are drawn log-uniformly inside the bounds, different per trial
        let rates = try (0..<3).map { try sweep.optionsOfTrial($0).learningRate }
        XCTAssertTrue(rates.allSatisfy { $0 >= 3e-4 && $0 <= 3e-3 }, "\(rates)")
        XCTAssertEqual(Set(rates).count, 3)

        let again = try CharSweep(corpus: corpus, base: base, space: tinySpace(), trials: 3, eta: 3, budgetMinutes: 0.15,
                                  seed: 7, directory: dir, resume: true)
        again.log = { _ in XCTFail("a finished sweep resumed must train nothing") }
        XCTAssertEqual(try again.run(), best)
        XCTAssertEqual(again.state.trials, trials)
        // another sweep's settings in the same folder are refused
        XCTAssertThrowsError(try CharSweep(corpus: corpus, base: base, space: tinySpace(), trials: 4, eta: 3, budgetMinutes: 0.15,
                                           seed: 7, directory: dir, resume: true))
    }

    func testSpaceFromJSONAndItsProblems() throws {
        let s = try JSONDecoder().decode(CharSweepSpace.self, from: Data(#"{"layers": [4], "embedding": [96], "headSize": 32}"#.utf8))
        XCTAssertEqual(s.layers, [4])
        XCTAssertEqual(s.batchSize, CharSweepSpace().batchSize, "absent fields keep the default")
        XCTAssertNil(s.problem)
        var bad = s
        bad.embedding = [100]
        XCTAssertNotNil(bad.problem, "100 is not a multiple of the head size")
        bad = s
        bad.learningRate = [1e-3, 1e-4]
        XCTAssertNotNil(bad.problem)
    }
}
