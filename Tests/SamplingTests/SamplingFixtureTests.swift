import XCTest
import Foundation
import TensorCore
import Models
import Training
import Sampling

/// The uniforms of Fixtures/make_sampling_fixtures.py: a 64-bit LCG (Knuth's MMIX constants), top 53 bits.
struct LCGUniforms: UniformSource {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func nextUniform() -> Double {
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) / 9_007_199_254_740_992.0
    }
}

/// Exact sampling against PyTorch: a nanoGPT-shaped model (Fixtures/make_sampling_fixtures.py) decoded
/// by nanoGPT's `generate` loop must come out of `CharSampler` token for token.
final class SamplingFixtureTests: XCTestCase {
    private struct Expected: Decodable {
        struct Sample: Decodable {
            let lcg_seed: UInt64
            let tokens: [Int32]
            let uniforms_head: [Double]
        }
        let block: Int, steps: Int
        let prompt: [Int32], greedy: [Int32], greedy_reuse_context: [Int32]
        let long_prompt: [Int32], greedy_long_prompt: [Int32]
        let samples: [Sample]
    }

    private func load() throws -> (CharSampler, Expected) {
        let root = try XCTUnwrap(Bundle.module.url(forResource: "Fixtures", withExtension: nil))
        let ck = try CharCheckpoint.load(path: root.appendingPathComponent("sampling_model.safetensors").path)
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: root.appendingPathComponent("sampling_expected.json")))
        XCTAssertEqual(ck.model.config.blockSize, expected.block)
        XCTAssertTrue(ck.model.config.bias)
        return (CharSampler(model: ck.model, vocabulary: ck.vocabulary), expected)
    }

    /// Greedy decoding of 3 × block tokens: the same tokens as PyTorch, past two context fills.
    func testGreedyMatchesPyTorchExactly() throws {
        let (sampler, expected) = try load()
        var sources = [LCGUniforms(seed: 0)]
        let out = try sampler.generate(prompt: expected.prompt, length: expected.steps,
                                       options: TextSamplingOptions(temperature: 0), sources: &sources)
        XCTAssertEqual(out, [expected.greedy])
        XCTAssertEqual(sources[0].state, 0, "greedy decoding draws no uniforms")
        // a prompt longer than the block is cropped to its last block tokens, as nanoGPT does
        let long = try sampler.generate(prompt: expected.long_prompt, length: expected.block,
                                        options: TextSamplingOptions(temperature: 0), sources: &sources)
        XCTAssertEqual(long, [expected.greedy_long_prompt])
    }

    /// The half-window approximation is what the script's emulation of it gives, and it is not the
    /// exact decoding (the fixture is chosen so the two depart).
    func testReuseContextIsTheApproximation() throws {
        let (sampler, expected) = try load()
        var sources = [LCGUniforms(seed: 0)]
        let out = try sampler.generate(prompt: expected.prompt, length: expected.steps,
                                       options: TextSamplingOptions(temperature: 0, reuseContext: true), sources: &sources)
        XCTAssertEqual(out, [expected.greedy_reuse_context])
        XCTAssertNotEqual(out[0], expected.greedy)
    }

    /// Temperature 1, no cut, uniforms from the shared LCG: both sequences decoded side by side, and
    /// each alone, match PyTorch's inverse-CDF draws token for token.
    func testSamplingFromFixedUniformsMatchesPyTorch() throws {
        let (sampler, expected) = try load()
        XCTAssertEqual(expected.samples.count, 2)
        for s in expected.samples {
            var lcg = LCGUniforms(seed: s.lcg_seed)
            XCTAssertEqual(s.uniforms_head.map { _ in lcg.nextUniform() }, s.uniforms_head, "the LCG is the script's")
        }
        let options = TextSamplingOptions(temperature: 1, topK: nil)
        var batch = expected.samples.map { LCGUniforms(seed: $0.lcg_seed) }
        let together = try sampler.generate(prompt: expected.prompt, length: expected.steps, options: options, sources: &batch)
        XCTAssertEqual(together, expected.samples.map(\.tokens))
        for s in expected.samples {
            var one = [LCGUniforms(seed: s.lcg_seed)]
            XCTAssertEqual(try sampler.generate(prompt: expected.prompt, length: expected.steps, options: options, sources: &one), [s.tokens])
        }
    }

    /// The window forward's last-position logits equal the full forward's at position T-1.
    func testLastPositionLogitsMatchFullForward() throws {
        let (sampler, expected) = try load()
        let model = sampler.model
        let T = expected.block, V = model.config.vocabSize
        var g = RandomGenerator(seed: 4)
        let tokens = (0..<(3 * T)).map { _ in Int32(g.nextInt(below: V)) }
        let full = withNoGrad { model.forward(tokens, batch: 3, length: T) }.scalars
        let last = WindowInference(model: model, batch: 3, length: T).lastPositionLogits(tokens).scalars
        XCTAssertEqual(last.count, 3 * V)
        for b in 0..<3 {
            for v in 0..<V {
                XCTAssertEqual(last[b * V + v], full[(b * T + T - 1) * V + v], accuracy: 1e-4)
            }
        }
    }
}
