import XCTest
import Foundation
import TensorCore
import DataIO
import Models
import Training

/// Fine-tuning: frozen parameters stay bit-identical while the rest trains, a vocabulary extension
/// keeps the old rows and the old tokens' logits, every checkpoint of a fine-tuned run records its
/// parent, and class sets are compared and their layers found.
final class FineTuningTests: XCTestCase {
    private func options(iterations: Int = 6) -> CharTrainingOptions {
        var o = CharTrainingOptions()
        (o.layers, o.heads, o.embedding, o.blockSize, o.batchSize) = (2, 2, 16, 8, 4)
        (o.iterations, o.evalEvery, o.evalIterations, o.warmupIterations, o.logEvery) = (iterations, 3, 1, 1, 100)
        o.learningRate = 1e-2
        return o
    }

    private let text = String(repeating: "the quick brown fox jumps over the lazy dog. ", count: 20)

    /// Trains a tiny parent run and returns its checkpoint path.
    private func parentCheckpoint(_ dir: String) throws -> String {
        let task = try CharTrainingTask(corpus: try TextCorpus(text: text), options: options())
        var o = task.trainingOptions(runDirectory: dir + "/parent")
        (o.handleInterrupts, o.showProgress) = (false, false)
        _ = try TrainingLoop(task: task, options: o, log: { _ in }).run()
        return dir + "/parent/checkpoint.safetensors"
    }

    func testGlobMatchesWholeNamesAndTailsAfterADot() {
        XCTAssertTrue(FineTuning.matches("wte.*", "transformer.wte.weight"))
        XCTAssertTrue(FineTuning.matches("h.0.*", "transformer.h.0.attn.c_attn.weight"))
        XCTAssertFalse(FineTuning.matches("h.0.*", "transformer.h.1.attn.c_attn.weight"))
        XCTAssertFalse(FineTuning.matches("h.0.*", "transformer.h.10.mlp.c_fc.weight"))
        XCTAssertTrue(FineTuning.matches("generator.*", "generator.main.0.weight"))
        XCTAssertFalse(FineTuning.matches("te.*", "transformer.wte.weight"), "a tail starts after a dot")
    }

    /// Frozen tensors (the embedding, tied to the head, and the first block) keep every bit through
    /// training steps with weight decay; the others move; the optimizer keeps no state for the frozen.
    func testFrozenParametersStayBitIdenticalWhileTheOthersMove() throws {
        var o = options()
        o.weightDecay = 0.5
        let task = try CharTrainingTask(corpus: try TextCorpus(text: text), options: o)
        let frozen = try FineTuning.freeze(["wte.*", "h.0.*"], in: task.modules)
        let named = FineTuning.namedParameters(task.modules)
        let frozenNames = Set(frozen.matches.flatMap(\.names))
        XCTAssertEqual(frozen.matches.map(\.names.count), [1, 6], "wte once (lm_head is the same tensor); block 0: 2 LayerNorms, 4 matrices")
        XCTAssertTrue(frozenNames.contains("transformer.wte.weight"))
        XCTAssertEqual(frozen.tensorCount, frozenNames.count)
        let before = Dictionary(uniqueKeysWithValues: named.map { ($0.0, $0.1.scalars) })
        for _ in 0..<4 {
            task.optimizer.learningRate = 1e-2
            _ = task.step()
        }
        for (name, tensor) in named {
            if frozenNames.contains(name) {
                XCTAssertEqual(tensor.scalars, before[name], "\(name) is frozen")
            } else {
                XCTAssertNotEqual(tensor.scalars, before[name], "\(name) trains")
            }
        }
        XCTAssertEqual(task.model.lm_head.weight.scalars, before["transformer.wte.weight"], "the tied head is frozen with the embedding")
        let stateIndices = Set(task.optimizer.stateTensors(prefix: "").map { String($0.0.split(separator: ".")[1]) })
        let frozenIndices = task.optimizer.parameters.enumerated().filter { !$0.element.requiresGrad }.map { String($0.offset) }
        XCTAssertEqual(frozenIndices.count, frozen.tensorCount)
        XCTAssertTrue(stateIndices.isDisjoint(with: frozenIndices), "no optimizer state for frozen parameters")
        let other = try CharTrainingTask(corpus: try TextCorpus(text: text), options: o)
        let head = try FineTuning.freeze(["lm_head.*"], in: other.modules)
        XCTAssertEqual(head.matches.map(\.names), [["transformer.wte.weight"]], "the tied head is the embedding, named by its first name")
        XCTAssertFalse(other.model.transformer.wte.weight.requiresGrad)
        let third = try CharTrainingTask(corpus: try TextCorpus(text: text), options: o)
        XCTAssertThrowsError(try FineTuning.freeze(["transformer.*", "h.1.*"], in: third.modules)) { error in
            XCTAssertTrue("\(error)".contains("match every parameter: nothing would train"), "\(error)")
        }
        XCTAssertTrue(third.model.parameters.allSatisfy(\.requiresGrad), "a refused freeze changes nothing")
        XCTAssertThrowsError(try FineTuning.freeze(["nope.*"], in: task.modules)) { error in
            XCTAssertTrue("\(error)".contains("\"nope.*\" matches no parameter"), "\(error)")
        }
    }

    /// New characters: an error listing them; with the extension the old rows, and the logits of old
    /// tokens, are the parent's exactly; new rows are fresh; the run's checkpoints record the parent.
    func testExtendedVocabularyKeepsOldRowsAndLogitsAndLineageIsRecorded() throws {
        let dir = NSTemporaryDirectory() + "forge-finetune-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let parentPath = try parentCheckpoint(dir)
        let parent = try CharCheckpoint.load(path: parentPath)
        let newText = try TextCorpus(text: String(repeating: "THE QUICK brown fox; 1 jumps over 2 lazy dogs! ", count: 20))
        XCTAssertThrowsError(try CharFineTuningStart(checkpoint: parentPath, text: newText, extendVocabulary: false)) { error in
            guard let e = error as? VocabularyMismatchError else { return XCTFail("\(error)") }
            XCTAssertEqual(String(String.UnicodeScalarView(e.missing)), "!12;CEHIKQTU")
            XCTAssertTrue(e.description.contains("12 characters of the text are not in the vocabulary"), e.description)
        }
        let start = try CharFineTuningStart(checkpoint: parentPath, text: newText, extendVocabulary: true)
        XCTAssertEqual(start.corpus.vocabulary, parent.vocabulary + Array("!12;CEHIKQTU".unicodeScalars))
        XCTAssertEqual(newText.decode(newText.tokens), start.corpus.decode(start.corpus.tokens), "the same text in the new vocabulary")
        var o = options(iterations: 3)
        o.seed = 99
        let task = try CharTrainingTask(corpus: start.corpus, options: o)
        let freshRows = Array(task.model.transformer.wte.weight.scalars[(parent.vocabulary.count * 16)...])
        try start.initialize(task, keepOptimizer: true)
        let oldCount = parent.vocabulary.count
        let wte = task.model.transformer.wte.weight.scalars
        XCTAssertEqual(Array(wte[..<(oldCount * 16)]), parent.model.transformer.wte.weight.scalars)
        XCTAssertEqual(Array(wte[(oldCount * 16)...]), freshRows, "new rows keep training's initialization")
        XCTAssertTrue(task.model.lm_head.weight === task.model.transformer.wte.weight)
        // logits of the old tokens for an old-token context are the parent's
        let idx = Array(try parent.encode("the lazy").prefix(8))
        task.model.eval()
        let logitsNew = withNoGrad { task.model.forward(idx, batch: 1, length: 8) }.scalars
        let logitsOld = withNoGrad { parent.model.forward(idx, batch: 1, length: 8) }.scalars
        let newCount = start.corpus.vocabularySize
        for t in 0..<8 {
            for v in 0..<oldCount {  // the same sums; a wider head may only change BLAS's blocking
                XCTAssertEqual(logitsNew[t * newCount + v], logitsOld[t * oldCount + v], accuracy: 1e-5, "position \(t), token \(v)")
            }
        }
        task.model.train()

        // lineage: the run's checkpoints name the parent's file, sha256 and step
        let parentLoaded = try Checkpoint.load(parentPath)
        var loop = task.trainingOptions(runDirectory: dir + "/child")
        (loop.handleInterrupts, loop.showProgress) = (false, false)
        loop.extraMetadata = try FineTuning.metadata(parent: parentLoaded, frozen: [])
        _ = try TrainingLoop(task: task, options: loop, log: { _ in }).run()
        for file in ["checkpoint.safetensors", "best.safetensors"] {
            let child = try Checkpoint.load(dir + "/child/" + file)
            XCTAssertEqual(try child.lineage(), [CheckpointParent(file: "checkpoint.safetensors", sha256: try SHA256.hexDigest(ofFile: parentPath),
                                                                  step: 6)], file)
        }
        // a grandchild records both ancestors, nearest first
        let childLoaded = try Checkpoint.load(dir + "/child/checkpoint.safetensors")
        let grand = try childLoaded.lineageAsParent()
        XCTAssertEqual(grand.map(\.step), [3, 6])
        XCTAssertEqual(grand.map(\.file), ["checkpoint.safetensors", "checkpoint.safetensors"])
    }

    /// A longer context: position rows past the parent's block are copies (row p = row p mod 8), as are
    /// their Adam moments; the first 8 positions' logits are the parent's and all 20 are finite; a task
    /// of another block is refused; the extended run trains and saves the new block; a shorter block
    /// is refused.
    func testExtendedBlockCopiesPositionRowsAndKeepsTheParentsLogits() throws {
        let dir = NSTemporaryDirectory() + "forge-finetune-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        let parentPath = try parentCheckpoint(dir)
        let parent = try CharCheckpoint.load(path: parentPath)
        let corpus = try TextCorpus(text: text)
        XCTAssertThrowsError(try CharFineTuningStart(checkpoint: parentPath, text: corpus, extendVocabulary: false, blockSize: 4)) { error in
            XCTAssertTrue("\(error)".contains("may lengthen it, not shorten it to 4"), "\(error)")
        }
        let start = try CharFineTuningStart(checkpoint: parentPath, text: corpus, extendVocabulary: false, blockSize: 20)
        var o = options(iterations: 3)
        o.blockSize = 20
        let task = try CharTrainingTask(corpus: start.corpus, options: o)
        let wrong = try CharTrainingTask(corpus: start.corpus, options: options(iterations: 3))
        XCTAssertThrowsError(try start.initialize(wrong, keepOptimizer: false), "a task of the parent's block for a start of 20")
        try start.initialize(task, keepOptimizer: true)
        let old = parent.model.transformer.wpe.weight.scalars, new = task.model.transformer.wpe.weight.scalars
        XCTAssertEqual(task.model.transformer.wpe.weight.shape, [20, 16])
        for p in 0..<20 { XCTAssertEqual(Array(new[(p * 16)..<(p * 16 + 16)]), Array(old[((p % 8) * 16)..<((p % 8) * 16 + 16)]), "row \(p)") }
        let index = try XCTUnwrap(task.optimizer.parameters.firstIndex { $0 === task.model.transformer.wpe.weight })
        let moments = Dictionary(uniqueKeysWithValues: task.optimizer.stateTensors(prefix: "optimizer.model.").map { ($0.0, $0.1) })
        let savedMoment = try XCTUnwrap(try Checkpoint.load(parentPath).tensors["optimizer.model.state.\(index).exp_avg_sq"])
        let moment = try XCTUnwrap(moments["optimizer.model.state.\(index).exp_avg_sq"], "\(moments.keys.sorted())")
        XCTAssertEqual(moment.shape, [20, 16])
        XCTAssertEqual(Array(moment.scalars[(13 * 16)..<(14 * 16)]), Array(savedMoment.scalars[(5 * 16)..<(6 * 16)]), "moments are copied like rows")

        let idx = Array(try parent.encode("the lazy dog. the quick b").prefix(20))
        task.model.eval()
        let logitsNew = withNoGrad { task.model.forward(idx, batch: 1, length: 20) }.scalars
        let logitsOld = withNoGrad { parent.model.forward(Array(idx.prefix(8)), batch: 1, length: 8) }.scalars
        let V = corpus.vocabularySize
        for i in 0..<(8 * V) { XCTAssertEqual(logitsNew[i], logitsOld[i], accuracy: 1e-5, "position \(i / V)") }
        XCTAssertEqual(logitsNew.count, 20 * V)
        XCTAssertTrue(logitsNew.allSatisfy(\.isFinite))
        task.model.train()
        var loop = task.trainingOptions(runDirectory: dir + "/longer")
        (loop.handleInterrupts, loop.showProgress) = (false, false)
        _ = try TrainingLoop(task: task, options: loop, log: { _ in }).run()
        let child = try CharCheckpoint.load(path: dir + "/longer/checkpoint.safetensors")
        XCTAssertEqual(child.model.config.blockSize, 20)
        XCTAssertEqual(child.model.transformer.wpe.weight.shape, [20, 16])
    }

    func testClassDifferencesAndClassDependentTensors() {
        XCTAssertNil(FineTuning.classDifferences(checkpoint: ["a", "b"], data: ["a", "b"]))
        XCTAssertEqual(FineTuning.classDifferences(checkpoint: ["a", "b", "c"], data: ["a", "d"]), "only in the checkpoint: b, c; only in the data: d")
        XCTAssertEqual(FineTuning.classDifferences(checkpoint: ["a", "b"], data: ["b", "a"]),
                       "the same 2 names in another order (checkpoint: a, b; data: b, a)")
        var config = DCGANConfig()
        (config.imageSize, config.channels, config.nz, config.ngf, config.ndf, config.embedDim, config.classCount) = (32, 1, 8, 4, 4, 4, 3)
        let names = FineTuning.classDependentNames(classCount: 3) { k in
            var c = config
            c.classCount = k
            let gan = DCGAN(c)
            return [("generator", gan.generator), ("discriminator", gan.discriminator)]
        }
        XCTAssertFalse(names.isEmpty)
        XCTAssertTrue(names.contains { $0.hasPrefix("generator.") } && names.contains { $0.hasPrefix("discriminator.") }, "\(names.sorted())")
        let gan = DCGAN(config)
        let all = gan.generator.stateTensors().count + gan.discriminator.stateTensors().count
        XCTAssertLessThan(names.count, all / 2, "most tensors do not depend on the classes: \(names.sorted())")
    }

    /// A frozen discriminator keeps every bit through GAN steps (the G step's own toggling of D's
    /// requiresGrad restores what each parameter had), while the generator trains.
    func testAFrozenDiscriminatorStaysFixedThroughGANSteps() throws {
        let dir = NSTemporaryDirectory() + "forge-finetune-gan-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        try makeImageFolder(at: dir + "/data", perClass: 8)
        let data = try ImageDataset.load(path: dir + "/data", size: 32, channels: 1, warn: { _ in })
        let task = try GANTrainingTask(gan: DCGAN(tinyConfig()), data: data, samplesDirectory: dir + "/samples")
        let frozen = try FineTuning.freeze(["discriminator.*"], in: task.modules)
        XCTAssertEqual(frozen.tensorCount, task.gan.discriminator.parameters.count)
        let d = task.gan.discriminator.parameters.map(\.scalars), g = task.gan.generator.parameters.map(\.scalars)
        task.beginEpoch(0, skippingSteps: 0)
        for _ in 0..<2 { _ = task.step() }
        XCTAssertEqual(task.gan.discriminator.parameters.map(\.scalars), d, "D is frozen")
        XCTAssertTrue(task.gan.discriminator.parameters.allSatisfy { !$0.requiresGrad })
        XCTAssertNotEqual(task.gan.generator.parameters.map(\.scalars), g, "G trains")
    }
}
