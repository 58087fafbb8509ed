import XCTest
import TensorCore

/// DiffAugment (translation + cutout) and the minibatch-standard-deviation channel.
final class DiffAugmentTests: XCTestCase {
    /// (B, C, H, W) with element value = its flat index + 1 (so 0 only where the transform wrote 0).
    private func counting(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape) { out in for i in 0..<out.count { out[i] = Float(i + 1) } }
    }

    func testIdentityPolicyLeavesImagesAlone() {
        let x = counting([2, 3, 8, 8])
        var g = RandomGenerator(seed: 1)
        let y = x.diffAugmented(DiffAugmentPolicy(translation: false, cutout: false), generator: &g)
        XCTAssertEqual(Array(y.buffer), Array(x.buffer))
    }

    func testTranslationShiftsEveryChannelAlikeAndFillsWithZero() {
        let (h, w) = (16, 16)
        let x = counting([4, 2, h, w])
        var g = RandomGenerator(seed: 5)
        let y = x.diffAugmented(DiffAugmentPolicy(translation: true, cutout: false), generator: &g)
        let r = 2  // round(16 · 0.125)
        var shifted = 0
        for n in 0..<4 {
            // Recover the shift from where input pixel (8, 8) of channel 0 went.
            let plane = n * 2 * h * w
            let target = x.buffer[plane + 8 * w + 8]
            guard let at = (0..<(h * w)).first(where: { y.buffer[plane + $0] == target }) else { return XCTFail("pixel (8, 8) of image \(n) is gone") }
            let (dy, dx) = (at / w - 8, at % w - 8)
            XCTAssertLessThanOrEqual(abs(dy), r)
            XCTAssertLessThanOrEqual(abs(dx), r)
            if dy != 0 || dx != 0 { shifted += 1 }
            for ch in 0..<2 {
                let base = plane + ch * h * w
                for yy in 0..<h {
                    for xx in 0..<w {
                        let (sy, sx) = (yy - dy, xx - dx)
                        let expected: Float = sy >= 0 && sy < h && sx >= 0 && sx < w ? x.buffer[base + sy * w + sx] : 0
                        XCTAssertEqual(y.buffer[base + yy * w + xx], expected, "image \(n) channel \(ch) pixel (\(yy), \(xx))")
                    }
                }
            }
        }
        XCTAssertGreaterThan(shifted, 0, "four images, none shifted: the draws do not reach the transform")
    }

    func testCutoutZeroesOneSquareOfHalfTheSide() {
        let x = counting([8, 1, 16, 16])
        var g = RandomGenerator(seed: 9)
        let y = x.diffAugmented(DiffAugmentPolicy(translation: false, cutout: true), generator: &g)
        for n in 0..<8 {
            let zeros = (0..<256).filter { y.buffer[n * 256 + $0] == 0 }
            let rows = Set(zeros.map { $0 / 16 }), cols = Set(zeros.map { $0 % 16 })
            // A square of side 8, clipped at the borders: a rectangle of rows × columns, each ≤ 8.
            XCTAssertEqual(zeros.count, rows.count * cols.count, "image \(n): the zeros are not one rectangle")
            XCTAssertLessThanOrEqual(rows.count, 8)
            XCTAssertLessThanOrEqual(cols.count, 8)
            XCTAssertGreaterThanOrEqual(rows.count, 4, "the centre is inside the image, so at least half the side stays")
            XCTAssertGreaterThanOrEqual(cols.count, 4)
            for p in 0..<256 where y.buffer[n * 256 + p] != 0 { XCTAssertEqual(y.buffer[n * 256 + p], x.buffer[n * 256 + p]) }
        }
    }

    func testGradientMatchesFiniteDifferences() {
        let x = randomTensor([3, 2, 8, 8], seed: 2)
        assertGradientsMatch([x]) { inputs in
            var g = RandomGenerator(seed: 4)  // the same transform at every evaluation
            return inputs[0].diffAugmented(DiffAugmentPolicy(), generator: &g)
        }
    }

    /// The gradient of a loss on augmented images reaches the images (as G's gradient must, through D's
    /// view of its fakes): 1 at every pixel that landed in the output, 0 at the pixels cut or shifted off.
    func testGradientReachesTheInput() {
        let x = randomTensor([4, 1, 16, 16], seed: 3)
        x.requiresGrad = true
        let augment = DiffAugment(policy: DiffAugmentPolicy(), seed: 11)
        let y = augment(x)
        (y * 2).sum().backward()
        guard let grad = x.grad else { return XCTFail("no gradient reached the input") }
        let reached = grad.buffer.filter { $0 != 0 }
        XCTAssertTrue(reached.allSatisfy { $0 == 2 })
        // As many input pixels receive gradient as output pixels were copied from the input.
        XCTAssertEqual(reached.count, y.buffer.filter { $0 != 0 }.count)
        XCTAssertGreaterThan(reached.count, 4 * 256 / 2, "cutout removes at most a quarter, translation a border")
        XCTAssertLessThan(reached.count, 4 * 256)
    }

    func testMinibatchStandardDeviationValue() {
        // One feature, 1×1: values 0, 2, 0, 2 → one group of 4, mean 1, population std 1.
        let x = Tensor(shape: [4, 1, 1, 1], data: [0, 2, 0, 2])
        let y = MinibatchStandardDeviation(groupSize: 4).forward(x)
        XCTAssertEqual(y.shape, [4, 2, 1, 1])
        assertClose(Array(y.buffer), [0, 1, 2, 1, 0, 1, 2, 1], atol: 1e-6)
        // Groups of 2 over images (0, 2) and (1, 3): values 0, 0 and 2, 4 → std 0 and 1; image n is in group n mod 2.
        let z = MinibatchStandardDeviation(groupSize: 2).forward(Tensor(shape: [4, 1, 1, 1], data: [0, 2, 0, 4]))
        assertClose(Array(z.buffer), [0, 0, 2, 1, 0, 0, 4, 1], atol: 1e-3)
        // A batch that is not a multiple of the group size is one group; one image gets 0.
        XCTAssertEqual(MinibatchStandardDeviation(groupSize: 4).forward(Tensor(shape: [3, 1, 1, 1], data: [1, 3, 5])).shape, [3, 2, 1, 1])
        assertClose(Array(MinibatchStandardDeviation().forward(Tensor(shape: [1, 1, 1, 1], data: [7])).buffer), [7, 0])
    }

    func testMinibatchStandardDeviationGradient() {
        let x = randomTensor([4, 3, 2, 2], seed: 6)
        assertGradientsMatch([x], eps: 1e-2, rtol: 3e-2) { MinibatchStandardDeviation(groupSize: 2).forward($0[0]) }
    }
}
