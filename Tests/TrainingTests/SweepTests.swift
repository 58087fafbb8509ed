import XCTest
import Foundation
import TensorCore
import DataIO
import Models
import Training

final class SweepTests: XCTestCase {
    private func folder() -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("forge-sweep-\(UUID().uuidString)")
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url.path
    }

    private func tinySpace() -> CharSweepSpace {
        var s = CharSweepSpace()
        (s.layers, s.embedding, s.headSize, s.dropout, s.batchSize, s.blockSize) = ([1], [16], 8, [0], [4], [8])
        s.learningRate = [3e-4, 3e-3]
        s.firstTrialIsBase = false
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
        XCTAssertTrue(try String(contentsOfFile: dir + "/best_flags.txt", encoding: .utf8).hasPrefix("--layers 1 --heads 2 --embd 16 --block 8"))
        // the objective is the loss over the validation split (all of it: it is shorter than the cap),
        // of the weights the last rung ended with, which best.safetensors holds
        let saved = try CharCheckpoint.load(path: dir + "/best.safetensors")
        XCTAssertEqual(try evaluateCharLoss(saved.model, tokens: corpus.validationTokens), trials[best].rungs[1].valLoss, accuracy: 1e-9)
        // the last rung decayed the rate: the peak until the step rung 0 ended on, then a cosine to a
        // tenth of it over the steps rung 0's pace gives the last rung's minutes
        let (r0, r1) = (trials[best].rungs[0], trials[best].rungs[1])
        let decay = SweepDecay(startStep: r0.step, endStep: r0.step + Int((Double(r0.step) / r0.minutes * (r1.minutes - r0.minutes)).rounded()))
        let schedule = try sweep.charFamily.options(trials[best].settings, decay: decay).schedule
        let peak = try sweep.optionsOfTrial(best).learningRate
        let floor = sweep.charFamily.floorRate(peak: peak)
        XCTAssertEqual(floor, peak / 10, accuracy: peak * 1e-6)
        XCTAssertEqual(schedule, .warmupStableCosine(maxRate: peak, minRate: floor, warmupIterations: 2, decayStart: r0.step, decayEnd: decay.endStep))
        // metrics.csv's training rows: (step, the rate that step trained at)
        let rows = try String(contentsOfFile: sweep.trialDirectory(best) + "/metrics.csv", encoding: .utf8)
            .split(separator: "\n").dropFirst().compactMap { line -> (Int, Float)? in
                let cells = line.split(separator: ",", omittingEmptySubsequences: false)
                guard let step = Int(cells[0]), let lr = Float(cells[4]), !cells[5].isEmpty else { return nil }
                return (step, lr)
            }
        XCTAssertEqual(rows.last?.0, r1.step)
        for (step, lr) in rows where step > 2 {
            XCTAssertEqual(lr, schedule.learningRate(at: step - 1), accuracy: peak * 1e-5, "step \(step)")
        }
        XCTAssertLessThan(try XCTUnwrap(rows.last).1, peak * 0.99, "the last rung decays")
        // the learning rates are drawn log-uniformly inside the bounds, different per trial
        let peaks = try (0..<3).map { try sweep.optionsOfTrial($0).learningRate }
        XCTAssertTrue(peaks.allSatisfy { $0 >= 3e-4 && $0 <= 3e-3 }, "\(peaks)")
        XCTAssertEqual(Set(peaks).count, 3)

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
        let s = try JSONDecoder().decode(CharSweepSpace.self, from: Data(#"{"layers": [4], "embedding": [96], "headSize": 32, "blockSize": [32, 96]}"#.utf8))
        XCTAssertEqual(s.layers, [4])
        XCTAssertEqual(s.blockSize, [32, 96])
        XCTAssertEqual(s.batchSize, CharSweepSpace().batchSize, "absent fields keep the default")
        XCTAssertNil(s.problem)
        var bad = s
        bad.embedding = [100]
        XCTAssertNotNil(bad.problem, "100 is not a multiple of the head size")
        bad = s
        bad.learningRate = [1e-3, 1e-4]
        XCTAssertNotNil(bad.problem)
        bad = s
        bad.blockSize = [64, 0]
        XCTAssertEqual(bad.problem, "blockSize must list positive sizes, got [64, 0]")
        // trial 0 is the base recipe unchanged (at a constant rate), trial 1 a draw from the space
        var base = CharTrainingOptions()
        base.warmupIterations = 50
        let family = try CharSweepFamily(corpus: try TextCorpus(text: String(repeating: "to be or not to be. ", count: 500)), base: base,
                                         space: CharSweepSpace())
        var constant = base
        constant.minLearningRate = base.learningRate
        XCTAssertEqual(family.settings(index: 0, seed: 9), constant.metadata)
        let drawn = try family.options(family.settings(index: 1, seed: 9))
        let d = CharSweepSpace()
        XCTAssertTrue(d.layers.contains(drawn.layers) && d.embedding.contains(drawn.embedding) && d.blockSize.contains(drawn.blockSize)
                      && d.batchSize.contains(drawn.batchSize) && d.dropout.contains(drawn.dropout), "\(drawn)")
        XCTAssertEqual(drawn.heads, drawn.embedding / 32)
        XCTAssertTrue(drawn.learningRate >= 3e-4 && drawn.learningRate <= 3e-3, "\(drawn.learningRate)")
        XCTAssertEqual(drawn.minLearningRate, drawn.learningRate)
        // a validation split too short for the largest block is refused before any trial runs
        var long = CharSweepSpace()
        long.blockSize = [4096]
        let corpus = try TextCorpus(text: String(repeating: "to be or not to be. ", count: 500))
        XCTAssertThrowsError(try CharSweepFamily(corpus: corpus, base: CharTrainingOptions(), space: long)) {
            XCTAssertTrue("\($0)".contains("too few for blocks of 4096"), "\($0)")
        }
        // and so is one too short for the base recipe's block when trial 0 is the recipe
        var wide = CharTrainingOptions()
        wide.blockSize = 4096
        XCTAssertThrowsError(try CharSweepFamily(corpus: corpus, base: wide, space: CharSweepSpace())) {
            XCTAssertTrue("\($0)".contains("too few for blocks of 4096"), "\($0)")
        }
        var drawnOnly = CharSweepSpace()
        drawnOnly.firstTrialIsBase = false
        XCTAssertNoThrow(try CharSweepFamily(corpus: corpus, base: wide, space: drawnOnly))
    }

    /// Two classes of 32×32 grey images: light discs on the left or on the right (values in [-1, 1]).
    private func discs(_ count: Int) -> ImageSet {
        var g = RandomGenerator(seed: 5)
        var pixels: [Float] = []
        var labels: [Int] = []
        for i in 0..<count {
            let label = i % 2
            let (cx, cy) = (Float(label == 0 ? 10 : 22) + g.nextFloat() * 2, 16 + g.nextFloat() * 4 - 2)
            for y in 0..<32 {
                for x in 0..<32 {
                    let d = ((Float(x) - cx) * (Float(x) - cx) + (Float(y) - cy) * (Float(y) - cy)).squareRoot()
                    pixels.append(d < 6 ? 0.9 : -0.9)
                }
            }
            labels.append(label)
        }
        return ImageSet(images: Tensor(shape: [count, 1, 32, 32], data: pixels), labels: labels, classNames: ["left", "right"])
    }

    /// The VAE family: every trial an ordinary run, the objective the held-out −ELBO of the weights
    /// the rung ended with (the best checkpoint's value recomputed here is the table's), the outputs
    /// named for the VAE.
    func testVAESweepMeasuresTheHeldOutNegativeELBOOfEveryRung() throws {
        let set = VAEData.unitRange(discs(48))
        let (train, heldOut) = try VAEData.split(set, heldOutFraction: 0.25, seed: 1)
        var base = VAEConfig()
        (base.imageSize, base.channels, base.likelihood) = (32, 1, .bernoulli)
        var space = VAESweepSpace()
        (space.latent, space.hidden, space.batchSize) = ([2, 4], [16], [8])
        let family = try VAESweepFamily(train: train, heldOut: heldOut, base: base, space: space)
        let dir = folder()
        let sweep = try HyperparameterSweep(family: family, trials: 3, eta: 3, budgetMinutes: 0.1, seed: 3, directory: dir, resume: false)
        sweep.log = { _ in }
        let best = try sweep.run()
        let trials = sweep.state.trials
        XCTAssertEqual(trials.map { $0.rungs.count }.sorted(), [1, 1, 2])
        XCTAssertEqual(Set(trials.map { $0.settings["lr"] }).count, 3, "each trial draws its own rate")
        let objective = try XCTUnwrap(trials[best].rungs.last?.valLoss)
        XCTAssertTrue(objective > 0 && objective < 32 * 32 * Double(log(2.0)) * 2, "a −ELBO in nats per image, got \(objective)")
        // the best checkpoint's −ELBO on the held-out set, recomputed with the sweep's noise seed
        let checkpoint = try Checkpoint.load(dir + "/best.safetensors", expectedKind: "vae")
        let vae = VAE(try checkpoint.config(as: VAEConfig.self))
        try checkpoint.restore(modules: [("vae", vae)])
        var g = RandomGenerator(seed: 0x5eed)
        XCTAssertEqual(VAEEvaluator.evaluate(vae, on: heldOut, batchSize: 256, rng: &g).negativeELBO, objective, accuracy: 1e-3 * objective)
        let csv = try String(contentsOfFile: dir + "/results.csv", encoding: .utf8)
        XCTAssertTrue(csv.hasPrefix("trial,rung,minutes,step,test_neg_elbo,pruned_after_rung,lr,latent,hidden,batch\n"), csv)
        XCTAssertTrue(try String(contentsOfFile: dir + "/best_flags.txt", encoding: .utf8).hasPrefix("--arch mlp --latent "))
        XCTAssertEqual(try ImageCodec.load(path: dir + "/sweep.png").width, 720)
    }

    /// The GAN family: the objective is the Fréchet distance in a classifier's features, finite,
    /// lower for real images than for an untrained generator's; unlabelled data is refused.
    func testGANSweepRanksTrialsByFrechetDistance() throws {
        let set = discs(64)
        var base = DCGANConfig()
        (base.imageSize, base.channels, base.classCount, base.nz, base.embedDim) = (32, 1, 2, 8, 4)
        var space = GANSweepSpace()
        (space.width, space.batchSize) = ([8], [16])
        let dir = folder()
        let family = try GANSweepFamily(data: set, base: base, space: space, directory: dir, sampleCount: 64, classifierEpochs: 1)
        let sweep = try HyperparameterSweep(family: family, trials: 3, eta: 3, budgetMinutes: 0.1, seed: 3, directory: dir, resume: false)
        sweep.log = { _ in }
        let best = try sweep.run()
        let trials = sweep.state.trials
        XCTAssertEqual(trials.map { $0.rungs.count }.sorted(), [1, 1, 2])
        for t in trials { for r in t.rungs { XCTAssertTrue(r.valLoss.isFinite && r.valLoss >= 0, "FD \(r.valLoss)") } }
        let rung0 = trials.map { $0.rungs[0].valLoss }
        XCTAssertEqual(rung0[best], rung0.min(), "the survivor had the lowest rung-0 FD")
        XCTAssertTrue(try String(contentsOfFile: dir + "/results.csv", encoding: .utf8).hasPrefix("trial,rung,minutes,step,fd,pruned_after_rung,lr,lr_d,width,batch\n"))
        XCTAssertTrue(try String(contentsOfFile: dir + "/best_flags.txt", encoding: .utf8).hasPrefix("--ngf 8 --ndf 8 --batch 16 --lr "))
        let unlabelled = ImageSet(images: set.images, labels: [], classNames: [])
        XCTAssertThrowsError(try GANSweepFamily(data: unlabelled, base: base, space: space, directory: dir + "/x"))
    }
}
