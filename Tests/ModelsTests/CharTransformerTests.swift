import XCTest
import Foundation
import TensorCore
import DataIO
import Models

/// The committed fixtures folder (copied into the test bundle).
private func charFixture(_ name: String) -> URL {
    Bundle.module.url(forResource: "Fixtures", withExtension: nil)!.appendingPathComponent(name)
}

private func tinyConfig(bias: Bool = false, block: Int = 16) -> CharTransformerConfig {
    CharTransformerConfig(vocabSize: 11, blockSize: block, layers: 2, heads: 2, embedding: 32, dropout: 0, bias: bias)
}

private func randomTokens(_ n: Int, vocab: Int, seed: UInt64) -> [Int32] {
    var g = RandomGenerator(seed: seed)
    return (0..<n).map { _ in Int32(g.nextInt(below: vocab)) }
}

private func maxDifference(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var m: Float = 0
    for i in 0..<n { m = max(m, abs(a[i] - b[i])) }
    return m
}

final class CharTransformerTests: XCTestCase {

    // MARK: nanoGPT equivalence

    /// A random nanoGPT model (Fixtures/make_char_fixtures.py) loads by name; Forge's logits, loss and
    /// every parameter gradient match PyTorch's. `bias` saves the tied weight only as lm_head.weight and
    /// lacks n_head in its metadata; `nobias` saves both names.
    func testLoadsNanoGPTStateDictAndMatchesLogitsLossAndGradients() throws {
        for variant in ["bias", "nobias"] {
            let file = try SafeTensors.read(charFixture("char_\(variant)_model.safetensors"))
            let expected = try SafeTensors.read(charFixture("char_\(variant)_expected.safetensors"))
            let shapes = file.entries.mapValues(\.shape)
            if variant == "bias" {
                XCTAssertThrowsError(try CharTransformerConfig(metadata: file.metadata, tensorShapes: shapes)) { error in
                    XCTAssertTrue("\(error)".contains("n_head"), "\(error)")
                }
            }
            let config = try CharTransformerConfig(metadata: file.metadata, tensorShapes: shapes, heads: variant == "bias" ? 2 : nil)
            XCTAssertEqual(config, tinyConfig(bias: variant == "bias"), variant)
            let model = CharTransformer(config, seed: 99)
            try model.load(file.tensors)

            let idx = try expected.int64Array("idx").map { Int32($0) }
            let targets = try expected.int64Array("targets").map { Int32($0) }
            let shape = try expected.tensor("logits").shape  // (B, T, V)
            let (B, T) = (shape[0], shape[1])
            let (logits, loss) = model.forward(idx, targets: targets, batch: B, length: T)
            XCTAssertEqual(logits.shape, shape)
            let want = try expected.tensor("logits")
            XCTAssertLessThan(maxDifference(logits.pointer, want.pointer, want.count), 1e-4, "\(variant) logits")
            XCTAssertEqual(loss.item, try expected.tensor("loss").item, accuracy: 1e-5, "\(variant) loss")

            loss.backward()
            let params = Dictionary(uniqueKeysWithValues: model.namedParameters())
            var checked = 0
            for name in expected.names where name.hasPrefix("grad.") {
                let pname = String(name.dropFirst("grad.".count))
                let p = try XCTUnwrap(params[pname], "no parameter \(pname)")
                let g = try XCTUnwrap(p.grad, "no gradient for \(pname)")
                let w = try expected.tensor(name)
                XCTAssertEqual(g.shape, w.shape, pname)
                let scale = max(1, w.scalars.map(abs).max() ?? 1)
                XCTAssertLessThan(maxDifference(g.pointer, w.pointer, w.count) / scale, 1e-4, "\(variant) grad \(pname)")
                checked += 1
            }
            XCTAssertEqual(checked, model.namedParameters().count, "every parameter's gradient is checked")
        }
    }

    func testParameterNamesAreNanoGPTs() {
        let model = CharTransformer(tinyConfig(bias: true), seed: 1)
        let names = model.stateTensors().map(\.0)
        for name in ["transformer.wte.weight", "transformer.wpe.weight", "transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.bias",
                     "transformer.h.0.attn.c_attn.weight", "transformer.h.0.attn.c_attn.bias", "transformer.h.1.attn.c_proj.weight",
                     "transformer.h.1.ln_2.weight", "transformer.h.1.mlp.c_fc.weight", "transformer.h.1.mlp.c_proj.bias",
                     "transformer.ln_f.weight", "lm_head.weight"] {
            XCTAssertTrue(names.contains(name), name)
        }
        XCTAssertTrue(model.lm_head.weight === model.transformer.wte.weight, "output head tied to the token embedding")
        XCTAssertFalse(model.namedParameters().map(\.0).contains("lm_head.weight"), "the tied weight is one parameter")
    }

    // MARK: properties of the model

    /// A token's logits do not depend on later tokens.
    func testCausalMask() {
        let model = CharTransformer(tinyConfig(), seed: 3)
        let T = 16, cut = 9
        let a = randomTokens(2 * T, vocab: 11, seed: 5)
        var b = a
        for bi in 0..<2 { for t in cut..<T { b[bi * T + t] = (a[bi * T + t] + 3) % 11 } }
        let la = model.forward(a, batch: 2, length: T), lb = model.forward(b, batch: 2, length: T)
        let V = 11
        for bi in 0..<2 {
            let before = maxDifference(la.pointer + bi * T * V, lb.pointer + bi * T * V, cut * V)
            XCTAssertEqual(before, 0, "positions before the change must not move")
            let after = maxDifference(la.pointer + (bi * T + cut) * V, lb.pointer + (bi * T + cut) * V, (T - cut) * V)
            XCTAssertGreaterThan(after, 1e-3, "positions from the change on do move")
        }
    }

    /// Cached generation (prefill, then one token at a time) gives the logits of a full forward over
    /// the same prefix, for a batch of two different sequences.
    func testKVCacheMatchesFullRecomputation() {
        for bias in [false, true] {
            let model = CharTransformer(tinyConfig(bias: bias), seed: 4)
            model.eval()
            let B = 2, T = 16, V = 11, prompt = 5
            let seqs = randomTokens(B * T, vocab: V, seed: 6)
            let cache = KVCache(for: model.config, batch: B)
            var tokens: [Int32] = []
            for b in 0..<B { tokens += seqs[(b * T)..<(b * T + prompt)] }
            var cached = model.forwardCached(tokens, count: prompt, cache: cache)
            for len in prompt...T {
                var prefix: [Int32] = []
                for b in 0..<B { prefix += seqs[(b * T)..<(b * T + len)] }
                let full = withNoGrad { model.forward(prefix, batch: B, length: len) }  // (B, len, V)
                for b in 0..<B {
                    let d = maxDifference(cached.pointer + b * V, full.pointer + (b * len + len - 1) * V, V)
                    XCTAssertLessThan(d, 1e-4, "bias \(bias), length \(len), sequence \(b)")
                }
                XCTAssertEqual(cache.length, len)
                if len < T { cached = model.forwardCached([seqs[len], seqs[T + len]], count: 1, cache: cache) }
            }
        }
    }

    /// The same for a long cache: 300 positions, past every tile and block size of the cached
    /// attention kernels (64-key tiles), where sampling a long function spends most of its tokens.
    func testKVCacheMatchesFullRecomputationOverALongContext() {
        let config = CharTransformerConfig(vocabSize: 11, blockSize: 300, layers: 2, heads: 2, embedding: 32, dropout: 0, bias: false)
        let model = CharTransformer(config, seed: 4)
        model.eval()
        let T = 300, V = 11, prompt = 5
        let seq = randomTokens(T, vocab: V, seed: 8)
        let full = withNoGrad { model.forward(Array(seq), batch: 1, length: T) }  // (1, T, V): causal, so row t is the prefix's
        let cache = KVCache(for: model.config, batch: 1)
        var cached = model.forwardCached(Array(seq[0..<prompt]), count: prompt, cache: cache)
        var worst = 0.0
        for len in prompt...T {
            worst = max(worst, Double(maxDifference(cached.pointer, full.pointer + (len - 1) * V, V)))
            if len < T { cached = model.forwardCached([seq[len]], count: 1, cache: cache) }
        }
        XCTAssertLessThan(worst, 1e-4, "largest logit difference over 300 cached positions")
    }

    /// A context of 1,024 (a block extended by fine-tuning; 16 attention tiles of 64), batch 3, 6 heads:
    /// a change from position 700 on moves no earlier logit, and the cache gives the full forward's
    /// logits at every 37th position and the last.
    func testALongBlockIsCausalAndMatchesTheCache() {
        let config = CharTransformerConfig(vocabSize: 11, blockSize: 1024, layers: 2, heads: 6, embedding: 48, dropout: 0, bias: false)
        let model = CharTransformer(config, seed: 9)
        model.eval()
        let B = 3, T = 1024, V = 11, cut = 700
        let a = randomTokens(B * T, vocab: V, seed: 10)
        var b = a
        for s in 0..<B { for t in cut..<T { b[s * T + t] = (a[s * T + t] + 5) % 11 } }
        let la = withNoGrad { model.forward(a, batch: B, length: T) }, lb = withNoGrad { model.forward(b, batch: B, length: T) }
        for s in 0..<B {
            XCTAssertEqual(maxDifference(la.pointer + s * T * V, lb.pointer + s * T * V, cut * V), 0, "sequence \(s) before the change")
            XCTAssertGreaterThan(maxDifference(la.pointer + (s * T + cut) * V, lb.pointer + (s * T + cut) * V, (T - cut) * V), 1e-3)
        }
        let cache = KVCache(for: config, batch: 1)
        var cached = model.forwardCached(Array(a[0..<1]), count: 1, cache: cache)
        var worst: Float = 0
        for len in 1...T {
            if len % 37 == 0 || len == T { worst = max(worst, maxDifference(cached.pointer, la.pointer + (len - 1) * V, V)) }
            if len < T { cached = model.forwardCached([a[len]], count: 1, cache: cache) }
        }
        XCTAssertLessThan(worst, 1e-4)
    }

    /// The window forward of exact sampling gives a full forward's last-position logits, with and
    /// without biases, for head sizes that are and are not multiples of the kernels' unrolling
    /// (16 and 15), and a window shorter than the block.
    func testWindowInferenceMatchesFullForward() {
        let configs = [tinyConfig(bias: false), tinyConfig(bias: true),
                       CharTransformerConfig(vocabSize: 11, blockSize: 12, layers: 3, heads: 2, embedding: 30, dropout: 0, bias: true)]
        for (n, config) in configs.enumerated() {
            let model = CharTransformer(config, seed: 12 + UInt64(n))
            model.eval()
            for T in [config.blockSize, 5] {
                let B = 3, V = config.vocabSize
                let tokens = randomTokens(B * T, vocab: V, seed: 13)
                let full = withNoGrad { model.forward(tokens, batch: B, length: T) }  // (B, T, V)
                let last = WindowInference(model: model, batch: B, length: T).lastPositionLogits(tokens)  // (B, V)
                XCTAssertEqual(last.shape, [B, V])
                for b in 0..<B {
                    let d = maxDifference(last.pointer + b * V, full.pointer + (b * T + T - 1) * V, V)
                    XCTAssertLessThan(d, 1e-4, "config \(n), T \(T), sequence \(b)")
                }
                XCTAssertGreaterThan(maxDifference(last.pointer, last.pointer + V, V), 1e-3, "different windows, different logits")
            }
        }
    }

    /// A sequence's window logits are the same bits whether it is decoded alone or beside others, and
    /// whichever way a lone sequence uses the 2 threads (`FORGE_SAMPLE_SPLIT`: one thread, every op split,
    /// blocks of rows side by side): at 128 wide (above OpenBLAS's small-matrix sizes), and at 256 wide
    /// with 128 tokens.
    func testWindowInferenceDoesNotDependOnTheBatch() {
        let threads = Threads.count
        Threads.count = 2
        defer { Threads.count = threads; unsetenv("FORGE_SAMPLE_SPLIT") }
        for config in [tinyConfig(bias: true),
                       CharTransformerConfig(vocabSize: 20, blockSize: 64, layers: 2, heads: 4, embedding: 128, dropout: 0, bias: false),
                       CharTransformerConfig(vocabSize: 20, blockSize: 128, layers: 2, heads: 4, embedding: 256, dropout: 0, bias: true)] {
            let model = CharTransformer(config, seed: 14)
            model.eval()
            let B = 5, T = config.blockSize, V = config.vocabSize
            let tokens = randomTokens(B * T, vocab: V, seed: 15)
            let together = WindowInference(model: model, batch: B, length: T).lastPositionLogits(tokens).scalars
            for b in [0, 3, 4] {
                for mode in ["0", "ops", "rows"] {
                    setenv("FORGE_SAMPLE_SPLIT", mode, 1)
                    let inference = WindowInference(model: model, batch: 1, length: T)
                    // repeated: row blocks run side by side, and a block running ahead into the next layer
                    // must not overwrite keys and values another block still reads
                    for repeat_ in 0..<(mode == "rows" ? 20 : 1) {
                        let alone = inference.lastPositionLogits(Array(tokens[(b * T)..<((b + 1) * T)])).scalars
                        XCTAssertEqual(alone, Array(together[(b * V)..<((b + 1) * V)]),
                                       "embedding \(config.embedding), sequence \(b), split \(mode), call \(repeat_)")
                    }
                }
            }
        }
    }

    /// nanoGPT's init makes the first prediction nearly uniform: loss ≈ ln(vocab).
    func testInitialLossIsLogVocab() {
        let config = CharTransformerConfig(vocabSize: 65, blockSize: 32, layers: 2, heads: 4, embedding: 64)
        let model = CharTransformer(config, seed: 7)
        let x = randomTokens(4 * 32, vocab: 65, seed: 8), y = randomTokens(4 * 32, vocab: 65, seed: 9)
        let loss = model.forward(x, targets: y, batch: 4, length: 32).loss.item
        XCTAssertEqual(loss, Float(Foundation.log(65.0)), accuracy: 0.05)
    }

    /// A tiny model learns a short text by heart (nanoGPT's recipe: AdamW, decay groups, clipping).
    func testTinyModelOverfitsShortText() throws {
        let corpus = try TextCorpus(text: "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer",
                                    trainFraction: 1)
        let config = CharTransformerConfig(vocabSize: corpus.vocabularySize, blockSize: 16, layers: 2, heads: 2, embedding: 48)
        let model = CharTransformer(config, seed: 10)
        let opt = AdamW(decayGroups(model.parameters, learningRate: 1e-2, weightDecay: 0.01), betas: (0.9, 0.99))
        var g = RandomGenerator(seed: 11)
        var first: Float = 0, last: Float = 0
        for step in 0..<200 {
            let b = try corpus.batch(.train, batchSize: 16, blockLength: 16, generator: &g)
            let loss = model.forward(b.x, targets: b.y, batch: 16, length: 16).loss
            if step == 0 { first = loss.item }
            last = loss.item
            loss.backward()
            clipGradNorm(model.parameters, maxNorm: 1)
            opt.step()
            opt.zeroGrad()
        }
        // the text's unigram entropy is ≈ 2.8 nats; what is left is the ambiguity of a window's first characters
        XCTAssertGreaterThan(first, 2.5)
        XCTAssertLessThan(last, 0.4, "loss fell from \(first) only to \(last)")
    }

    /// Weights + config metadata → safetensors → a new model: identical logits.
    func testCheckpointRoundTrip() throws {
        let config = CharTransformerConfig(vocabSize: 11, blockSize: 16, layers: 2, heads: 4, embedding: 32, dropout: 0.1, bias: true)
        let model = CharTransformer(config, seed: 12)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("forge-char-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try SafeTensors.write(model.weightsForSaving().map { (name: $0.0, tensor: $0.1) }, metadata: config.metadata, to: url)
        let file = try SafeTensors.read(url)
        XCTAssertNil(file.tensors["lm_head.weight"], "the tied weight is saved once")
        let loadedConfig = try CharTransformerConfig(metadata: file.metadata, tensorShapes: file.entries.mapValues(\.shape))
        XCTAssertEqual(loadedConfig, config)
        let copy = CharTransformer(loadedConfig, seed: 13)
        try copy.load(file.tensors)
        model.eval(); copy.eval()
        let x = randomTokens(2 * 16, vocab: 11, seed: 14)
        let a = model.forward(x, batch: 2, length: 16), b = copy.forward(x, batch: 2, length: 16)
        XCTAssertEqual(a.scalars, b.scalars)
        XCTAssertTrue(copy.lm_head.weight === copy.transformer.wte.weight, "tying survives loading")

        // a mismatched shape is refused with the name
        var bad = file.tensors
        bad["transformer.h.0.attn.c_attn.weight"] = Tensor.zeros([3, 3])
        XCTAssertThrowsError(try copy.load(bad)) { XCTAssertTrue("\($0)".contains("transformer.h.0.attn.c_attn.weight"), "\($0)") }
    }
}
