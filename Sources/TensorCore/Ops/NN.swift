import Foundation
import CKernels

// MARK: - softmax

extension Tensor {
    /// Softmax along `axis` (rows of the last axis run in the C kernel; other axes are moved last).
    public func softmax(axis: Int = -1) -> Tensor {
        let a = normalizeAxis(axis, rank, op: "softmax")
        if a != rank - 1 { return transposed(a, -1).softmax(axis: -1).transposed(a, -1) }
        let cols = shape[rank - 1], rows = count / Swift.max(cols, 1)
        let out = Tensor(uninitializedShape: shape)
        let px = SendablePointer(pointer), po = SendablePointer(out.mutablePointer)
        parallelFor(rows, grain: Swift.max(1, 16_384 / Swift.max(cols, 1))) { s, e in
            fk_softmax_rows(px.p + s * cols, po.p + s * cols, e - s, cols, 1, 0, 0)
        }
        let ys = out.storage
        return Tensor.record(out, "softmax", [self]) { g in
            let dx = Tensor(uninitializedShape: g.shape)
            let py = SendablePointer(ys.pointer), pg = SendablePointer(g.pointer), pd = SendablePointer(dx.mutablePointer)
            parallelFor(rows, grain: Swift.max(1, 16_384 / Swift.max(cols, 1))) { s, e in
                fk_softmax_rows_backward(py.p + s * cols, pg.p + s * cols, pd.p + s * cols, e - s, cols, 1)
            }
            return [dx]
        }
    }

    /// log(softmax(x)) along `axis`, computed stably.
    public func logSoftmax(axis: Int = -1) -> Tensor {
        let a = normalizeAxis(axis, rank, op: "logSoftmax")
        if a != rank - 1 { return transposed(a, -1).logSoftmax(axis: -1).transposed(a, -1) }
        let cols = shape[rank - 1], rows = count / Swift.max(cols, 1)
        let out = Tensor(uninitializedShape: shape)
        let px = SendablePointer(pointer), po = SendablePointer(out.mutablePointer)
        parallelFor(rows, grain: Swift.max(1, 16_384 / Swift.max(cols, 1))) { s, e in
            fk_log_softmax_rows(px.p + s * cols, po.p + s * cols, e - s, cols)
        }
        let ys = out.storage
        return Tensor.record(out, "log_softmax", [self]) { g in
            let dx = Tensor(uninitializedShape: g.shape)
            let py = SendablePointer(ys.pointer), pg = SendablePointer(g.pointer), pd = SendablePointer(dx.mutablePointer)
            parallelFor(rows, grain: Swift.max(1, 16_384 / Swift.max(cols, 1))) { s, e in
                fk_log_softmax_rows_backward(py.p + s * cols, pg.p + s * cols, pd.p + s * cols, e - s, cols)
            }
            return [dx]
        }
    }
}

// MARK: - cross-entropy

/// Mean cross-entropy of `logits` (N, C) against class indices `targets` (N), like
/// `F.cross_entropy(logits, targets, ignore_index=…)`: rows whose target is `ignoreIndex` count for nothing.
/// One fused op: the forward keeps softmax(logits), the backward is (softmax − onehot) / n.
public func crossEntropy(_ logits: Tensor, targets: [Int32], ignoreIndex: Int32 = -100) -> Tensor {
    forgePrecondition(logits.rank == 2, "crossEntropy: logits must be (N, C), got \(logits.shape)")
    let rows = logits.shape[0], cols = logits.shape[1]
    forgePrecondition(targets.count == rows, "crossEntropy: \(targets.count) targets for logits \(logits.shape)")
    for t in targets where t != ignoreIndex {
        forgePrecondition(t >= 0 && Int(t) < cols, "crossEntropy: target \(t) out of range for \(cols) classes")
    }
    let valid = targets.reduce(0) { $0 + ($1 == ignoreIndex ? 0 : 1) }
    let needGrad = Tensor.needsGrad(logits)
    let probs: Tensor? = needGrad ? Tensor(uninitializedShape: logits.shape) : nil
    var losses = [Float](repeating: 0, count: rows)
    let px = SendablePointer(logits.pointer), pp = probs.map { SendablePointer($0.mutablePointer) }
    targets.withUnsafeBufferPointer { tb in
        losses.withUnsafeMutableBufferPointer { lb in
            let pt = SendablePointer(tb.baseAddress!), pl = SendablePointer(lb.baseAddress!)
            parallelFor(rows, grain: Swift.max(1, 16_384 / Swift.max(cols, 1))) { s, e in
                fk_cross_entropy_rows(px.p + s * cols, pt.p + s, pl.p + s, pp.map { $0.p + s * cols }, e - s, cols, ignoreIndex)
            }
        }
    }
    var total = 0.0
    for l in losses { total += Double(l) }  // fixed order: deterministic
    let out = Tensor(valid > 0 ? Float(total / Double(valid)) : .nan)
    return Tensor.record(out, "cross_entropy", [logits]) { g in
        [crossEntropyBackward(probs: probs!, targets: targets, ignoreIndex: ignoreIndex, validRows: valid, dLoss: g.item)]
    }
}

/// Mean cross-entropy of `logits` (N, C) against class labels (N) as datasets give them (`Int`, as
/// `ImageSet.labels` and batches hold them), so labels keep one integer type from dataset to loss.
public func crossEntropy(_ logits: Tensor, labels: [Int]) -> Tensor {
    for y in labels { forgePrecondition(y >= 0 && y < logits.shape.last ?? 0, "crossEntropy: label \(y) out of range for logits \(logits.shape)") }
    return crossEntropy(logits, targets: labels.map { Int32(truncatingIfNeeded: $0) })
}

/// The backward of `crossEntropy`, in place on the forward's saved softmax:
///   probs (N, C) = softmax(logits), targets (N) → dlogits (N, C) = (probs − onehot(targets)) · dLoss / validRows,
/// with the rows of ignored targets zero.
public func crossEntropyBackward(probs dx: Tensor, targets: [Int32], ignoreIndex: Int32, validRows valid: Int, dLoss: Float) -> Tensor {
    let rows = dx.shape[0], cols = dx.shape[1]
    let scale = dLoss / Float(Swift.max(valid, 1))
    let pd = SendablePointer(dx.mutablePointer)
    targets.withUnsafeBufferPointer { tb in
        let pt = SendablePointer(tb.baseAddress!)
        parallelFor(rows, grain: Swift.max(1, 16_384 / Swift.max(cols, 1))) { s, e in
            for r in s..<e {
                let row = pd.p + r * cols
                let t = pt.p[r]
                if t == ignoreIndex {
                    row.update(repeating: 0, count: cols)
                } else {
                    row[Int(t)] -= 1
                    for c in 0..<cols { row[c] *= scale }
                }
            }
        }
    }
    return dx
}

// MARK: - layer norm

/// Layer norm over the last axis (`F.layer_norm(x, (C,), weight, bias, eps)`).
public func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float = 1e-5) -> Tensor {
    let (out, mean, rstd) = layerNormRows(x, weight: weight, bias: bias, eps: eps)
    var inputs = [x]
    if let w = weight { inputs.append(w) }
    if let b = bias { inputs.append(b) }
    return Tensor.record(out, "layer_norm", inputs) { g in
        let (dx, dw, db) = layerNormBackward(x, weight: weight, hasBias: bias != nil, mean: mean, rstd: rstd, dy: g)
        return [dx] + (weight == nil ? [] : [dw]) + (bias == nil ? [] : [db])
    }
}

/// The backward of `layerNorm` over the last axis, from the forward's saved row statistics:
///   x (R, C), weight (C)?, mean (R), rstd (R), dy (R, C) → dx (R, C), dweight (C)?, dbias (C)?
/// (fk_layernorm_backward per chunk of rows; each chunk's dweight/dbias partial sums are added in
/// chunk order, so the result does not depend on scheduling).
public func layerNormBackward(_ x: Tensor, weight: Tensor?, hasBias: Bool, mean: Tensor, rstd: Tensor, dy g: Tensor)
    -> (dx: Tensor, dweight: Tensor?, dbias: Tensor?) {
    let cols = x.shape.last ?? 1, rows = x.count / Swift.max(cols, 1)
    let grain = Swift.max(1, 16_384 / Swift.max(cols, 1))
    let px = SendablePointer(x.pointer), pw = weight.map { SendablePointer($0.pointer) }
    let pm = SendablePointer(mean.pointer), pr = SendablePointer(rstd.pointer)
    let dx = Tensor(uninitializedShape: x.shape)
    let pg = SendablePointer(g.pointer), pd = SendablePointer(dx.mutablePointer)
    let partials: [([Float], [Float])] = parallelChunks(rows, grain: grain) { s, e in
        var dw = [Float](repeating: 0, count: weight == nil ? 0 : cols)
        var db = [Float](repeating: 0, count: hasBias ? cols : 0)
        dw.withUnsafeMutableBufferPointer { dwb in
            db.withUnsafeMutableBufferPointer { dbb in
                fk_layernorm_backward(px.p + s * cols, pw?.p, pm.p + s, pr.p + s, pg.p + s * cols, pd.p + s * cols,
                                      weight == nil ? nil : dwb.baseAddress, hasBias ? dbb.baseAddress : nil, e - s, cols)
            }
        }
        return (dw, db)
    }
    func summed(_ part: (([Float], [Float])) -> [Float]) -> Tensor {
        Tensor(shape: [cols]) { b in
            b.update(repeating: 0)
            for p in partials { let v = part(p); for c in 0..<cols { b[c] += v[c] } }
        }
    }
    return (dx, weight == nil ? nil : summed { $0.0 }, hasBias ? summed { $0.1 } : nil)
}

// MARK: - embedding

/// Rows of `weight` (num, dim) picked by `indices`; the result has shape `shape + [dim]`.
public func embedding(_ weight: Tensor, _ indices: [Int32], shape: [Int]) -> Tensor {
    forgePrecondition(weight.rank == 2, "embedding: weight must be (num, dim), got \(weight.shape)")
    forgePrecondition(Tensor.elementCount(shape) == indices.count, "embedding: \(indices.count) indices do not fill shape \(shape)")
    let num = weight.shape[0], dim = weight.shape[1]
    for i in indices { forgePrecondition(i >= 0 && Int(i) < num, "embedding: index \(i) out of range for \(num) rows") }
    let out = Tensor(uninitializedShape: shape + [dim])
    let pw = SendablePointer(weight.pointer), po = SendablePointer(out.mutablePointer)
    indices.withUnsafeBufferPointer { ib in
        let pi = SendablePointer(ib.baseAddress!)
        parallelFor(indices.count, grain: Swift.max(1, 16_384 / Swift.max(dim, 1))) { s, e in
            for k in s..<e { (po.p + k * dim).update(from: pw.p + Int(pi.p[k]) * dim, count: dim) }
        }
    }
    return Tensor.record(out, "embedding", [weight]) { g in [embeddingBackward(rows: num, indices, dOut: g)] }
}

/// The backward of `embedding`: indices (N), dOut (N·…, dim) → dweight (rows, dim), each output row's
/// gradient added to the weight row it was read from, in index order (so repeated indices sum the
/// same way every time).
public func embeddingBackward(rows num: Int, _ indices: [Int32], dOut g: Tensor) -> Tensor {
    let dim = g.shape.last ?? 0
    let dw = Tensor.zeros([num, dim])
    for (k, i) in indices.enumerated() {
        let d = dw.mutablePointer + Int(i) * dim, s = g.pointer + k * dim
        for j in 0..<dim { d[j] += s[j] }
    }
    return dw
}

// MARK: - dropout

/// Zeroes each element with probability `p` and scales the rest by 1/(1-p) when training; identity otherwise.
/// p = 1 drops everything, as in PyTorch: x · 0 (zeros, gradient zero) with no draw, since the mask
/// kernel's 1/(1-p) would be infinite. Traps unless 0 ≤ p ≤ 1.
public func dropout(_ x: Tensor, p: Float, training: Bool, generator: inout RandomGenerator) -> Tensor {
    forgePrecondition(p >= 0 && p <= 1, "dropout: p must be in [0, 1], got \(p)")
    if !training || p == 0 { return x }
    if p == 1 { return x * 0 }
    return seededDropout(x, p: p, seed: generator.next())
}

/// Dropout drawing from the default generator (only the seed is drawn under its lock).
public func dropout(_ x: Tensor, p: Float, training: Bool) -> Tensor {
    forgePrecondition(p >= 0 && p <= 1, "dropout: p must be in [0, 1], got \(p)")
    if !training || p == 0 { return x }
    if p == 1 { return x * 0 }
    return seededDropout(x, p: p, seed: DefaultRNG.with { $0.next() })
}

/// One draw seeds a counter-based mask (fk_dropout_hashed): element i's fate depends only on
/// (seed, i), so threads hash their own ranges and backward remakes the mask instead of storing it.
private func seededDropout(_ x: Tensor, p: Float, seed: UInt64) -> Tensor {
    Tensor.record(hashedDropout(x, p: p, seed: seed), "dropout", [x]) { g in [hashedDropout(g, p: p, seed: seed)] }
}

/// x ⊙ mask(seed) / (1 - p), elementwise over x's storage order.
private func hashedDropout(_ x: Tensor, p: Float, seed: UInt64) -> Tensor {
    let out = Tensor(uninitializedShape: x.shape)
    let px = SendablePointer(x.pointer), po = SendablePointer(out.mutablePointer)
    parallelFor(x.count) { s, e in fk_dropout_hashed(px.p + s, po.p + s, e - s, seed, UInt64(s), p) }
    return out
}

// MARK: - attention

/// softmax(q·kᵀ/√D [+ causal mask])·v for q, k, v of shape (B, H, T, D), like
/// `F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=causal)`: with `dropout` > 0
/// the attention probabilities are dropped (and the kept ones scaled by 1/(1-p)) with a mask drawn from
/// the default generator.
public func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, causal: Bool, dropout p: Float = 0) -> Tensor {
    sdpa(q, k, v, causal: causal, dropout: p, seed: p == 0 ? 0 : DefaultRNG.with { attentionDropoutSeed(p, &$0) })
}

/// `scaledDotProductAttention` with the dropout mask drawn from `generator` (one draw per call).
public func scaledDotProductAttention(_ q: Tensor, _ k: Tensor, _ v: Tensor, causal: Bool, dropout p: Float,
                                      generator: inout RandomGenerator) -> Tensor {
    sdpa(q, k, v, causal: causal, dropout: p, seed: attentionDropoutSeed(p, &generator))
}

private func sdpa(_ q: Tensor, _ k: Tensor, _ v: Tensor, causal: Bool, dropout p: Float, seed: UInt64) -> Tensor {
    forgePrecondition(q.rank == 4 && q.shape == k.shape && q.shape == v.shape,
                 "scaledDotProductAttention: q, k, v must share one (B, H, T, D) shape, got \(q.shape), \(k.shape), \(v.shape)")
    let (B, H, T, D) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
    let heads = B * H
    let layout = AttentionLayout(heads: heads, T: T, D: D, headStride: T * D, rowStride: D, headsPerBatch: H)
    return attention(q, k, v, layout: layout, causal: causal, dropout: p, dropoutSeed: seed,
                     outShape: q.shape, outRowStride: D, outHeadStride: T * D)
}

/// Causal self-attention straight from a fused projection `qkv` of shape (B, T, 3C) (as nanoGPT's
/// `c_attn` makes it) to (B, T, C), reading q, k, v per head with strides instead of copying
/// through split/view/transpose. `dropout` drops attention probabilities as nanoGPT's `attn_dropout`
/// (mask from the default generator).
public func causalSelfAttention(qkv: Tensor, heads H: Int, dropout p: Float = 0) -> Tensor {
    fusedCausalAttention(qkv: qkv, heads: H, dropout: p, seed: p == 0 ? 0 : DefaultRNG.with { attentionDropoutSeed(p, &$0) })
}

/// `causalSelfAttention` with the dropout mask drawn from `generator` (one draw per call).
public func causalSelfAttention(qkv: Tensor, heads H: Int, dropout p: Float, generator: inout RandomGenerator) -> Tensor {
    fusedCausalAttention(qkv: qkv, heads: H, dropout: p, seed: attentionDropoutSeed(p, &generator))
}

private func fusedCausalAttention(qkv: Tensor, heads H: Int, dropout p: Float, seed: UInt64) -> Tensor {
    forgePrecondition(qkv.rank == 3 && qkv.shape[2] % (3 * H) == 0,
                 "causalSelfAttention: qkv must be (B, T, 3C) with C divisible by \(H) heads, got \(qkv.shape)")
    let (B, T, C3) = (qkv.shape[0], qkv.shape[1], qkv.shape[2])
    let C = C3 / 3, D = C / H
    // head (b, h) of q starts at b*T*3C + h*D; of k at +C; of v at +2C; rows are 3C apart
    let layout = AttentionLayout(heads: B * H, T: T, D: D, headStride: 0, rowStride: C3, headsPerBatch: H,
                                 batchStride: T * C3, headOffset: D, kOffset: C, vOffset: 2 * C)
    return attention(qkv, qkv, qkv, layout: layout, causal: true, dropout: p, dropoutSeed: seed,
                     outShape: [B, T, C], outRowStride: C, outHeadStride: 0, outBatchStride: T * C, outHeadOffset: D)
}

/// The one number an attention call takes from the generator: the seed of its counter-based dropout
/// mask (nothing is drawn when p = 0, so dropout-free models leave the generator untouched).
private func attentionDropoutSeed(_ p: Float, _ generator: inout RandomGenerator) -> UInt64 {
    forgePrecondition(p >= 0 && p < 1, "attention dropout: p must be in [0, 1), got \(p)")
    return p == 0 ? 0 : generator.next()
}

/// Where each head's rows live in memory.
struct AttentionLayout {
    var heads: Int, T: Int, D: Int
    var headStride: Int      // used when batchStride == 0: head i starts at i*headStride
    var rowStride: Int
    var headsPerBatch: Int
    var batchStride: Int = 0
    var headOffset: Int = 0
    var kOffset: Int = 0
    var vOffset: Int = 0

    @inline(__always) func base(_ i: Int) -> Int {
        batchStride == 0 ? i * headStride : (i / headsPerBatch) * batchStride + (i % headsPerBatch) * headOffset
    }
}

/// Keys per K/V tile (and queries per block) of the flash-style kernels: a 64 × 64 tile of scores
/// stays in L1 and its products are sgemm calls big enough to run near sgemm speed.
let attentionTile = 64

/// Attention over L.heads heads as a named forward/backward pair (CKernels' fk_attention_forward /
/// fk_attention_backward, one head per call, heads in parallel). Nothing of size T × T outlives a
/// call: forward keeps each row's log-sum-exp (heads × T floats) and backward recomputes the
/// probabilities tile by tile from it and the output. Dropout's mask is a function of (seed, head,
/// row, column), remade where it is needed, never stored.
private func attention(_ q: Tensor, _ k: Tensor, _ v: Tensor, layout L: AttentionLayout, causal: Bool,
                       dropout p: Float, dropoutSeed seed: UInt64, outShape: [Int],
                       outRowStride: Int, outHeadStride: Int, outBatchStride: Int = 0, outHeadOffset: Int = 0) -> Tensor {
    let outLayout = AttentionOutputLayout(rowStride: outRowStride, headStride: outHeadStride, batchStride: outBatchStride,
                                          headOffset: outHeadOffset, headsPerBatch: L.headsPerBatch)
    let out = Tensor(uninitializedShape: outShape)
    let lse = Tensor(uninitializedShape: [L.heads, L.T])  // (B·H, T): the statistics backward needs
    attentionForward(q, k, v, layout: L, causal: causal, dropout: p, seed: seed, out: out, outLayout: outLayout, lse: lse)
    let savedOut = Tensor(shape: out.shape, storage: out.storage)  // not `out` itself: that would be a cycle
    if q === k {
        // Fused q, k, v: the closure's only reference to qkv, so backward can tell whether anything else
        // still reads it; when nothing does, the gradient is written over it head by head.
        var saved: Tensor? = q
        return Tensor.record(out, "attention", [q]) { dout in
            let reuse = isKnownUniquelyReferenced(&saved) && saved!.hasUniqueStorage()
            let qkv = saved!
            return attentionBackward(qkv, qkv, qkv, layout: L, causal: causal, dropout: p, seed: seed,
                                     out: savedOut, dout: dout, outLayout: outLayout, lse: lse, overwritingInput: reuse)
        }
    }
    return Tensor.record(out, "attention", [q, k, v]) { dout in
        attentionBackward(q, k, v, layout: L, causal: causal, dropout: p, seed: seed,
                          out: savedOut, dout: dout, outLayout: outLayout, lse: lse)
    }
}

/// Where each head's rows of the output (and of its gradient) live.
struct AttentionOutputLayout {
    var rowStride: Int, headStride: Int, batchStride: Int, headOffset: Int, headsPerBatch: Int

    @inline(__always) func base(_ i: Int) -> Int {
        batchStride == 0 ? i * headStride : (i / headsPerBatch) * batchStride + (i % headsPerBatch) * headOffset
    }
}

/// out = softmax(q·kᵀ/√D [causal]) ⊙ mask · v per head; lse[i, t] = log Σ exp(row t's scores of head i).
/// Fused (causalSelfAttention): q, k, v are column slices of qkv (B, T, 3C), out is (B, T, C), lse (B·H, T).
/// Split (scaledDotProductAttention): q, k, v, out are (B, H, T, D), lse (B·H, T).
/// Per head, q, k, v are (T, D) with rows L.rowStride apart and out (T, D) with rows outLayout.rowStride apart.
func attentionForward(_ q: Tensor, _ k: Tensor, _ v: Tensor, layout L: AttentionLayout, causal: Bool,
                      dropout p: Float, seed: UInt64, out: Tensor, outLayout O: AttentionOutputLayout, lse: Tensor) {
    let (T, D) = (L.T, L.D)
    let pq = SendablePointer(q.pointer), pk = SendablePointer(k.pointer), pv = SendablePointer(v.pointer)
    let po = SendablePointer(out.mutablePointer), pl = SendablePointer(lse.mutablePointer)
    parallelFor(L.heads, grain: 1) { s, e in
        for i in s..<e {
            let b = L.base(i)
            let ok = fk_attention_forward(pq.p + b, pk.p + b + L.kOffset, pv.p + b + L.vOffset, L.rowStride,
                                          po.p + O.base(i), O.rowStride, pl.p + i * T, T, D, causal ? 1 : 0,
                                          p, seed, UInt64(i * T * T), attentionTile)
            forgePrecondition(ok != 0, "attention: could not allocate the scratch tiles")
        }
    }
}

/// The gradients of `attentionForward` for dout (shaped as out: (B, T, C) or (B, H, T, D)): [dq, dk, dv],
/// or [dqkv] (B, T, 3C) when q, k, v are column slices of one fused tensor. Reads lse (B·H, T) and out.
/// `overwritingInput` (fused only): dqkv is written over qkv, each head's slices once that head is done
/// (a head reads only its own columns), through a per-thread scratch of 3·T·D floats.
func attentionBackward(_ q: Tensor, _ k: Tensor, _ v: Tensor, layout L: AttentionLayout, causal: Bool,
                       dropout p: Float, seed: UInt64, out: Tensor, dout: Tensor, outLayout O: AttentionOutputLayout,
                       lse: Tensor, overwritingInput: Bool = false) -> [Tensor?] {
    let (T, D) = (L.T, L.D)
    let fused = q === k
    if fused && overwritingInput {
        let pq = SendablePointer(q.storage.pointer), po = SendablePointer(out.pointer)
        let pg = SendablePointer(dout.pointer), pl = SendablePointer(lse.pointer)
        parallelFor(L.heads, grain: 1) { s, e in
            let scratch = Tensor(uninitializedShape: [3, T, D])  // this head's dq, dk, dv, rows D apart
            let g = scratch.mutablePointer
            for i in s..<e {
                let b = L.base(i), ob = O.base(i)
                g.update(repeating: 0, count: 3 * T * D)
                let ok = fk_attention_backward_ldg(pq.p + b, pq.p + b + L.kOffset, pq.p + b + L.vOffset, L.rowStride,
                                                   po.p + ob, pg.p + ob, O.rowStride, pl.p + i * T,
                                                   g, g + T * D, g + 2 * T * D, D, T, D, causal ? 1 : 0,
                                                   p, seed, UInt64(i * T * T), attentionTile)
                forgePrecondition(ok != 0, "attention backward: could not allocate the scratch tiles")
                for t in 0..<T {  // the head is done with q, k, v: its gradients replace them
                    (pq.p + b + t * L.rowStride).update(from: g + t * D, count: D)
                    (pq.p + b + L.kOffset + t * L.rowStride).update(from: g + (T + t) * D, count: D)
                    (pq.p + b + L.vOffset + t * L.rowStride).update(from: g + (2 * T + t) * D, count: D)
                }
            }
        }
        return [Tensor(shape: q.shape, storage: q.storage)]
    }
    let dq = Tensor.zeros(q.shape)
    let dk = fused ? dq : Tensor.zeros(k.shape)
    let dv = fused ? dq : Tensor.zeros(v.shape)
    let pq = SendablePointer(q.pointer), pk = SendablePointer(k.pointer), pv = SendablePointer(v.pointer)
    let po = SendablePointer(out.pointer), pg = SendablePointer(dout.pointer), pl = SendablePointer(lse.pointer)
    let pdq = SendablePointer(dq.mutablePointer), pdk = SendablePointer(dk.mutablePointer), pdv = SendablePointer(dv.mutablePointer)
    parallelFor(L.heads, grain: 1) { s, e in
        for i in s..<e {
            let b = L.base(i), ob = O.base(i)
            let ok = fk_attention_backward(pq.p + b, pk.p + b + L.kOffset, pv.p + b + L.vOffset, L.rowStride,
                                           po.p + ob, pg.p + ob, O.rowStride, pl.p + i * T,
                                           pdq.p + b, pdk.p + b + L.kOffset, pdv.p + b + L.vOffset, T, D, causal ? 1 : 0,
                                           p, seed, UInt64(i * T * T), attentionTile)
            forgePrecondition(ok != 0, "attention backward: could not allocate the scratch tiles")
        }
    }
    return fused ? [dq] : [dq, dk, dv]
}

// MARK: - LayerNorm → Linear and GELU → Linear, recomputing instead of saving

/// `linear(norm(x))` as one op: nanoGPT's `c_attn(ln_1(x))`, `c_fc(ln_2(x))` and `lm_head(ln_f(x))`.
/// It saves x and the row statistics (2 floats per row) but not the normalized rows, which the
/// backward recomputes with the same kernel: the pair of ops kept a copy of x's size alive until
/// backward, one (B, T, C) tensor per LayerNorm of a pre-LN transformer. Forward values and
/// gradients are those of `linear(layerNorm(x, …))` (the same kernels and products run).
public func layerNormLinear(_ x: Tensor, norm: LayerNorm, linear: Linear) -> Tensor {
    layerNormLinear(x, normWeight: norm.weight, normBias: norm.bias, eps: norm.eps, weight: linear.weight, bias: linear.bias)
}

/// `layerNormLinear(_:norm:linear:)` on plain tensors: x (…, C), normWeight/normBias (C),
/// weight (N, C), bias (N) → (…, N).
public func layerNormLinear(_ x: Tensor, normWeight: Tensor?, normBias: Tensor?, eps: Float = 1e-5,
                            weight: Tensor, bias: Tensor?) -> Tensor {
    let cols = x.shape.last ?? 1, rows = x.count / Swift.max(cols, 1)
    forgePrecondition(x.rank >= 2, "layerNormLinear: input must be (…, C) with rank ≥ 2, got \(x.shape)")
    forgePrecondition(weight.rank == 2 && weight.shape[1] == cols,
                      "layerNormLinear: weight \(weight.shape) must be (out, \(cols)) for input \(x.shape)")
    let n = weight.shape[0]
    if let b = bias { forgePrecondition(b.shape == [n], "layerNormLinear: bias \(b.shape) must be (\(n))") }
    let (normalized, mean, rstd) = layerNormRows(x, weight: normWeight, bias: normBias, eps: eps)
    let out = Tensor(uninitializedShape: Array(x.shape.dropLast()) + [n])
    sgemm(transA: false, transB: true, m: rows, n: n, k: cols, a: normalized.pointer, lda: cols,
          b: weight.pointer, ldb: cols, c: out.mutablePointer, ldc: n)
    if let bias { addRowVector(bias, to: out) }
    var inputs = [x]
    if let w = normWeight { inputs.append(w) }
    if let b = normBias { inputs.append(b) }
    inputs.append(weight)
    if let b = bias { inputs.append(b) }
    let needInput = x.requiresGrad || normWeight?.requiresGrad == true || normBias?.requiresGrad == true
    return Tensor.record(out, "layer_norm_linear", inputs) { g in
        var dweight: Tensor? = nil
        if weight.requiresGrad {
            // the normalized rows again (the same kernel on the same rows, so the same values), freed
            // before d norm(x) is made so that one can take its buffer
            let normalized = layerNormRows(x, weight: normWeight, bias: normBias, eps: eps).y
            // dW (N, C) = gᵀ · norm(x)
            dweight = Tensor(uninitializedShape: weight.shape)
            sgemm(transA: true, transB: false, m: n, n: cols, k: rows, a: g.pointer, lda: n,
                  b: normalized.pointer, ldb: cols, c: dweight!.mutablePointer, ldc: cols)
        }
        var grads: [Tensor?] = []
        if needInput {
            // d norm(x) (rows, C) = g · W, then LayerNorm's backward
            let dn = Tensor(uninitializedShape: x.shape)
            sgemm(transA: false, transB: false, m: rows, n: cols, k: n, a: g.pointer, lda: n,
                  b: weight.pointer, ldb: cols, c: dn.mutablePointer, ldc: cols)
            let (dx, dw, db) = layerNormBackward(x, weight: normWeight, hasBias: normBias != nil, mean: mean, rstd: rstd, dy: dn)
            grads = [dx] + (normWeight == nil ? [] : [dw]) + (normBias == nil ? [] : [db])
        } else {
            grads = [nil] + (normWeight == nil ? [] : [nil]) + (normBias == nil ? [] : [nil])
        }
        return grads + [dweight] + (bias == nil ? [] : [g.sum(toShape: [n])])
    }
}

/// LayerNorm's forward over the last axis without a graph: the normalized rows and each row's mean and 1/std.
func layerNormRows(_ x: Tensor, weight: Tensor?, bias: Tensor?, eps: Float) -> (y: Tensor, mean: Tensor, rstd: Tensor) {
    let cols = x.shape.last ?? 1, rows = x.count / Swift.max(cols, 1)
    if let w = weight { forgePrecondition(w.shape == [cols], "layerNorm: weight \(w.shape) does not match input \(x.shape)") }
    if let b = bias { forgePrecondition(b.shape == [cols], "layerNorm: bias \(b.shape) does not match input \(x.shape)") }
    let out = Tensor(uninitializedShape: x.shape)
    let mean = Tensor(uninitializedShape: [rows]), rstd = Tensor(uninitializedShape: [rows])
    let px = SendablePointer(x.pointer), po = SendablePointer(out.mutablePointer)
    let pm = SendablePointer(mean.mutablePointer), pr = SendablePointer(rstd.mutablePointer)
    let pw = weight.map { SendablePointer($0.pointer) }, pb = bias.map { SendablePointer($0.pointer) }
    parallelFor(rows, grain: Swift.max(1, 16_384 / Swift.max(cols, 1))) { s, e in
        fk_layernorm_forward(px.p + s * cols, pw?.p, pb?.p, po.p + s * cols, pm.p + s, pr.p + s, e - s, cols, eps)
    }
    return (out, mean, rstd)
}

/// out[r, :] += v for every row r of out (…, n), in place (out was just made by the caller).
private func addRowVector(_ v: Tensor, to out: Tensor) {
    let n = v.count, rows = out.count / Swift.max(n, 1)
    let pv = SendablePointer(v.pointer), po = SendablePointer(out.mutablePointer)
    parallelFor(rows, grain: Swift.max(1, 16_384 / Swift.max(n, 1))) { s, e in
        for r in s..<e { let row = po.p + r * n; for j in 0..<n { row[j] = row[j] + pv.p[j] } }
    }
}

/// `linear(h.gelu(approximate:))` as one op: nanoGPT's MLP `c_proj(gelu(c_fc(x)))` after `c_fc`.
/// It saves h but never holds gelu(h) whole (h's size: 4C floats per row of a transformer MLP):
/// forward and backward compute it a block of rows at a time into a small scratch buffer, each block
/// feeding its own product. The forward's values are those of the two ops; the weight gradient is
/// summed block by block (fixed blocks, so the same on any thread count).
public func geluLinear(_ h: Tensor, linear: Linear, approximate: Bool = false) -> Tensor {
    geluLinear(h, weight: linear.weight, bias: linear.bias, approximate: approximate)
}

/// `geluLinear(_:linear:approximate:)` on plain tensors: h (…, K), weight (N, K), bias (N) → (…, N).
/// `blockRows` sets the rows per block (nil: about 2M floats of scratch); results do not depend on
/// the thread count, and only the weight gradient's rounding depends on the block size.
public func geluLinear(_ h: Tensor, weight: Tensor, bias: Tensor?, approximate: Bool = false, blockRows: Int? = nil) -> Tensor {
    let k = h.shape.last ?? 1, rows = h.count / Swift.max(k, 1)
    forgePrecondition(h.rank >= 2, "geluLinear: input must be (…, K) with rank ≥ 2, got \(h.shape)")
    forgePrecondition(weight.rank == 2 && weight.shape[1] == k, "geluLinear: weight \(weight.shape) must be (out, \(k)) for input \(h.shape)")
    let n = weight.shape[0]
    if let b = bias { forgePrecondition(b.shape == [n], "geluLinear: bias \(b.shape) must be (\(n))") }
    forgePrecondition(blockRows.map { $0 > 0 } ?? true, "geluLinear: blockRows must be positive, got \(blockRows ?? 0)")
    let block = blockRows ?? geluLinearBlockRows(k)
    let out = Tensor(uninitializedShape: Array(h.shape.dropLast()) + [n])
    do {
        let act = Tensor(uninitializedShape: [Swift.min(block, rows), k])   // gelu of one block of rows
        for r0 in stride(from: 0, to: rows, by: block) {
            let r = Swift.min(block, rows - r0)
            geluRows(h.pointer + r0 * k, into: act.mutablePointer, count: r * k, approximate: approximate)
            sgemm(transA: false, transB: true, m: r, n: n, k: k, a: act.pointer, lda: k,
                  b: weight.pointer, ldb: k, c: out.mutablePointer + r0 * n, ldc: n)
        }
    }
    if let bias { addRowVector(bias, to: out) }
    let inputs = [h, weight] + (bias.map { [$0] } ?? [])
    var saved: Tensor? = h  // the closure's only reference to h: backward can tell whether anyone else holds it
    return Tensor.record(out, "gelu_linear", inputs) { g in
        // When nothing else can read h any more (no other op saved it, no variable or leaf edge holds
        // it, no tensor shares its memory), dh is made in its buffer block by block: h is last read here.
        let reuse = isKnownUniquelyReferenced(&saved) && saved!.hasUniqueStorage()
        let h = saved!
        let dweight: Tensor? = weight.requiresGrad ? Tensor(uninitializedShape: weight.shape) : nil
        let dh: Tensor? = !h.requiresGrad ? nil
            : reuse ? Tensor(shape: h.shape, storage: h.storage) : Tensor(uninitializedShape: h.shape)
        let scratch = Tensor(uninitializedShape: [Swift.min(block, rows), k])  // gelu(h) or d gelu(h) of one block
        for r0 in stride(from: 0, to: rows, by: block) {
            let r = Swift.min(block, rows - r0)
            let gBlock = g.pointer + r0 * n, hBlock = h.pointer + r0 * k
            if let dh {
                // gelu(h[block]) into the scratch and gelu'(h[block]) into dh[block] (over h when reused), one pass
                let ph = SendablePointer(hBlock), ps = SendablePointer(scratch.mutablePointer), pd = SendablePointer(dh.mutablePointer + r0 * k)
                parallelFor(r * k) { s, e in
                    if approximate { fk_gelu_tanh_and_derivative(ph.p + s, ps.p + s, pd.p + s, e - s) }
                    else { fk_gelu_erf_and_derivative(ph.p + s, ps.p + s, pd.p + s, e - s) }
                }
            } else if dweight != nil {
                geluRows(hBlock, into: scratch.mutablePointer, count: r * k, approximate: approximate)
            }
            if let dweight {
                // dW (N, K) += g[block]ᵀ · gelu(h[block])
                sgemm(transA: true, transB: false, m: n, n: k, k: r, a: gBlock, lda: n, b: scratch.pointer, ldb: k,
                      beta: r0 == 0 ? 0 : 1, c: dweight.mutablePointer, ldc: k)
            }
            if let dh {
                // dh[block] = (g[block] · W) ⊙ gelu'(h[block])
                sgemm(transA: false, transB: false, m: r, n: k, k: n, a: gBlock, lda: n, b: weight.pointer, ldb: k,
                      c: scratch.mutablePointer, ldc: k)
                let ps = SendablePointer(scratch.pointer), pd = SendablePointer(dh.mutablePointer + r0 * k)
                parallelFor(r * k) { s, e in fk_mul_inplace(pd.p + s, ps.p + s, e - s) }
            }
        }
        return [dh, dweight] + (bias == nil ? [] : [g.sum(toShape: [n])])
    }
}

/// Rows per block of `geluLinear`: about 2M floats of scratch (8 MB), a multiple of 16 rows, and
/// enough rows that each block's products run near full sgemm speed.
func geluLinearBlockRows(_ k: Int) -> Int { Swift.max(256, (1 << 21) / Swift.max(k, 1) / 16 * 16) }

/// dst[i] = gelu(src[i]) for count floats, in parallel.
private func geluRows(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, count: Int, approximate: Bool) {
    let ps = SendablePointer(src), pd = SendablePointer(dst)
    parallelFor(count) { s, e in
        if approximate { fk_gelu_tanh(ps.p + s, pd.p + s, e - s) } else { fk_gelu_erf(ps.p + s, pd.p + s, e - s) }
    }
}
