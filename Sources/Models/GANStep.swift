import Foundation
import TensorCore

// What the image DCGAN and the audio WaveGAN share: the DCGAN initialisation helpers and one step of
// the non-saturating GAN game as pytorch/examples `dcgan/main.py` plays it.

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

/// One GAN step on a real batch (its first dimension is the batch size):
/// (1) update D to maximise log D(x) + log(1 − D(G(z))) on the real batch and a fake batch cut from G's graph;
/// (2) update G to maximise log D(G(z)) with D's weights frozen, so backward skips their gradients
///     (PyTorch's example computes and then discards them; the update is the same).
/// `discriminate` gives D's logits (B) for a batch, `makeFake` draws z and returns G(z); they are called
/// in this order: D(real), makeFake, D(fake) for D, D(fake) for G (callers' random draws depend on it).
func nonSaturatingGANStep(real: Tensor, discriminator: any Module, optimizerD: Adam, optimizerG: Adam,
                          discriminate: (Tensor) -> Tensor, makeFake: () -> Tensor) -> GANStepResult {
    let b = real.shape[0]
    let ones = Tensor.ones([b]), zeros = Tensor.zeros([b])

    // (1) D step: real batch, then a fake batch cut from G's graph.
    optimizerD.zeroGrad()
    let outReal = discriminate(real)
    let errDReal = binaryCrossEntropyWithLogits(outReal, targets: ones)
    errDReal.backward()
    let fake = makeFake()
    let outFake = discriminate(fake.detach())
    let errDFake = binaryCrossEntropyWithLogits(outFake, targets: zeros)
    errDFake.backward()
    optimizerD.step()

    // (2) G step with D frozen.
    optimizerG.zeroGrad()
    let dParams = discriminator.parameters
    for p in dParams { p.requiresGrad = false }
    let outG = discriminate(fake)
    let errG = binaryCrossEntropyWithLogits(outG, targets: ones)
    errG.backward()
    for p in dParams { p.requiresGrad = true }
    optimizerG.step()

    return GANStepResult(lossD: Double(errDReal.item) + Double(errDFake.item), lossG: Double(errG.item),
                         dX: meanSigmoid(outReal), dGZ1: meanSigmoid(outFake), dGZ2: meanSigmoid(outG))
}

/// mean(σ(logits)) in Double.
private func meanSigmoid(_ logits: Tensor) -> Double {
    var s = 0.0
    for v in logits.buffer { s += 1 / (1 + Foundation.exp(-Double(v))) }
    return s / Double(max(1, logits.count))
}
