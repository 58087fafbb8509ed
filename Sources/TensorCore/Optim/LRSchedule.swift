import Foundation

/// A learning rate as a function of the iteration number (0-based), set on an optimizer each step:
/// `optimizer.learningRate = schedule.learningRate(at: iteration)`.
public enum LRSchedule: Sendable, Equatable {
    /// The same rate throughout.
    case constant(Float)
    /// `initial · gamma^⌊iteration / stepSize⌋`, like `torch.optim.lr_scheduler.StepLR`.
    case step(initial: Float, stepSize: Int, gamma: Float)
    /// nanoGPT's `get_lr`: linear warm-up to `maxRate` over `warmupIterations`, cosine decay to `minRate`
    /// at `decayIterations`, then `minRate`.
    case warmupCosine(maxRate: Float, minRate: Float, warmupIterations: Int, decayIterations: Int)
    /// Warm-up, stable, decay (Hägele et al. 2024; MiniCPM's WSD): linear warm-up to `maxRate` over
    /// `warmupIterations`, `maxRate` until `decayStart`, cosine decay to `minRate` at `decayEnd`,
    /// then `minRate`. A run at the stable rate can be continued, and decayed only once its length
    /// is known: what a sweep's last rung does.
    case warmupStableCosine(maxRate: Float, minRate: Float, warmupIterations: Int, decayStart: Int, decayEnd: Int)

    /// The learning rate for iteration `iteration` (computed in Double, as Python does).
    public func learningRate(at iteration: Int) -> Float {
        switch self {
        case .constant(let rate):
            return rate
        case let .step(initial, stepSize, gamma):
            forgePrecondition(stepSize > 0, "LRSchedule.step: stepSize must be positive, got \(stepSize)")
            return Float(Double(initial) * Foundation.pow(Double(gamma), Double(iteration / stepSize)))
        case let .warmupCosine(maxRate, minRate, warmup, decay):
            let maxLR = Double(maxRate), minLR = Double(minRate)
            // 1) linear warm-up; (it + 1) / (warmup + 1) so iteration 0 does not train at rate 0
            if iteration < warmup { return Float(maxLR * Double(iteration + 1) / Double(warmup + 1)) }
            // 2) past the decay horizon: the floor
            if iteration > decay { return Float(minLR) }
            // 3) in between: cosine from maxLR down to minLR
            forgePrecondition(decay > warmup, "LRSchedule.warmupCosine: decayIterations (\(decay)) must exceed warmupIterations (\(warmup))")
            let ratio = Double(iteration - warmup) / Double(decay - warmup)
            let coefficient = 0.5 * (1 + Foundation.cos(Double.pi * ratio))
            return Float(minLR + coefficient * (maxLR - minLR))
        case let .warmupStableCosine(maxRate, minRate, warmup, start, end):
            forgePrecondition(start >= warmup && end > start,
                              "LRSchedule.warmupStableCosine: needs warmupIterations (\(warmup)) ≤ decayStart (\(start)) < decayEnd (\(end))")
            if iteration < warmup { return Float(Double(maxRate) * Double(iteration + 1) / Double(warmup + 1)) }
            if iteration < start { return maxRate }
            // the cosine leg is warmupCosine's, started at decayStart
            return LRSchedule.warmupCosine(maxRate: maxRate, minRate: minRate, warmupIterations: 0, decayIterations: end - start)
                .learningRate(at: iteration - start)
        }
    }
}
