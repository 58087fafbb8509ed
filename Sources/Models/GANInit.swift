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

