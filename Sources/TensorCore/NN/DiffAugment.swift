import Foundation

// Differentiable augmentation (Zhao, Liu, Lin, Zhu & Han 2020, "Differentiable Augmentation for
// Data-Efficient GAN Training"): the discriminator sees every real *and* fake batch through the same
// family of random transforms, in D's step and in G's, and the transforms are differentiable so G's
// gradient passes through them. D then cannot memorise a small training set, and since fakes are
// augmented too, G is not pushed to produce augmented-looking images.
// The two transforms of the paper's 'translation,cutout' policy, as its reference code draws them:
// * translation: each image shifted by integers in [−r, r] in x and y, r = round(side·0.125)
//   (4 pixels at 32), the uncovered border filled with 0;
// * cutout: one square of side round(side·0.5) per image set to 0, its centre uniform over the image
//   (the square clipped at the borders).
// Both are a per-image gather with a 0/1 mask, so one op does both and its backward is the scatter.

/// Which of DiffAugment's transforms to apply.
public struct DiffAugmentPolicy: Sendable, Equatable, Codable {
    /// Shift each image by a random whole number of pixels in x and y, filling the border with 0.
    public var translation: Bool
    /// Set one random square of each image to 0.
    public var cutout: Bool
    /// The largest shift as a share of the side (the paper's 0.125).
    public var translationRatio: Double
    /// The cutout square's side as a share of the image side (the paper's 0.5).
    public var cutoutRatio: Double

    /// A policy; the defaults are the paper's 'translation,cutout' with its ratios.
    public init(translation: Bool = true, cutout: Bool = true, translationRatio: Double = 0.125, cutoutRatio: Double = 0.5) {
        (self.translation, self.cutout, self.translationRatio, self.cutoutRatio) = (translation, cutout, translationRatio, cutoutRatio)
    }

    /// Neither transform.
    public var isIdentity: Bool { !translation && !cutout }
}

/// Draws and applies DiffAugment transforms from its own random generator (a class, so the
/// discriminator closures of a training step can share it without capturing an inout generator).
public final class DiffAugment {
    /// The transforms every call applies.
    public let policy: DiffAugmentPolicy
    /// The generator the transforms are drawn from; every call advances it.
    public private(set) var generator: RandomGenerator

    /// An augmenter for `policy` whose random stream starts from `seed`, so a seeded run augments the
    /// same way every time.
    public init(policy: DiffAugmentPolicy, seed: UInt64) {
        self.policy = policy
        generator = RandomGenerator(seed: seed)
    }

    /// `images` (B, C, H, W) with a fresh random translation and cutout per image.
    public func callAsFunction(_ images: Tensor) -> Tensor {
        images.diffAugmented(policy, generator: &generator)
    }
}

extension Tensor {
    /// This (B, C, H, W) batch with `policy`'s random transforms drawn from `generator` (per image:
    /// the x shift, the y shift, then the cutout centre's x and y). Differentiable: the gradient of a
    /// pixel is the output gradient where it landed, 0 where it was cut out or shifted off the image.
    public func diffAugmented(_ policy: DiffAugmentPolicy, generator: inout RandomGenerator) -> Tensor {
        forgePrecondition(rank == 4, "diffAugmented: needs (B, C, H, W), got shape \(shape)")
        let (b, c, h, w) = (shape[0], shape[1], shape[2], shape[3])
        // Per image: the output pixel (y, x) reads input (y − dy, x − dx) unless that is outside or cut.
        var shifts = [(dy: Int, dx: Int)](repeating: (0, 0), count: b)
        var cuts = [(y0: Int, y1: Int, x0: Int, x1: Int)](repeating: (0, 0, 0, 0), count: b)
        func uniformInt(_ lower: Int, _ upperInclusive: Int) -> Int {
            lower + generator.nextInt(below: upperInclusive - lower + 1)
        }
        if policy.translation {
            let ry = Int((Double(h) * policy.translationRatio).rounded()), rx = Int((Double(w) * policy.translationRatio).rounded())
            for n in 0..<b { shifts[n] = (uniformInt(-ry, ry), uniformInt(-rx, rx)) }
        }
        if policy.cutout {
            let sy = Int((Double(h) * policy.cutoutRatio).rounded()), sx = Int((Double(w) * policy.cutoutRatio).rounded())
            for n in 0..<b {
                let cy = uniformInt(0, h - 1), cx = uniformInt(0, w - 1)
                cuts[n] = (Swift.max(0, cy - sy / 2), Swift.min(h, cy - sy / 2 + sy), Swift.max(0, cx - sx / 2), Swift.min(w, cx - sx / 2 + sx))
            }
        }
        // source[n][p] = the input pixel index (within a channel plane) output pixel p reads, or −1.
        var sources = [Int32](repeating: -1, count: b * h * w)
        for n in 0..<b {
            let (dy, dx) = shifts[n], cut = cuts[n]
            for y in 0..<h {
                for x in 0..<w {
                    if y >= cut.y0 && y < cut.y1 && x >= cut.x0 && x < cut.x1 { continue }
                    let sy = y - dy, sx = x - dx
                    if sy >= 0 && sy < h && sx >= 0 && sx < w { sources[(n * h + y) * w + x] = Int32(sy * w + sx) }
                }
            }
        }
        let plane = h * w
        let out = Tensor(shape: shape, repeating: 0)
        let src = pointer, dst = out.mutablePointer
        for n in 0..<b {
            for ch in 0..<c {
                let base = (n * c + ch) * plane
                for p in 0..<plane {
                    let s = sources[n * plane + p]
                    if s >= 0 { dst[base + p] = src[base + Int(s)] }
                }
            }
        }
        let inShape = shape
        return Tensor.record(out, "diff_augment", [self]) { g in
            let dx = Tensor(shape: inShape, repeating: 0)
            let gp = g.pointer, dp = dx.mutablePointer
            for n in 0..<b {
                for ch in 0..<c {
                    let base = (n * c + ch) * plane
                    for p in 0..<plane {
                        let s = sources[n * plane + p]
                        if s >= 0 { dp[base + Int(s)] += gp[base + p] }
                    }
                }
            }
            return [dx]
        }
    }
}
