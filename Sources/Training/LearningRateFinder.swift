import Foundation
import TensorCore
import DataIO
import Figures

// Leslie Smith's learning-rate range test ("Cyclical Learning Rates for Training Neural Networks",
// 2017, §3.3), as fastai popularised it: train a fresh model for a few hundred steps while the rate
// grows exponentially, record the loss, stop once it has clearly diverged, and read a good rate off
// the curve. It runs any `TrainingTask` (through `step()` and `optimizers`), so it works for every kind.

/// Settings of a learning-rate range test.
public struct LearningRateFinderOptions: Sendable {
    /// The rate of the first step.
    public var startRate: Double = 1e-7
    /// The rate the last step would reach; the rate grows by (end/start)^(1/(steps−1)) per step.
    public var endRate: Double = 10
    /// Steps of the test (fewer when the loss diverges first).
    public var steps: Int = 200
    /// Weight of the past in the exponential moving average of the loss (fastai's 0.98); the average
    /// is bias-corrected so its first values are not pulled towards 0. A short test uses at most
    /// 1 − 4/steps (0.98 for 200 steps), so that the average's memory (~1/(1−β) steps) stays a small
    /// part of the test and a blow-up is still caught.
    public var smoothing: Double = 0.98
    /// The test stops when the smoothed loss exceeds this multiple of its minimum so far.
    public var divergenceFactor: Double = 4

    /// Settings with fastai's defaults (1e-7 → 10 over 200 steps, smoothing 0.98, stop at 4× the minimum).
    public init(startRate: Double = 1e-7, endRate: Double = 10, steps: Int = 200, smoothing: Double = 0.98,
                divergenceFactor: Double = 4) {
        self.startRate = startRate
        self.endRate = endRate
        self.steps = steps
        self.smoothing = smoothing
        self.divergenceFactor = divergenceFactor
    }

    /// Why these settings cannot work, as a `TrainingError.invalidValue` (fields `startRate`,
    /// `endRate`, `steps`, `smoothing`, `divergenceFactor`), or nil.
    public func problem() -> TrainingError? {
        do {
            try checkValue(startRate, "startRate", "a positive number") { $0 > 0 }
            try checkValue(endRate, "endRate", "a number above startRate (\(startRate))") { $0 > startRate }
            try checkValue(Double(steps), "steps", "at least 2") { $0 >= 2 }
            try checkValue(smoothing, "smoothing", "in [0, 1)") { $0 >= 0 && $0 < 1 }
            try checkValue(divergenceFactor, "divergenceFactor", "above 1") { $0 > 1 }
        } catch let error as TrainingError {
            return error
        } catch {
            return .invalidConfiguration("\(error)")
        }
        return nil
    }

    /// The rate of step `i` (0-based): start · (end/start)^(i/(steps−1)).
    public func rate(at i: Int) -> Double {
        startRate * Foundation.pow(endRate / startRate, Double(i) / Double(steps - 1))
    }
}

/// What a range test measured and what it suggests.
public struct LearningRateFinderResult: Sendable {
    /// The rate of every step that ran (the first optimizer's, when a task has several).
    public let rates: [Double]
    /// The loss each step returned (see `LearningRateFinder.lossName`).
    public let losses: [Double]
    /// The bias-corrected exponential moving average of `losses`: what the stop rule watches, online.
    public let smoothedLosses: [Double]
    /// `losses` averaged over a centred window (±`window` steps, clipped at the ends) up to the
    /// divergence: smoothing without the moving average's lag (with β = 0.98 it trails the raw curve by
    /// about 50 steps, i.e. a decade of rate over 200 steps), which the suggestions are read from.
    public let centredLosses: [Double]
    /// The step (0-based) at which the loss diverged (NaN/Inf, or the smoothed loss past
    /// `divergenceFactor` × its minimum) and the test stopped; nil when it ran all its steps.
    public let divergedAt: Int?
    /// The rate where the centred loss falls fastest per factor of rate (the most negative slope of
    /// `centredLosses` against log rate), or nil when the curve has fewer than 3 finite points.
    public let steepestRate: Double?
    /// The rate at the centred loss's minimum, divided by 10; nil when no finite point exists.
    public let minimumRateOverTen: Double?
    /// The rate at the centred loss's minimum.
    public let minimumRate: Double?

    /// The suggested rate: the steepest-descent rate when it exists and lies below the minimum's rate,
    /// else min-loss rate / 10. The steepest descent is where training makes the most progress per step
    /// while still stable; the minimum itself sits at the edge of divergence, so a tenth of it is the
    /// conservative fallback (fastai's `lr_min`).
    public var suggestedRate: Double? {
        if let s = steepestRate, let m = minimumRate, s <= m { return s }
        return minimumRateOverTen ?? steepestRate
    }

    /// Which rule gave `suggestedRate`: "steepest descent" or "minimum / 10".
    public var suggestionRule: String {
        if let s = steepestRate, let m = minimumRate, s <= m { return "steepest descent" }
        return "minimum / 10"
    }

    /// The record as CSV: step, lr, loss, smoothed_loss.
    public var csv: String {
        var text = "step,lr,loss,smoothed_loss,centred_loss\n"
        for i in rates.indices {
            text += "\(i + 1),\(rates[i]),\(losses[i]),\(smoothedLosses[i]),\(i < centredLosses.count ? "\(centredLosses[i])" : "")\n"
        }
        return text
    }

    /// Loss (raw and smoothed) against the rate on a log axis, the suggestion marked in the title.
    public func plot(title: String) -> LinePlot {
        // The diverging tail is clipped at 1.5× the highest loss before the minimum, so that it does
        // not flatten the interesting part of the curve.
        let before = minimumRate.flatMap { m in rates.firstIndex(of: m) }.map { Array(centredLosses[...$0]) } ?? centredLosses
        let cap = (before.filter(\.isFinite).max() ?? .infinity) * 1.5
        var plot = LinePlot(title: title, xLabel: "learning rate", yLabel: "loss", series: [
            .init(name: "loss", x: rates, y: losses.map { Swift.min($0, cap) }),
            .init(name: "centred mean", x: Array(rates.prefix(centredLosses.count)), y: centredLosses.map { Swift.min($0, cap) }),
            .init(name: "moving average", x: rates, y: smoothedLosses.map { Swift.min($0, cap) }),
        ], logX: true)
        if let s = suggestedRate { plot.title += String(format: "  suggested %.2g", s) }
        return plot
    }
}

/// Runs Leslie Smith's range test on a `TrainingTask`.
public enum LearningRateFinder {
    /// The scalar the test follows among a task's metrics: the one named "loss" when there is one,
    /// else the sum of every metric whose name contains "loss" (a GAN's loss_d + loss_g: both players
    /// must stay stable for the rate to be usable), else the first metric.
    public static func lossIndices(_ names: [String]) -> [Int] {
        if let k = names.firstIndex(of: "loss") { return [k] }
        let losses = names.indices.filter { names[$0].lowercased().contains("loss") }
        return losses.isEmpty ? (names.isEmpty ? [] : [0]) : losses
    }

    /// The name of what the test follows, e.g. "loss" or "loss_d+loss_g".
    public static func lossName(_ names: [String]) -> String {
        lossIndices(names).map { names[$0] }.joined(separator: "+")
    }

    /// Trains `task` for up to `options.steps` steps with the rate growing exponentially from
    /// `startRate` to `endRate`, and stops early when the loss diverges. Every optimizer's rate is set
    /// before each step; a task with several optimizers keeps their initial ratios (a GAN with a D/G
    /// rate ratio keeps it), the first optimizer getting the scheduled rate. The task's own schedule is
    /// ignored. The task is trained in place: pass a fresh one, not one whose weights matter.
    /// `progress` receives (step, rate, loss) after every step.
    public static func run(_ task: any TrainingTask, options: LearningRateFinderOptions,
                           progress: ((Int, Double, Double) -> Void)? = nil) throws -> LearningRateFinderResult {
        if let problem = options.problem() { throw problem }
        guard task.stepsPerEpoch > 0 else { throw TrainingError.invalidConfiguration("the task has no steps per epoch (too little data for one batch?)") }
        let indices = lossIndices(task.metricNames)
        guard !indices.isEmpty else { throw TrainingError.invalidConfiguration("the task reports no metrics to follow") }
        let initial = task.optimizers.map { Double($0.optimizer.learningRate) }
        let base = initial.first ?? 1
        let ratios = initial.map { base > 0 ? $0 / base : 1 }

        var rates: [Double] = [], losses: [Double] = [], smoothed: [Double] = []
        let beta = Swift.max(0, Swift.min(options.smoothing, 1 - 4 / Double(options.steps)))
        var average = 0.0, minimum = Double.infinity
        var divergedAt: Int? = nil
        var epoch = 0, stepInEpoch = 0
        task.beginEpoch(0, skippingSteps: 0)
        for i in 0..<options.steps {
            if stepInEpoch == task.stepsPerEpoch {
                epoch += 1
                stepInEpoch = 0
                task.beginEpoch(epoch, skippingSteps: 0)
            }
            let rate = options.rate(at: i)
            for (k, (_, optimizer)) in task.optimizers.enumerated() { optimizer.learningRate = Float(rate * ratios[k]) }
            let values = task.step()
            stepInEpoch += 1
            let loss = indices.reduce(0.0) { $0 + values[$1] }
            average = beta * average + (1 - beta) * loss
            let value = average / (1 - Foundation.pow(beta, Double(i + 1)))
            rates.append(rate)
            losses.append(loss)
            smoothed.append(value)
            progress?(i + 1, rate, loss)
            if !loss.isFinite || !value.isFinite || value > options.divergenceFactor * minimum {
                divergedAt = i
                break
            }
            minimum = Swift.min(minimum, value)
        }

        // Suggestions from the points before divergence, smoothed over a centred window (no lag).
        let stable = divergedAt ?? rates.count
        let window = Swift.max(2, options.steps / 40)
        let centred: [Double] = (0..<stable).map { i in
            let part = losses[Swift.max(0, i - window)..<Swift.min(stable, i + window + 1)].filter(\.isFinite)
            return part.isEmpty ? .nan : part.reduce(0, +) / Double(part.count)
        }
        let usable = (0..<stable).filter { centred[$0].isFinite }
        let minIndex = usable.min { centred[$0] < centred[$1] }
        var steepest: Double? = nil
        if usable.count >= 3, let minIndex {
            // central differences against log rate, up to the minimum (past it the curve turns up and
            // its slopes say nothing about a good rate)
            var best = 0.0
            for j in 1..<usable.count - 1 where usable[j] <= minIndex {
                let a = usable[j - 1], b = usable[j + 1]
                let slope = (centred[b] - centred[a]) / (Foundation.log(rates[b]) - Foundation.log(rates[a]))
                if slope < best { best = slope; steepest = rates[usable[j]] }
            }
        }
        return LearningRateFinderResult(rates: rates, losses: losses, smoothedLosses: smoothed, centredLosses: centred, divergedAt: divergedAt,
                                        steepestRate: steepest, minimumRateOverTen: minIndex.map { rates[$0] / 10 },
                                        minimumRate: minIndex.map { rates[$0] })
    }

    /// Writes `lr_find.csv` and `lr_find.png` into `directory` (created when missing); returns their paths.
    @discardableResult
    public static func write(_ result: LearningRateFinderResult, to directory: String, title: String) throws -> (csv: String, png: String) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let csv = directory + "/lr_find.csv", png = directory + "/lr_find.png"
        try FileIO.writeAtomically(Array(result.csv.utf8), to: csv)
        try result.plot(title: title).write(to: png)
        return (csv, png)
    }
}
