import Foundation
import TensorCore
import Models

// The optimisation steps of the VAE, the audio VAE and the classifier, as nanoGPT's train.py holds
// its steps beside the loop while model.py holds only modules and the forward pass. Each task owns
// its optimizer and calls one of these; `forge bench` calls them too, so the benchmark times the
// same step that training runs.

/// One Adam step of `vae` on a batch x (B, C, H, W) in [0, 1]: pytorch/examples' `loss_function`
/// summed over the batch (the example back-propagates the sum, so Adam sees that gradient scale).
/// Returns the batch's summed negative ELBO and its two terms, in nats.
@discardableResult
public func vaeTrainingStep(_ vae: VAE, optimizer: Adam, batch x: Tensor, labels: [Int]? = nil,
                            rng: inout RandomGenerator) -> (total: Double, reconstruction: Double, kl: Double) {
    vae.train()
    optimizer.zeroGrad()
    let terms = vae.loss(x, labels: labels, rng: &rng)
    terms.total.backward()
    optimizer.step()
    return (Double(terms.total.item), Double(terms.reconstruction.item), Double(terms.kl.item))
}

/// One Adam step of the classifier's network on a batch (B, C, S, S) with labels; returns the mean
/// cross-entropy and the batch accuracy.
@discardableResult
public func classifierTrainingStep(_ classifier: ImageClassifier, optimizer: Adam, images: Tensor,
                                   labels: [Int]) -> (loss: Double, accuracy: Double) {
    classifier.network.train()
    optimizer.zeroGrad()
    let logits = classifier.network(images)
    let loss = crossEntropy(logits, labels: labels)
    loss.backward()
    optimizer.step()
    let predicted = logits.argmax(axis: 1)
    let correct = zip(predicted, labels).filter { $0 == $1 }.count
    return (Double(loss.item), Double(correct) / Double(max(1, labels.count)))
}

extension VAE {
    /// The optimizer pytorch/examples trains it with: Adam over all parameters at `config.learningRate`.
    public func makeOptimizer() -> Adam { Adam(parameters, learningRate: config.learningRate) }
}

extension ImageClassifier {
    /// Adam over the network's parameters at `config.learningRate`.
    public func makeOptimizer() -> Adam { Adam(network.parameters, learningRate: config.learningRate) }
}

/// One AdamW step of the char model on a batch of token ids x, y (B·T each, row-major): the mean
/// cross-entropy, backward, the gradient norm clipped to `gradClip` (0 = off), the update, and the
/// gradients cleared (nanoGPT's train.py). A non-finite loss applies nothing and is returned as is,
/// so the caller can stop.
@discardableResult
public func charTrainingStep(_ model: CharTransformer, optimizer: AdamW, x: [Int32], y: [Int32], batch B: Int, length T: Int,
                             gradClip: Float) -> Double {
    let (_, loss) = model.forward(x, targets: y, batch: B, length: T)
    let value = Double(loss.item)
    guard value.isFinite else { optimizer.zeroGrad(); return value }
    loss.backward()
    if gradClip > 0 { clipGradNorm(model.parameters, maxNorm: gradClip) }
    optimizer.step()
    optimizer.zeroGrad()
    return value
}

