import Foundation
import CKernels

// Batch normalisation over axis 1 of (B, C) or (B, C, *spatial), seen as (B, C, S).
// Everything is per channel, so both passes run parallel over channels; each channel's sums are
// taken in Double in a fixed order (b, then the C kernel's fixed lanes), so the results are
// bit-identical whatever the thread scheduling.

/// Batch norm (`torch.nn.functional.batch_norm`) over axis 1 of x (B, C) or (B, C, *spatial).
/// - weight, bias: (C) or nil (no affine transform).
/// - runningMean, runningVar: (C) or both nil. In training they are updated in place (no graph):
///   running = (1 − momentum)·running + momentum·batchStat, with the unbiased batch variance, like torch.
/// - training: normalise with the batch's mean and biased variance; otherwise with the running
///   statistics (or the batch's when there are none, like torch with track_running_stats=False).
/// Differentiable in x, weight and bias (in training through the batch statistics).
/// - statisticsReducer: with batch statistics, sums per-channel buffers over the processes that
///   each hold a part of the batch (see `BatchNormStatisticsReducer`), so the statistics, the running
///   update and the backward's sums are those of the whole batch (SyncBatchNorm). nil: this batch only.
public func batchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVar: Tensor?,
                      training: Bool, momentum: Float = 0.1, eps: Float = 1e-5,
                      statisticsReducer: BatchNormStatisticsReducer? = nil) -> Tensor {
    convPrecondition(x.rank >= 2, "batchNorm: input must be (B, C) or (B, C, *spatial), got \(x.shape)")
    let B = x.shape[0], C = x.shape[1], S = x.shape[2...].reduce(1, *)
    for (name, t) in [("weight", weight), ("bias", bias), ("runningMean", runningMean), ("runningVar", runningVar)] {
        if let t { convPrecondition(t.shape == [C], "batchNorm: \(name) \(t.shape) does not match input \(x.shape) (needs [\(C)])") }
    }
    convPrecondition((runningMean == nil) == (runningVar == nil), "batchNorm: pass both runningMean and runningVar or neither")
    let useBatchStats = training || runningMean == nil
    if useBatchStats, let statisticsReducer {
        return synchronizedBatchNorm(x, weight: weight, bias: bias, runningMean: runningMean, runningVar: runningVar,
                                     training: training, momentum: momentum, eps: eps, reducer: statisticsReducer)
    }
    let N = B * S
    convPrecondition(!useBatchStats || N > 1, "batchNorm: batch statistics need more than 1 value per channel, input \(x.shape)")

    let y = Tensor(uninitializedShape: x.shape)
    // Per channel: the mean subtracted and 1/sqrt(var + eps), kept for the backward pass.
    let mean = Tensor(uninitializedShape: [C]), rstd = Tensor(uninitializedShape: [C])
    let px = SendablePointer(x.pointer), py = SendablePointer(y.mutablePointer)
    let pw = weight.map { SendablePointer($0.pointer) }, pb = bias.map { SendablePointer($0.pointer) }
    normalizeChannels(x, mean: mean, rstd: rstd, batchStatistics: useBatchStats, training: training, momentum: momentum, eps: eps,
                      runningMean: runningMean, runningVar: runningVar) { c, mu, r in
        // y = (x − mean)·(w·rstd) + b
        let scale = Float(r * Double(pw?.p[c] ?? 1)), shift = pb?.p[c] ?? 0
        for b in 0..<B {
            let o = (b * C + c) * S
            fk_bn_normalize(px.p + o, py.p + o, S, Float(mu), scale, shift)
        }
    }

    var inputs = [x]
    if let weight { inputs.append(weight) }
    if let bias { inputs.append(bias) }
    return Tensor.record(y, "batch_norm", inputs) { dy in
        let (dx, dw, db) = batchNormBackward(x, weight: weight, hasBias: bias != nil, mean: mean, rstd: rstd, dy: dy,
                                             batchStatistics: useBatchStats)
        return [dx] + (weight == nil ? [] : [dw]) + (bias == nil ? [] : [db])
    }
}

/// Channel `c`'s mean and 1/√(var + eps) over x (B, C, S): the batch's (biased variance, two passes,
/// sums in Double in a fixed order; in training the running statistics are updated in place with the
/// unbiased variance, as torch does), or the running ones.
@inline(__always)
private func channelStatistics(_ x: UnsafePointer<Float>, channel c: Int, batch B: Int, channels C: Int, spatial S: Int,
                               batchStatistics: Bool, training: Bool, momentum: Float, eps: Float,
                               runningMean: UnsafeMutablePointer<Float>?, runningVar: UnsafeMutablePointer<Float>?) -> (mean: Double, rstd: Double) {
    let N = B * S
    let mu: Double, variance: Double
    if batchStatistics {
        // row (b, c) of S values starts at x + (b·C + c)·S
        var sum = 0.0
        for b in 0..<B { sum += fk_sum(x + (b * C + c) * S, S) }
        mu = sum / Double(N)
        var squares = 0.0   // two passes: Σ(x − mean)² does not cancel like Σx² − N·mean²
        for b in 0..<B { squares += fk_sum_squared_deviation(x + (b * C + c) * S, S, mu) }
        variance = squares / Double(N)
        if training, let runningMean, let runningVar {
            let m = Double(momentum)
            runningMean[c] = Float((1 - m) * Double(runningMean[c]) + m * mu)
            runningVar[c] = Float((1 - m) * Double(runningVar[c]) + m * variance * Double(N) / Double(N - 1))
        }
    } else {
        mu = Double(runningMean![c])
        variance = Double(runningVar![c])
    }
    return (mu, 1 / (variance + Double(eps)).squareRoot())
}

/// Per channel c, in parallel over channels: its statistics (`channelStatistics`), saved as mean[c]
/// and rstd[c], then `normalize(c, mean, rstd)`, which writes that channel's output.
private func normalizeChannels(_ x: Tensor, mean: Tensor, rstd: Tensor, batchStatistics: Bool, training: Bool, momentum: Float,
                               eps: Float, runningMean: Tensor?, runningVar: Tensor?, _ normalize: (Int, Double, Double) -> Void) {
    let B = x.shape[0], C = x.shape[1], S = x.shape[2...].reduce(1, *)
    let px = SendablePointer(x.pointer)
    let pm = SendablePointer(mean.mutablePointer), pr = SendablePointer(rstd.mutablePointer)
    let prm = runningMean.map { SendablePointer($0.mutablePointer) }, prv = runningVar.map { SendablePointer($0.mutablePointer) }
    parallelFor(C, grain: Swift.max(1, 32_768 / Swift.max(B * S, 1))) { s, e in
        for c in s..<e {
            let (mu, r) = channelStatistics(px.p, channel: c, batch: B, channels: C, spatial: S, batchStatistics: batchStatistics,
                                            training: training, momentum: momentum, eps: eps,
                                            runningMean: prm?.p, runningVar: prv?.p)
            pm.p[c] = Float(mu)
            pr.p[c] = Float(r)
            normalize(c, mu, r)
        }
    }
}

// MARK: - a scale and shift per sample (conditional BatchNorm)

/// Batch norm with no affine transform of its own, followed by a scale and shift per sample and
/// channel, as conditional BatchNorm applies γ[label] and β[label]:
///     y[b, c, s] = x̂[b, c, s]·scale[b, c] + shift[b, c],   x̂ = (x − mean)·rstd per channel.
/// x (B, C) or (B, C, *spatial); scale, shift (B, C); statistics as `batchNorm` (no reducer).
/// The same values as `batchNorm(x, weight: nil, bias: nil, …) * scale[b, c] + shift[b, c]` with
/// broadcasting, but in one pass forward and one backward, with no (B, C, S) intermediate: the two
/// broadcasting ops and their backward cost 3 % of a conditional GAN 32 step (perf).
/// Differentiable in x, scale and shift.
public func batchNormWithSampleAffine(_ x: Tensor, scale: Tensor, shift: Tensor, runningMean: Tensor?, runningVar: Tensor?,
                                      training: Bool, momentum: Float = 0.1, eps: Float = 1e-5) -> Tensor {
    convPrecondition(x.rank >= 2, "batchNormWithSampleAffine: input must be (B, C) or (B, C, *spatial), got \(x.shape)")
    let B = x.shape[0], C = x.shape[1], S = x.shape[2...].reduce(1, *), N = B * S
    convPrecondition(scale.shape == [B, C] && shift.shape == [B, C],
                     "batchNormWithSampleAffine: scale \(scale.shape) and shift \(shift.shape) must both be [\(B), \(C)] for input \(x.shape)")
    for (name, t) in [("runningMean", runningMean), ("runningVar", runningVar)] {
        if let t { convPrecondition(t.shape == [C], "batchNormWithSampleAffine: \(name) \(t.shape) does not match input \(x.shape) (needs [\(C)])") }
    }
    convPrecondition((runningMean == nil) == (runningVar == nil), "batchNormWithSampleAffine: pass both runningMean and runningVar or neither")
    let useBatchStats = training || runningMean == nil
    convPrecondition(!useBatchStats || N > 1, "batchNormWithSampleAffine: batch statistics need more than 1 value per channel, input \(x.shape)")
    let y = Tensor(uninitializedShape: x.shape)
    let mean = Tensor(uninitializedShape: [C]), rstd = Tensor(uninitializedShape: [C])
    let px = SendablePointer(x.pointer), py = SendablePointer(y.mutablePointer)
    let ps = SendablePointer(scale.pointer), pt = SendablePointer(shift.pointer)
    normalizeChannels(x, mean: mean, rstd: rstd, batchStatistics: useBatchStats, training: training, momentum: momentum, eps: eps,
                      runningMean: runningMean, runningVar: runningVar) { c, mu, r in
        for b in 0..<B {
            let o = (b * C + c) * S
            fk_bn_normalize(px.p + o, py.p + o, S, Float(mu), Float(r * Double(ps.p[b * C + c])), pt.p[b * C + c])
        }
    }
    return Tensor.record(y, "batch_norm_sample_affine", [x, scale, shift]) { dy in
        // Per row (b, c): Σdy and Σdy·(x − mean). dshift = Σdy, dscale = rstd·Σdy·(x − mean); with
        // dx̂ = dy·scale, BatchNorm's backward gives dx = a·dy + b·(x − mean) + c per row, where
        // a = rstd·scale[b, c], b = −rstd³·Σ_b scale·Σdy·(x − mean) / N, c = −rstd·Σ_b scale·Σdy / N.
        let dx = x.requiresGrad ? Tensor(uninitializedShape: x.shape) : nil
        let dscale = Tensor(uninitializedShape: [B, C]), dshift = Tensor(uninitializedShape: [B, C])
        // pointers taken here from the tensors the closure holds, so mean and rstd outlive the forward
        let px = SendablePointer(x.pointer), ps = SendablePointer(scale.pointer)
        let pm = SendablePointer(mean.pointer), pr = SendablePointer(rstd.pointer)
        let pg = SendablePointer(dy.pointer), pdx = dx.map { SendablePointer($0.mutablePointer) }
        let pds = SendablePointer(dscale.mutablePointer), pdt = SendablePointer(dshift.mutablePointer)
        parallelFor(C, grain: Swift.max(1, 32_768 / Swift.max(N, 1))) { s, e in
            for c in s..<e {
                let mu = pm.p[c], r = Double(pr.p[c])
                var scaledSumDy = 0.0, scaledSumDyXc = 0.0
                for b in 0..<B {
                    let o = (b * C + c) * S
                    var sumDy = 0.0, sumDyXc = 0.0
                    fk_bn_backward_sums(px.p + o, pg.p + o, S, mu, &sumDy, &sumDyXc)
                    pdt.p[b * C + c] = Float(sumDy)
                    pds.p[b * C + c] = Float(sumDyXc * r)
                    scaledSumDy += Double(ps.p[b * C + c]) * sumDy
                    scaledSumDyXc += Double(ps.p[b * C + c]) * sumDyXc
                }
                guard let pdx else { continue }
                let bCoef = useBatchStats ? -r * r * r * scaledSumDyXc / Double(N) : 0
                let cCoef = useBatchStats ? -r * scaledSumDy / Double(N) : 0
                for b in 0..<B {
                    let o = (b * C + c) * S
                    fk_bn_backward_dx(px.p + o, pg.p + o, pdx.p + o, S, mu, Float(r * Double(ps.p[b * C + c])), Float(bCoef), Float(cCoef))
                }
            }
        }
        return [dx, scale.requiresGrad ? dscale : nil, shift.requiresGrad ? dshift : nil]
    }
}

/// The backward of `batchNorm`, from the forward's saved per-channel mean and rstd = 1/√(var + eps):
///   x (B, C, S), weight (C)?, mean (C), rstd (C), dy (B, C, S) → dx (B, C, S)? (nil when x needs no
///   gradient), dweight (C)?, dbias (C)?
/// With x̂ = (x − mean)·rstd and batch statistics, per channel:
///   dx = w·rstd·(dy − Σdy/N − x̂·Σ(dy·x̂)/N),   dweight = Σ dy·x̂,   dbias = Σ dy
/// written as dx = a·dy + b·(x − mean) + c. With running statistics (`batchStatistics` false) the
/// mean and rstd are constants and dx = w·rstd·dy. Sums per channel in Double, in a fixed order.
public func batchNormBackward(_ x: Tensor, weight: Tensor?, hasBias: Bool, mean: Tensor, rstd: Tensor, dy: Tensor,
                       batchStatistics useBatchStats: Bool) -> (dx: Tensor?, dweight: Tensor?, dbias: Tensor?) {
    let B = x.shape[0], C = x.shape[1], S = x.shape[2...].reduce(1, *), N = B * S
    let grain = Swift.max(1, 32_768 / Swift.max(N, 1))
    let dx = x.requiresGrad ? Tensor(uninitializedShape: x.shape) : nil
    let dw = weight.map { _ in Tensor(uninitializedShape: [C]) }, db = hasBias ? Tensor(uninitializedShape: [C]) : nil
    let px = SendablePointer(x.pointer), pm = SendablePointer(mean.pointer), pr = SendablePointer(rstd.pointer)
    let pw = weight.map { SendablePointer($0.pointer) }
    let pg = SendablePointer(dy.pointer), pdx = dx.map { SendablePointer($0.mutablePointer) }
    let pdw = dw.map { SendablePointer($0.mutablePointer) }, pdb = db.map { SendablePointer($0.mutablePointer) }
    parallelFor(C, grain: grain) { s, e in
        for c in s..<e {
            let mu = pm.p[c], r = Double(pr.p[c])
            var sumDy = 0.0, sumDyXc = 0.0
            for b in 0..<B {
                let o = (b * C + c) * S
                fk_bn_backward_sums(px.p + o, pg.p + o, S, mu, &sumDy, &sumDyXc)
            }
            pdw?.p[c] = Float(sumDyXc * r)
            pdb?.p[c] = Float(sumDy)
            guard let pdx else { continue }
            let w = Double(pw?.p[c] ?? 1)
            let a = w * r
            let bCoef = useBatchStats ? -w * r * r * r * sumDyXc / Double(N) : 0
            let cCoef = useBatchStats ? -w * r * sumDy / Double(N) : 0
            for b in 0..<B {
                let o = (b * C + c) * S
                fk_bn_backward_dx(px.p + o, pg.p + o, pdx.p + o, S, mu, Float(a), Float(bCoef), Float(cCoef))
            }
        }
    }
    return (dx, dw, db)
}

// MARK: - statistics over several processes (SyncBatchNorm)

/// Sums `count` floats at the pointer, in place, over every process that holds a part of the batch
/// (an MPI_Allreduce in data-parallel training). Every part calls it at the same points with the same
/// count: twice per forward in training (the per-channel sums and counts, then the squared
/// deviations from the whole batch's mean) and once per backward that needs the input's gradient
/// (the sums of dy and dy·(x − mean)). It cannot fail: a reducer whose communication fails must end
/// the process, since the parts would otherwise wait for each other forever.
public typealias BatchNormStatisticsReducer = (UnsafeMutablePointer<Float>, Int) -> Void

/// `batchNorm` with batch statistics summed over the parts of a batch by `reducer` (PyTorch's
/// SyncBatchNorm): per channel the mean and the biased variance of the whole batch (two passes, as
/// the local form), the running statistics updated with the whole batch's unbiased variance, and a
/// backward whose dx uses the whole batch's Σdy and Σdy·(x − mean). The weight and bias gradients
/// stay this part's sums (data-parallel training averages them over the parts like any gradient).
/// Each part's sums are taken in Double and sent as Float, so the result matches one process holding
/// the whole batch up to Float rounding of those sums.
private func synchronizedBatchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, runningMean: Tensor?, runningVar: Tensor?,
                                   training: Bool, momentum: Float, eps: Float, reducer: @escaping BatchNormStatisticsReducer) -> Tensor {
    let B = x.shape[0], C = x.shape[1], S = x.shape[2...].reduce(1, *)
    let grain = Swift.max(1, 32_768 / Swift.max(B * S, 1))
    let px = SendablePointer(x.pointer)
    // Σx per channel, then this part's count of values per channel
    var sums = [Float](repeating: 0, count: C + 1)
    sums.withUnsafeMutableBufferPointer { buffer in
        let out = SendablePointer(buffer.baseAddress!)
        parallelFor(C, grain: grain) { s, e in
            for c in s..<e {
                var sum = 0.0
                for b in 0..<B { sum += fk_sum(px.p + (b * C + c) * S, S) }
                out.p[c] = Float(sum)
            }
        }
        buffer[C] = Float(B * S)
        reducer(buffer.baseAddress!, C + 1)
    }
    let N = Double(sums[C])
    convPrecondition(N > 1, "batchNorm: batch statistics need more than 1 value per channel over all parts, got \(N)")
    let means = (0..<C).map { Double(sums[$0]) / N }
    var squares = [Float](repeating: 0, count: C)  // Σ(x − mean)² about the whole batch's mean
    squares.withUnsafeMutableBufferPointer { buffer in
        let out = SendablePointer(buffer.baseAddress!)
        means.withUnsafeBufferPointer { m in
            let pm = SendablePointer(m.baseAddress!)
            parallelFor(C, grain: grain) { s, e in
                for c in s..<e {
                    var q = 0.0
                    for b in 0..<B { q += fk_sum_squared_deviation(px.p + (b * C + c) * S, S, pm.p[c]) }
                    out.p[c] = Float(q)
                }
            }
        }
        reducer(buffer.baseAddress!, C)
    }
    let y = Tensor(uninitializedShape: x.shape)
    let mean = Tensor(uninitializedShape: [C]), rstd = Tensor(uninitializedShape: [C])
    let py = SendablePointer(y.mutablePointer), pm = SendablePointer(mean.mutablePointer), pr = SendablePointer(rstd.mutablePointer)
    let pw = weight.map { SendablePointer($0.pointer) }, pb = bias.map { SendablePointer($0.pointer) }
    let prm = runningMean.map { SendablePointer($0.mutablePointer) }, prv = runningVar.map { SendablePointer($0.mutablePointer) }
    var rstds = [Double](repeating: 0, count: C)
    for c in 0..<C {
        let mu = means[c], variance = Double(squares[c]) / N
        if training, let prm, let prv {
            let m = Double(momentum)
            prm.p[c] = Float((1 - m) * Double(prm.p[c]) + m * mu)
            prv.p[c] = Float((1 - m) * Double(prv.p[c]) + m * variance * N / (N - 1))
        }
        pm.p[c] = Float(mu)
        rstds[c] = 1 / (variance + Double(eps)).squareRoot()
        pr.p[c] = Float(rstds[c])
    }
    rstds.withUnsafeMutableBufferPointer { buffer in
        let prd = SendablePointer(buffer.baseAddress!)
        parallelFor(C, grain: grain) { s, e in
            for c in s..<e {
                let scale = Float(prd.p[c] * Double(pw?.p[c] ?? 1)), shift = pb?.p[c] ?? 0
                for b in 0..<B {
                    let o = (b * C + c) * S
                    fk_bn_normalize(px.p + o, py.p + o, S, pm.p[c], scale, shift)
                }
            }
        }
    }
    var inputs = [x]
    if let weight { inputs.append(weight) }
    if let bias { inputs.append(bias) }
    return Tensor.record(y, "batch_norm", inputs) { dy in
        let (dx, dw, db) = synchronizedBatchNormBackward(x, weight: weight, hasBias: bias != nil, mean: mean, rstd: rstd, dy: dy,
                                                         count: N, reducer: reducer)
        return [dx] + (weight == nil ? [] : [dw]) + (bias == nil ? [] : [db])
    }
}

/// The backward of `synchronizedBatchNorm`: `batchNormBackward` with batch statistics, except that dx
/// uses Σdy and Σdy·(x − mean) summed over all parts by `reducer` and their value count `count`.
private func synchronizedBatchNormBackward(_ x: Tensor, weight: Tensor?, hasBias: Bool, mean: Tensor, rstd: Tensor, dy: Tensor,
                                           count N: Double, reducer: BatchNormStatisticsReducer) -> (dx: Tensor?, dweight: Tensor?, dbias: Tensor?) {
    let B = x.shape[0], C = x.shape[1], S = x.shape[2...].reduce(1, *)
    let grain = Swift.max(1, 32_768 / Swift.max(B * S, 1))
    let dw = weight.map { _ in Tensor(uninitializedShape: [C]) }, db = hasBias ? Tensor(uninitializedShape: [C]) : nil
    let px = SendablePointer(x.pointer), pm = SendablePointer(mean.pointer), pr = SendablePointer(rstd.pointer)
    let pg = SendablePointer(dy.pointer)
    // this part's Σdy (first C) and Σdy·(x − mean) (next C)
    var sums = [Float](repeating: 0, count: 2 * C)
    sums.withUnsafeMutableBufferPointer { buffer in
        let out = SendablePointer(buffer.baseAddress!)
        let pdw = dw.map { SendablePointer($0.mutablePointer) }, pdb = db.map { SendablePointer($0.mutablePointer) }
        parallelFor(C, grain: grain) { s, e in
            for c in s..<e {
                var sumDy = 0.0, sumDyXc = 0.0
                for b in 0..<B {
                    let o = (b * C + c) * S
                    fk_bn_backward_sums(px.p + o, pg.p + o, S, pm.p[c], &sumDy, &sumDyXc)
                }
                pdw?.p[c] = Float(sumDyXc * Double(pr.p[c]))
                pdb?.p[c] = Float(sumDy)
                out.p[c] = Float(sumDy)
                out.p[C + c] = Float(sumDyXc)
            }
        }
    }
    guard x.requiresGrad else { return (nil, dw, db) }
    sums.withUnsafeMutableBufferPointer { reducer($0.baseAddress!, 2 * C) }
    let dx = Tensor(uninitializedShape: x.shape)
    let pdx = SendablePointer(dx.mutablePointer), pw = weight.map { SendablePointer($0.pointer) }
    sums.withUnsafeBufferPointer { buffer in
        let total = SendablePointer(buffer.baseAddress!)
        parallelFor(C, grain: grain) { s, e in
            for c in s..<e {
                let r = Double(pr.p[c]), w = Double(pw?.p[c] ?? 1)
                let bCoef = -w * r * r * r * Double(total.p[C + c]) / N
                let cCoef = -w * r * Double(total.p[c]) / N
                for b in 0..<B {
                    let o = (b * C + c) * S
                    fk_bn_backward_dx(px.p + o, pg.p + o, pdx.p + o, S, pm.p[c], Float(w * r), Float(bCoef), Float(cCoef))
                }
            }
        }
    }
    return (dx, dw, db)
}
