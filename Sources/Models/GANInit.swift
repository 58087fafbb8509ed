import Foundation
import TensorCore

// What the image DCGAN and the audio WaveGAN share: the DCGAN initialisation helpers (pytorch/examples
// `dcgan/main.py`'s `weights_init`). Their training step is in Training (GANTraining.swift).

/// N(mean, std) initial values of `shape` (the DCGAN `weights_init`).
func dcganNormal(_ shape: [Int], mean: Float = 0, std: Float = 0.02, _ g: inout RandomGenerator) -> Tensor {
    Tensor.randn(shape, mean: mean, std: std, generator: &g)
}

/// BatchNorm with weight N(1, 0.02) and bias 0 (DCGAN's `weights_init` for BatchNorm layers).
func dcganBatchNorm(_ features: Int, _ g: inout RandomGenerator) -> BatchNorm2d {
    let bn = BatchNorm2d(features)
    bn.weight!.mutablePointer.update(from: dcganNormal([features], mean: 1, &g).pointer, count: features)
    return bn
}


/// Floating-point operations of one step of the non-saturating (or hinge) game per item, from the
/// two networks' forward FLOPs: D runs forward 3× (real, fake, G step); its backward costs ≈ 2×
/// forward (weight and input gradients) in the D step on real and on fake, ≈ 1× in the G step (D's
/// weights are frozen, only input gradients flow); G runs forward once and backward once (2×).
func ganTrainingFLOPs(discriminatorForward d: Double, generatorForward g: Double) -> Double {
    (3 + 2 + 2 + 1) * d + (1 + 2) * g
}
