import Foundation

/// The one timing helper of the benchmarks (`forge bench …`): timed rounds of training or sampling
/// steps and their median, as bench/torch_ref.py times the PyTorch side. Figures are wall-clock
/// seconds on a shared machine, so callers report the median and the spread, never one run.
public enum StepTiming {
    /// One timed round: seconds per step (the round's figure) and, when each step was timed alone, every step's seconds.
    public struct Round: Sendable {
        /// The round's figure in seconds: the median step (each step timed alone) or the round's time / steps.
        public var secondsPerStep: Double
        /// Every step's seconds when each was timed alone; empty when the round was timed as a whole.
        public var stepSeconds: [Double]
    }

    /// `warmup` untimed calls, then `rounds` rounds of `steps` calls of `body`. With `eachStepAlone`
    /// every call is timed by itself and a round's figure is the median of its steps (what
    /// bench/torch_ref.py does for every workload); otherwise a round is timed as a whole and divided by
    /// `steps`. `onRound` sees each round as it ends (for progress lines).
    public static func rounds(warmup: Int, steps: Int, rounds: Int, eachStepAlone: Bool = false,
                              onRound: (Int, Round) -> Void = { _, _ in }, _ body: () -> Void) -> [Round] {
        precondition(steps >= 1 && rounds >= 1, "StepTiming: steps and rounds must be at least 1")
        for _ in 0..<warmup { body() }
        var result: [Round] = []
        for r in 0..<rounds {
            let round: Round
            if eachStepAlone {
                let times = (0..<steps).map { _ in seconds(body) }
                round = Round(secondsPerStep: median(times), stepSeconds: times)
            } else {
                let total = seconds { for _ in 0..<steps { body() } }
                round = Round(secondsPerStep: total / Double(steps), stepSeconds: [])
            }
            onRound(r, round)
            result.append(round)
        }
        return result
    }

    /// Seconds per call of `body`, the median over `reps` repetitions that each repeat `body` until
    /// `minMs` milliseconds have passed (for calls too short to time alone); one untimed call first.
    public static func secondsPerCall(reps: Int, minMs: Double, _ body: () -> Void) -> Double {
        body()  // warm-up (thread pool, BLAS buffers)
        var perCall: [Double] = []
        for _ in 0..<max(reps, 1) {
            var calls = 0
            let t0 = DispatchTime.now().uptimeNanoseconds
            var elapsed = 0.0
            repeat {
                body()
                calls += 1
                elapsed = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
            } while elapsed * 1000 < minMs
            perCall.append(elapsed / Double(calls))
        }
        return median(perCall)
    }

    /// Wall-clock seconds of one call of `body`.
    public static func seconds(_ body: () -> Void) -> Double {
        let t0 = DispatchTime.now().uptimeNanoseconds
        body()
        return Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
    }

    /// The middle value (the upper one of an even count, as the benchmarks always did).
    public static func median(_ xs: [Double]) -> Double {
        precondition(!xs.isEmpty, "StepTiming.median: no values")
        let s = xs.sorted()
        return s[s.count / 2]
    }

    /// The process's peak resident set so far, in MiB (getrusage's ru_maxrss).
    public static var peakResidentMiB: Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_maxrss) / 1024
    }
}
