import Foundation

// Conditional batch normalisation (de Vries et al. 2017; the generator of SNGAN-projection and
// BigGAN): BatchNorm without its own affine transform, followed by a per-class scale and shift,
//     y = x̂ · γ[label] + β[label],
// with γ initialised to 1 and β to 0. The statistics are those of the whole batch (all classes), as
// in those papers; only the affine part depends on the class.

/// BatchNorm over axis 1 with a (classes, features) table of scales `weight` and shifts `bias`.
/// Names: `weight`, `bias`, `bn.running_mean`, `bn.running_var`, `bn.num_batches_tracked`, as a PyTorch
/// module holding `self.bn = nn.BatchNorm2d(features, affine=False)` and two parameters would save them.
public final class ConditionalBatchNorm2d: Module {
    /// Training mode (batch statistics, running statistics updated); `train()`/`eval()` pass it to `bn`.
    public var isTraining = true
    /// The number of classes (rows of `weight`/`bias`; labels must lie in 0..<classCount) and of
    /// channels (axis 1 of the input).
    public let classCount: Int, features: Int
    /// Per-class scale γ (classes, features), initially 1.
    public let weight: Tensor
    /// Per-class shift β (classes, features), initially 0.
    public let bias: Tensor
    /// The normalisation without affine transform, holding the running statistics.
    public let bn: BatchNorm2d

    /// A conditional BatchNorm for `features` channels and `classes` classes, γ = 1 and β = 0 for every
    /// class, so it starts as a plain BatchNorm. `eps` and `momentum` are `BatchNorm2d`'s (nil momentum:
    /// a cumulative average). Traps unless both counts are ≥ 1.
    public init(_ features: Int, classes: Int, eps: Float = 1e-5, momentum: Float? = 0.1) {
        forgePrecondition(classes >= 1 && features >= 1, "ConditionalBatchNorm2d: needs classes ≥ 1 and features ≥ 1, got \(classes), \(features)")
        classCount = classes
        self.features = features
        weight = Tensor.ones([classes, features])
        bias = Tensor.zeros([classes, features])
        weight.requiresGrad = true
        bias.requiresGrad = true
        bn = BatchNorm2d(features, eps: eps, momentum: momentum, affine: false)
    }

    /// `weight` (γ) and `bias` (β), both (classes, features).
    public var localParameters: [(String, Tensor)] { [("weight", weight), ("bias", bias)] }
    /// The inner `bn`, so its running statistics are saved as `bn.running_mean` and so on.
    public var namedChildren: [(String, any Module)] { [("bn", bn)] }

    /// x: (B, C, *spatial), labels: B class ids → (B, C, *spatial).
    public func forward(_ x: Tensor, labels: [Int]) -> Tensor {
        forgePrecondition(x.rank >= 2 && x.shape[1] == features, "ConditionalBatchNorm2d(\(features)): input \(x.shape) does not have \(features) channels")
        let b = x.shape[0]  // read after the rank check, so a scalar gets the message above
        forgePrecondition(labels.count == b, "ConditionalBatchNorm2d: \(labels.count) labels for a batch of \(b)")
        forgePrecondition(labels.allSatisfy { (0..<classCount).contains($0) }, "ConditionalBatchNorm2d: a label is outside 0..<\(classCount)")
        let ids = labels.map { Int32($0) }
        let gamma = embedding(weight, ids, shape: [b])  // (B, C)
        let beta = embedding(bias, ids, shape: [b])
        return bn.forward(x, scale: gamma, shift: beta)
    }
}
