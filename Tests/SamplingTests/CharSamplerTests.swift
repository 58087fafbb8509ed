import XCTest
import Foundation
import TensorCore
import Models
import Sampling

final class CharSamplerTests: XCTestCase {
    private func model(block: Int = 16) -> CharTransformer {
        CharTransformer(CharTransformerConfig(vocabSize: 13, blockSize: block, layers: 2, heads: 2, embedding: 32), seed: 21)
    }

    /// Greedy decoding with the KV cache picks, at every step, the argmax of a full forward over the
    /// same context (within the block size).
    func testGreedyCachedGenerationMatchesFullRecomputation() {
        let m = model()
        var g = RandomGenerator(seed: 1)
        let prompt: [Int32] = [3, 1, 4]
        let out = CharSampler(model: m).generate(prompt: prompt, length: 12, options: TextSamplingOptions(temperature: 0),
                                                 generator: &g)[0]
        var seq = prompt
        for t in out {
            let logits = withNoGrad { m.forward(seq, batch: 1, length: seq.count) }
            let last = Array(logits.scalars.suffix(13))
            XCTAssertEqual(Int(t), last.indices.max { last[$0] < last[$1] }!)
            seq.append(t)
        }
    }

    /// Past the block size the sampler keeps going, tokens stay in the vocabulary,
    /// a seed reproduces a run, and batched sequences differ from one another.
    func testLongBatchedGenerationIsReproducible() {
        let m = model(block: 8)
        var g1 = RandomGenerator(seed: 5), g2 = RandomGenerator(seed: 5)
        let s = CharSampler(model: m)
        let a = s.generate(prompt: [0], count: 3, length: 40, options: TextSamplingOptions(temperature: 1, topK: nil), generator: &g1)
        let b = s.generate(prompt: [0], count: 3, length: 40, options: TextSamplingOptions(temperature: 1, topK: nil), generator: &g2)
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.map(\.count), [40, 40, 40])
        XCTAssertTrue(a.joined().allSatisfy { $0 >= 0 && $0 < 13 })
        XCTAssertNotEqual(a[0], a[1])
    }

    /// top-k 1 and a tiny top-p are greedy; top-k k only ever picks among the k largest logits.
    func testTopKAndTopP() {
        let logits: [Float] = [0.1, 2.0, -1.0, 1.9, 0.5]
        var g = RandomGenerator(seed: 9)
        logits.withUnsafeBufferPointer { p in
            for _ in 0..<50 {
                XCTAssertEqual(sampleToken(logits: p.baseAddress!, count: 5, options: .init(temperature: 1, topK: 1), generator: &g), 1)
                XCTAssertEqual(sampleToken(logits: p.baseAddress!, count: 5, options: .init(temperature: 1, topK: nil, topP: 0.01), generator: &g), 1)
                let t = sampleToken(logits: p.baseAddress!, count: 5, options: .init(temperature: 1, topK: 2), generator: &g)
                XCTAssertTrue(t == 1 || t == 3)
            }
            // with no cut, every token shows up
            var seen = Set<Int32>()
            for _ in 0..<2000 { seen.insert(sampleToken(logits: p.baseAddress!, count: 5, options: .init(temperature: 2, topK: nil), generator: &g)) }
            XCTAssertEqual(seen, [0, 1, 2, 3, 4])
        }
    }

    /// Uniforms from a fixed list (cycled), for draws whose outcome the test computes by hand.
    private struct ListUniforms: UniformSource {
        var values: [Double], next = 0
        init(_ values: [Double]) { self.values = values }
        mutating func nextUniform() -> Double {
            defer { next += 1 }
            return values[next % values.count]
        }
    }

    private let vocabulary = Array("abcdefghijklm".unicodeScalars)

    /// The sampler's default, past the block size, is nanoGPT's `generate`: every token drawn from the
    /// last position of a full forward over the last `block` tokens, with the same uniform.
    func testExactSamplingEqualsWindowRecompute() throws {
        let m = model(block: 8)
        let uniforms = (0..<30).map { Double($0 * 37 % 30) / 30 + 0.01 }
        var sources = (0..<3).map { ListUniforms(Array(uniforms.dropFirst($0 * 7)) + Array(uniforms.prefix($0 * 7))) }
        let options = TextSamplingOptions(temperature: 1, topK: nil)
        let out = try CharSampler(model: m).generate(prompt: [2, 5], length: 30, options: options, sources: &sources)
        for b in 0..<3 {
            var source = ListUniforms(Array(uniforms.dropFirst(b * 7)) + Array(uniforms.prefix(b * 7)))
            var seq: [Int32] = [2, 5]
            for _ in 0..<30 {
                let window = Array(seq.suffix(8))
                let logits = withNoGrad { m.forward(window, batch: 1, length: window.count) }.scalars.suffix(13)
                let t = Array(logits).withUnsafeBufferPointer {
                    sampleToken(logits: $0.baseAddress!, count: 13, options: options) { source.nextUniform() }
                }
                seq.append(t)
            }
            XCTAssertEqual(out[b], Array(seq.dropFirst(2)), "sequence \(b)")
        }
    }

    /// Sequence b's tokens depend only on its own uniform source, not on how many are decoded together.
    func testBatchedSequencesAreIndependentOfTheBatch() throws {
        let s = CharSampler(model: model(block: 8))
        let options = TextSamplingOptions(temperature: 1, topK: nil)
        var four = (0..<4).map { RandomGenerator(seed: UInt64(10 + $0)) }
        let together = try s.generate(prompt: [1], length: 25, options: options, sources: &four)
        for b in 0..<4 {
            var one = [RandomGenerator(seed: UInt64(10 + b))]
            XCTAssertEqual(try s.generate(prompt: [1], length: 25, options: options, sources: &one), [together[b]])
        }
        XCTAssertNotEqual(together[0], together[1])
    }

    /// Inverse CDF over the token order with no cut; min-p drops tokens below minP · p_max.
    func testInverseCDFAndMinP() {
        // probabilities ∝ 1, 0.5, 0.2, 0.05 (cumulative 0.571, 0.857, 0.971, 1)
        let logits: [Float] = [0, log(0.5), log(0.2), log(0.05)]
        func draw(_ u: Double, _ options: TextSamplingOptions) -> Int32 {
            logits.withUnsafeBufferPointer { sampleToken(logits: $0.baseAddress!, count: 4, options: options) { u } }
        }
        let plain = TextSamplingOptions(temperature: 1, topK: nil)
        XCTAssertEqual([0.5, 0.6, 0.9, 0.99].map { draw($0, plain) }, [0, 1, 2, 3])
        var minP = plain
        minP.minP = 0.3   // keeps 1 and 0.5 → cumulative 0.667, 1
        XCTAssertEqual([0.6, 0.7, 0.999].map { draw($0, minP) }, [0, 1, 1])
        minP.minP = 0.1   // keeps three
        XCTAssertEqual(draw(0.999, minP), 2)
        minP.minP = 0
        XCTAssertEqual(draw(0.999, minP), 3)
        minP.minP = 0.9   // only the most likely
        XCTAssertEqual(draw(0.999, minP), 0)
    }

    /// Repetition penalty divides positive and multiplies negative logits of present tokens; frequency
    /// and presence subtract count · f + p; absent tokens are untouched.
    func testPenaltyValues() {
        var logits: [Float] = [2, -2, 1, 0.5]
        applyPenalties(&logits, count: 4, recentCounts: [1, 1, 0, 3], options: TextSamplingOptions(repetitionPenalty: 2))
        XCTAssertEqual(logits, [1, -4, 1, 0.25])
        logits = [1, 1, 1, 1]
        applyPenalties(&logits, count: 4, recentCounts: [1, 0, 2, 0],
                       options: TextSamplingOptions(frequencyPenalty: 0.5, presencePenalty: 0.25))
        XCTAssertEqual(logits, [0.25, 1, -0.25, 1])
        logits = [3, 1]
        applyPenalties(&logits, count: 2, recentCounts: [2, 0],
                       options: TextSamplingOptions(repetitionPenalty: 1.5, frequencyPenalty: -0.5, presencePenalty: 1))
        XCTAssertEqual(logits, [3 / 1.5 + 1 - 1, 1])
        // through sampleToken: a greedy pick flips when the leader is penalised
        let row: [Float] = [2.0, 1.9]
        row.withUnsafeBufferPointer { p in
            let greedy = TextSamplingOptions(temperature: 0, repetitionPenalty: 1.1)
            XCTAssertEqual(sampleToken(logits: p.baseAddress!, count: 2, options: greedy, recentCounts: [1, 0]) { 0 }, 1)
            XCTAssertEqual(sampleToken(logits: p.baseAddress!, count: 2, options: greedy, recentCounts: [0, 1]) { 0 }, 0)
            XCTAssertEqual(sampleToken(logits: p.baseAddress!, count: 2, options: greedy) { 0 }, 0)
        }
    }

    /// The sampler counts each sequence's last `penaltyWindow` tokens (prompt included), as a by-hand
    /// loop over full forwards does.
    func testPenaltiesInTheSamplerUseTheRecentWindow() throws {
        let m = model(block: 8)
        let options = TextSamplingOptions(temperature: 0, repetitionPenalty: 1.5, frequencyPenalty: 0.7,
                                          presencePenalty: 0.3, penaltyWindow: 3)
        var sources = [RandomGenerator(seed: 1)]
        let out = try CharSampler(model: m).generate(prompt: [4, 4, 9], length: 20, options: options, sources: &sources)[0]
        var seq: [Int32] = [4, 4, 9]
        for _ in 0..<20 {
            let window = Array(seq.suffix(8))
            var logits = Array(withNoGrad { m.forward(window, batch: 1, length: window.count) }.scalars.suffix(13))
            var counts = [Int32](repeating: 0, count: 13)
            for t in seq.suffix(3) { counts[Int(t)] += 1 }
            applyPenalties(&logits, count: 13, recentCounts: counts, options: options)
            seq.append(Int32(logits.indices.max { logits[$0] < logits[$1] }!))
        }
        XCTAssertEqual(out, Array(seq.dropFirst(3)))
        var plain = [RandomGenerator(seed: 1)]
        XCTAssertNotEqual(try CharSampler(model: m).generate(prompt: [4, 4, 9], length: 20, options: TextSamplingOptions(temperature: 0), sources: &plain)[0],
                          out, "the penalties change this greedy decoding")
    }

    /// A sequence ends when its generated text ends with a stop string; the stop string is neither
    /// returned nor emitted, and what is emitted while streaming is exactly what is returned.
    func testStopStrings() throws {
        let s = CharSampler(model: model(block: 8), vocabulary: vocabulary)
        let options = TextSamplingOptions(temperature: 1, topK: nil)
        var g = [RandomGenerator(seed: 8), RandomGenerator(seed: 9)]
        let free = try s.generate(prompt: [0], length: 40, options: options, sources: &g)
        let text = free.map { String(String.UnicodeScalarView($0.map { vocabulary[Int($0)] })) }
        // a stop string: the 2 characters at 10..<12 of sequence 0; each sequence ends before its first occurrence
        let stop = String(Array(text[0])[10..<12])
        var stopped = options
        stopped.stop = ["zz", stop]   // "zz" is not in the vocabulary...
        var h = [RandomGenerator(seed: 8), RandomGenerator(seed: 9)]
        XCTAssertThrowsError(try s.generate(prompt: [0], length: 40, options: stopped, sources: &h)) { error in
            XCTAssertEqual((error as? TextSamplingError)?.option, .stop)
        }
        stopped.stop = ["lll", stop]   // ...this one is, and never occurs in 40 characters of either
        XCTAssertFalse(text.contains { $0.contains("lll") })
        var emitted = [[Int32]](repeating: [], count: 2)
        h = [RandomGenerator(seed: 8), RandomGenerator(seed: 9)]
        let out = try s.generate(prompt: [0], length: 40, options: stopped, sources: &h) { b, tokens in emitted[b] += tokens }
        XCTAssertEqual(emitted, out)
        for b in 0..<2 {
            let expected = text[b].range(of: stop).map { String(text[b][..<$0.lowerBound]) } ?? text[b]
            XCTAssertEqual(String(String.UnicodeScalarView(out[b].map { vocabulary[Int($0)] })), expected, "sequence \(b)")
        }
        XCTAssertLessThanOrEqual(out[0].count, 10)
    }

    /// Every bad value is refused with the option it concerns and the value in the message.
    func testValidation() throws {
        func problem(_ o: TextSamplingOptions) -> TextSamplingError? {
            do { try o.validate(); return nil } catch { return error as? TextSamplingError }
        }
        let bad: [(TextSamplingOptions, TextSamplingError.Option, String)] = [
            (.init(temperature: -1), .temperature, "-1.0"), (.init(temperature: .nan), .temperature, "nan"),
            (.init(temperature: .infinity), .temperature, "inf"),
            (.init(topK: -1), .topK, "-1"),
            (.init(topP: 0), .topP, "(0, 1]"), (.init(topP: 1.5), .topP, "1.5"), (.init(topP: .nan), .topP, "nan"),
            (.init(minP: 1), .minP, "[0, 1)"), (.init(minP: -0.1), .minP, "-0.1"), (.init(minP: .nan), .minP, "nan"),
            (.init(repetitionPenalty: 0), .repetitionPenalty, "> 0"), (.init(repetitionPenalty: -1), .repetitionPenalty, "-1.0"),
            (.init(repetitionPenalty: .nan), .repetitionPenalty, "nan"),
            (.init(frequencyPenalty: 2.5), .frequencyPenalty, "[-2, 2]"), (.init(frequencyPenalty: .nan), .frequencyPenalty, "nan"),
            (.init(presencePenalty: -3), .presencePenalty, "-3.0"),
            (.init(penaltyWindow: 0), .penaltyWindow, "0"), (.init(stop: ["a", ""]), .stop, "empty"),
        ]
        for (options, option, text) in bad {
            let e = problem(options)
            XCTAssertEqual(e?.option, option, "\(options)")
            XCTAssertTrue(e?.problem.contains(text) ?? false, "\(e?.problem ?? "no error") should mention \(text)")
        }
        // the edges of the legal ranges pass
        XCTAssertNil(problem(.init(temperature: 0, topK: 0, topP: 1, minP: 0, repetitionPenalty: 0.01,
                                   frequencyPenalty: -2, presencePenalty: 2, penaltyWindow: 1, stop: ["\n"])))
        // the sampler checks them too, and its own arguments
        let s = CharSampler(model: model())
        var g = [RandomGenerator(seed: 1)]
        XCTAssertThrowsError(try s.generate(prompt: [0], length: 5, options: .init(topP: 2), sources: &g)) {
            XCTAssertEqual(($0 as? TextSamplingError)?.option, .topP)
        }
        XCTAssertThrowsError(try s.generate(prompt: [0], length: 0, options: .init(), sources: &g)) {
            XCTAssertEqual(($0 as? TextSamplingError)?.option, .length)
        }
        XCTAssertThrowsError(try s.generate(prompt: [13], length: 5, options: .init(), sources: &g)) {
            XCTAssertEqual(($0 as? TextSamplingError)?.option, .prompt)
        }
        var none: [RandomGenerator] = []
        XCTAssertThrowsError(try s.generate(prompt: [0], length: 5, options: .init(), sources: &none)) {
            XCTAssertEqual(($0 as? TextSamplingError)?.option, .count)
        }
    }
}
