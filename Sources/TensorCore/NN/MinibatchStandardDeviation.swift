import Foundation

/// Minibatch standard deviation (Karras, Aila, Laine & Lehtinen 2018, ProGAN; group form of StyleGAN):
/// appends one channel holding, for each image, the mean over (C, H, W) of the per-feature standard
/// deviation across its group of images. A batch of near-copies has a small value there, so the
/// discriminator can see a lack of variety that no single image shows: a push against collapse.
///
/// (B, C, H, W) → (B, C + 1, H, W). Groups are images n, n + M, n + 2M, … with M = B / groupSize
/// (StyleGAN's reshape); when B is not a multiple of `groupSize` the whole batch is one group.
/// Made of differentiable ops, so gradients flow through the statistic too.
public final class MinibatchStandardDeviation: Layer {
    /// Stored for `Module`; the layer behaves the same in training and evaluation.
    public var isTraining = true
    /// Images per group (StyleGAN's 4); the batch is used whole when B is not a multiple of it.
    public let groupSize: Int
    /// Added to the variance before the square root (keeps the gradient finite for identical images).
    public let epsilon: Float

    /// A layer with groups of `groupSize` images (traps unless ≥ 2) and `epsilon` under the square root.
    public init(groupSize: Int = 4, epsilon: Float = 1e-8) {
        forgePrecondition(groupSize >= 2, "MinibatchStandardDeviation: the group size must be at least 2, got \(groupSize)")
        self.groupSize = groupSize
        self.epsilon = epsilon
    }

    /// x (B, C, H, W) → (B, C + 1, H, W): `x` with the group statistic appended as its last channel,
    /// the same value over the whole plane of an image. A batch of one gets a 0 channel. Traps unless
    /// `x` has rank 4.
    public func forward(_ x: Tensor) -> Tensor {
        forgePrecondition(x.rank == 4, "MinibatchStandardDeviation: needs (B, C, H, W), got shape \(x.shape)")
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        // One image has no spread: its channel is 0.
        if b < 2 { return Tensor.concat([x, Tensor.zeros([b, 1, h, w])], axis: 1) }
        let g = b % groupSize == 0 ? groupSize : b
        let m = b / g
        let grouped = x.reshaped([g, m, c, h, w])
        let centred = grouped - grouped.mean(axis: 0, keepDims: true)                 // (G, M, C, H, W)
        let std = ((centred * centred).mean(axis: 0) + epsilon).sqrt()                  // (M, C, H, W)
        let statistic = std.mean(axes: [1, 2, 3], keepDims: true)                      // (M, 1, 1, 1)
        let channel = statistic.reshaped([1, m, 1, 1, 1]).expanded(to: [g, m, 1, h, w]).reshaped([b, 1, h, w])
        return Tensor.concat([x, channel], axis: 1)
    }
}
