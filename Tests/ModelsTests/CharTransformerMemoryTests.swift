import XCTest
import TensorCore
import Models

/// What a char transformer's training forward keeps alive for backward, counted with the tensor
/// pool's live bytes. Per block the minimum without recomputing a product is 10 tensors of the
/// residual stream's size (B·T·C floats): x (for ln_1), q·k·v (3, for attention and c_attn's
/// weight gradient via the recomputed ln_1(x)), the attention output (1, for attention's backward
/// and c_proj), x after attention (1, for ln_2) and the MLP's pre-GELU h (4). Before the fused
/// LayerNorm/GELU linears and the graph that keeps no inputs, it was 18 (ln_1(x), ln_2(x), gelu(h)
/// and both residual branches were kept too).
final class CharTransformerMemoryTests: XCTestCase {
    func testTrainingForwardKeepsTenResidualSizedTensorsPerBlock() {
        let (B, T, C) = (4, 16, 32)
        let unit = B * T * C * 4  // bytes of one (B, T, C) tensor; a size class of its own (2^11 floats)
        func kept(layers: Int) -> (afterForward: Int, afterBackward: Int) {
            let config = CharTransformerConfig(vocabSize: 16, blockSize: T, layers: layers, heads: 4, embedding: C)
            let model = CharTransformer(config, seed: 5)
            var g = RandomGenerator(seed: 6)
            let x = (0..<(B * T)).map { _ in Int32(g.nextInt(below: 16)) }
            let before = TensorMemory.liveBytes
            let (_, loss) = model.forward(x, targets: x, batch: B, length: T)
            let afterForward = TensorMemory.liveBytes - before
            loss.backward()
            let afterBackward = TensorMemory.liveBytes - before
            return (afterForward, afterBackward)
        }
        let one = kept(layers: 1), two = kept(layers: 2)
        let perBlock = two.afterForward - one.afterForward
        // + per block: attention's log-sum-exp (B·H·T floats) and two LayerNorms' mean and rstd (4·B·T)
        let statistics = (B * 4 * T + 4 * B * T) * 4
        XCTAssertLessThanOrEqual(perBlock, 10 * unit + statistics, "a block keeps more than 10 (B, T, C) tensors for backward")
        XCTAssertGreaterThanOrEqual(perBlock, 10 * unit, "a block cannot keep less than x, qkv, y, x + attn and h")
        // after backward only the gradients remain (one per parameter, and those of the second block)
        let blockParameters = 12 * C * C + 4 * C  // c_attn, c_proj, c_fc, mlp c_proj; two LayerNorms
        XCTAssertLessThanOrEqual(two.afterBackward - one.afterBackward, blockParameters * 4 + 4096,
                                 "backward should release every saved activation")
    }
}
