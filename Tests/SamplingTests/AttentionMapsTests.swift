import Foundation
import XCTest
import TensorCore
import DataIO
import Models
import Figures
import Sampling

/// A one-layer, two-head char model whose attention is set by hand. Token embeddings are 0 and the
/// position embedding of position t is the one-hot e_t, so ln_1(x_t) = a·e_t − b·1. Head 0's query
/// reads the next coordinate (q_t = β·(a·e_{t−1} − b·1)) and its key the same one (k_s = a·e_s − b·1),
/// so q_t·k_s = β·a²·[s = t−1] + a constant of the row: it attends to the previous token. Head 1's
/// query is 0, so it attends uniformly to every visible position.
private func previousTokenModel(T: Int = 8, beta: Float = 2) throws -> CharTransformer {
    let C = 2 * T
    let config = CharTransformerConfig(vocabSize: 5, blockSize: T, layers: 1, heads: 2, embedding: C)
    let model = CharTransformer(config, seed: 3)
    func set(_ t: Tensor, _ value: (Int, Int) -> Float) {
        let columns = t.shape[1]
        let p = t.mutablePointer
        for i in 0..<t.shape[0] { for j in 0..<columns { p[i * columns + j] = value(i, j) } }
    }
    set(model.transformer.wte.weight) { _, _ in 0 }
    set(model.transformer.wpe.weight) { t, j in j == t ? 1 : 0 }
    set(model.transformer.h[0].attn.c_attn.weight) { row, j in
        if row < T { return j == row + 1 ? beta : 0 }          // head 0 query: coordinate t+1 of ln_1(x)
        if row >= C && row < C + T { return j == row - C ? 1 : 0 }   // head 0 key: coordinate s
        return row < 2 * C ? 0 : (j == (row - 2 * C) ? 1 : 0)  // head 1: q = k = 0; v = ln_1(x)
    }
    return model
}

final class AttentionMapsTests: XCTestCase {
    func testTheHandSetHeadAttendsToThePreviousTokenInTheNumbersAndInThePNG() throws {
        let T = 8
        let folder = NSTemporaryDirectory() + "forge-explain-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: folder) }
        // through a checkpoint file, as `forge explain char` reads it
        let vocabulary = Array("abcde".unicodeScalars)
        try CharCheckpoint.save(model: try previousTokenModel(T: T), vocabulary: vocabulary, to: folder + "/hand.safetensors")
        let ck = try CharCheckpoint.load(path: folder + "/hand.safetensors")
        let tokens = try ck.encode("abcdeabc")
        let analysis = AttentionMaps.analyse(ck.model, tokens: tokens)

        let head0 = analysis.attention[0][0], head1 = analysis.attention[0][1]
        for t in 1..<T {
            XCTAssertGreaterThan(head0[t * T + t - 1], 0.99, "head 0 row \(t) must attend to position \(t - 1)")
            for s in 0...t { XCTAssertEqual(head1[t * T + s], 1 / Double(t + 1), accuracy: 1e-6, "head 1 is uniform") }
            for s in (t + 1)..<T { XCTAssertEqual(head0[t * T + s], 0) }   // causal
        }
        XCTAssertEqual(head0[0], 1, accuracy: 1e-12)

        let characters = tokens.map { ck.decode([$0]) }
        let (image, layout) = AttentionMaps.heatmapGrid(analysis, characters: characters, layers: [0], heads: [0, 1], title: "hand-set")
        XCTAssertTrue(layout.labelled)
        try ImageCodec.writePNG(image, to: folder + "/att.png")
        let png = try ImageCodec.load(path: folder + "/att.png")
        XCTAssertEqual(png.width, layout.width)
        XCTAssertEqual(png.height, layout.height)
        func brightness(_ column: Int, _ q: Int, _ k: Int) -> Float {
            let c = layout.center(row: 0, column: column, query: q, key: k)
            return (0..<3).map { png[c.x, c.y, $0] }.reduce(0, +)
        }
        for t in 1..<T {
            let previous = brightness(0, t, t - 1)
            for s in 0...t where s != t - 1 {
                XCTAssertGreaterThan(previous, brightness(0, t, s) + 1, "head 0 row \(t): the sub-diagonal cell is the brightest")
            }
            // head 1: every visible cell of a row has one colour (1/(t+1)), dimmer row by row
            for s in 0...t { XCTAssertEqual(brightness(1, t, s), brightness(1, t, 0), accuracy: 0.02) }
            XCTAssertLessThan(brightness(1, t, 0), brightness(1, t - 1, 0))
        }
        // the characters label the axes: ink left of each row
        let o = layout.origins[0][0]
        var ink = false
        for dy in 0..<(layout.cell * T) {
            for x in (o.x - 8)..<(o.x - 2) where png[x, o.y + dy, 0] < 0.3 { ink = true }
        }
        XCTAssertTrue(ink)
    }

    func testRecomputedAttentionReproducesTheModelsAttentionOutputAndTheLensEndsAtTheModelsPrediction() throws {
        let config = CharTransformerConfig(vocabSize: 11, blockSize: 16, layers: 2, heads: 4, embedding: 32)
        let model = CharTransformer(config, seed: 9)
        model.eval()
        let T = 12
        var g = RandomGenerator(seed: 4)
        let tokens = (0..<T).map { _ in Int32(g.nextInt(below: 11)) }
        let analysis = AttentionMaps.analyse(model, tokens: tokens)
        XCTAssertEqual(analysis.attention.count, 2)
        XCTAssertEqual(analysis.lens.count, 3)

        // y = Σ_s p(t, s)·v_s per head, through c_proj, equals the block's own attention output
        withNoGrad {
            let C = config.embedding, D = C / config.heads
            let x = model.transformer.wte(tokens, shape: [1, T]) + model.transformer.wpe((0..<T).map { Int32($0) }, shape: [T])
            let block = model.transformer.h[0]
            let h = block.ln_1(x)
            let qkv = block.attn.c_attn(h).scalars
            var y = [Float](repeating: 0, count: T * C)
            for head in 0..<config.heads {
                let p = analysis.attention[0][head]
                for t in 0..<T { for s in 0...t { for d in 0..<D {
                    y[t * C + head * D + d] += Float(p[t * T + s]) * qkv[s * 3 * C + 2 * C + head * D + d]
                } } }
            }
            let mine = block.attn.c_proj(Tensor(shape: [1, T, C], data: y)).scalars
            let theirs = block.attn.forward(h).scalars
            XCTAssertEqual(mine.count, theirs.count)
            let worst = zip(mine, theirs).map { abs($0 - $1) }.max() ?? .infinity
            XCTAssertLessThan(worst, 1e-5)
            // the last lens entry is the model's own next-token distribution
            let logits = model.forward(tokens, batch: 1, length: T).scalars
            let V = config.vocabSize
            for t in [0, T - 1] {
                let row = logits[(t * V)..<((t + 1) * V)].map(Double.init)
                let m = row.max()!
                let z = row.map { Foundation.exp($0 - m) }.reduce(0, +)
                for v in 0..<V { XCTAssertEqual(analysis.nextProbabilities(at: t)[v], Foundation.exp(row[v] - m) / z, accuracy: 1e-5) }
            }
        }
        let report = AttentionMaps.report(analysis, position: T - 1, layers: [0, 1], heads: [0, 1, 2, 3]) { "t\($0)" }
        XCTAssertEqual(report.components(separatedBy: "layer 1 head 3:").count, 2)
        XCTAssertTrue(report.contains("next character (top 5):"))
        XCTAssertTrue(report.contains("embeddings"))
        // 12 earlier positions are visible, the report lists the 10 most attended
        let line = try XCTUnwrap(report.split(separator: "\n").first { $0.contains("layer 0 head 0:") })
        XCTAssertEqual(line.components(separatedBy: "  ").count - 1, 10)
    }
}
