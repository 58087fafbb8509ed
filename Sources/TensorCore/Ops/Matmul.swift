import Foundation

extension Tensor {
    /// Matrix product. 2-D: (m, k)·(k, n). Batched: (…, m, k)·(…, k, n) with equal batch dims, or a
    /// batched left side times a 2-D right side (as a Linear layer applies its weight).
    /// `transposeA`/`transposeB` use the last two axes transposed without copying (BLAS flags).
    public func matmul(_ other: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
        Tensor.matmul(self, other, transposeA: transposeA, transposeB: transposeB)
    }

    /// The matrix product op(a)·op(b), as the instance method `a.matmul(b)`. (…, m, k)·(k, n)
    /// without `transposeA` folds the batch of `a` into one GEMM; otherwise the batch axes of both
    /// must be equal (no broadcasting) and each batch item is one GEMM. Traps on rank < 2, unequal
    /// inner dimensions or unequal batches.
    /// Gradient: `matmulBackward`.
    public static func matmul(_ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false) -> Tensor {
        forgePrecondition(a.rank >= 2 && b.rank >= 2, "matmul: needs rank >= 2, got \(a.shape) and \(b.shape)")
        let (ar, ac) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (br, bc) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let (m, k) = transposeA ? (ac, ar) : (ar, ac)
        let (k2, n) = transposeB ? (bc, br) : (br, bc)
        forgePrecondition(k == k2, "matmul: inner dimensions differ: \(a.shape)\(transposeA ? "ᵀ" : "") · \(b.shape)\(transposeB ? "ᵀ" : "")")
        let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
        let out: Tensor
        if b.rank == 2 && !transposeA {
            // (…, m, k)·(k, n): fold the batch into m — one GEMM.
            let rows = batchA.reduce(1, *) * m
            out = Tensor(uninitializedShape: batchA + [m, n])
            sgemm(transA: false, transB: transposeB, m: rows, n: n, k: k, a: a.pointer, lda: ac,
                  b: b.pointer, ldb: bc, c: out.mutablePointer, ldc: n)
        } else {
            forgePrecondition(batchA == batchB, "matmul: batch dimensions differ: \(a.shape) · \(b.shape)")
            let batch = batchA.reduce(1, *)
            out = Tensor(uninitializedShape: batchA + [m, n])
            for i in 0..<batch {
                sgemm(transA: transposeA, transB: transposeB, m: m, n: n, k: k, a: a.pointer + i * ar * ac, lda: ac,
                      b: b.pointer + i * br * bc, ldb: bc, c: out.mutablePointer + i * m * n, ldc: n)
            }
        }
        return record(out, "matmul", [a, b]) { g in
            let (da, db) = matmulBackward(a, b, dC: g, transposeA: transposeA, transposeB: transposeB)
            return [da, db]
        }
    }
}

/// The backward of `Tensor.matmul`: for C = op(A)·op(B) and its gradient dC (…, m, n),
///   dA = dC·op(B)ᵀ (then transposed if A was), shape of A; nil when A needs no gradient
///   dB = op(A)ᵀ·dC (likewise), shape of B; nil when B needs no gradient
/// with the same batching as the forward (a batched A times a 2-D B folds the batch into m).
public func matmulBackward(_ a: Tensor, _ b: Tensor, dC g: Tensor, transposeA: Bool, transposeB: Bool) -> (dA: Tensor?, dB: Tensor?) {
    let (ar, ac) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
    let (br, bc) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
    let (m, k) = transposeA ? (ac, ar) : (ar, ac)
    let n = transposeB ? br : bc
    let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
        // C = op(A)·op(B):  dA = g·op(B)ᵀ (then transposed if A was), dB = op(A)ᵀ·g (likewise)
        var da: Tensor? = nil, db: Tensor? = nil
        if a.requiresGrad {
            da = Tensor(uninitializedShape: a.shape)
            if b.rank == 2 && !transposeA {
                let rows = batchA.reduce(1, *) * m
                // dA (rows, k) = g (rows, n) · op(B)ᵀ
                sgemm(transA: false, transB: !transposeB, m: rows, n: k, k: n, a: g.pointer, lda: n,
                      b: b.pointer, ldb: bc, c: da!.mutablePointer, ldc: ac)
            } else {
                for i in 0..<batchA.reduce(1, *) {
                    let gp = g.pointer + i * m * n, bp = b.pointer + i * br * bc, dp = da!.mutablePointer + i * ar * ac
                    if transposeA {
                        // A is (k, m): dA = op(B) · gᵀ  -> (k, m)
                        sgemm(transA: transposeB, transB: true, m: k, n: m, k: n, a: bp, lda: bc, b: gp, ldb: n, c: dp, ldc: ac)
                    } else {
                        sgemm(transA: false, transB: !transposeB, m: m, n: k, k: n, a: gp, lda: n, b: bp, ldb: bc, c: dp, ldc: ac)
                    }
                }
            }
        }
        if b.requiresGrad {
            db = Tensor(uninitializedShape: b.shape)
            if b.rank == 2 && !transposeA {
                let rows = batchA.reduce(1, *) * m
                if transposeB {
                    // B is (n, k): dB = gᵀ · A  -> (n, k)
                    sgemm(transA: true, transB: false, m: n, n: k, k: rows, a: g.pointer, lda: n,
                          b: a.pointer, ldb: ac, c: db!.mutablePointer, ldc: bc)
                } else {
                    sgemm(transA: true, transB: false, m: k, n: n, k: rows, a: a.pointer, lda: ac,
                          b: g.pointer, ldb: n, c: db!.mutablePointer, ldc: bc)
                }
            } else {
                for i in 0..<batchB.reduce(1, *) {
                    let gp = g.pointer + i * m * n, ap = a.pointer + i * ar * ac, dp = db!.mutablePointer + i * br * bc
                    if transposeB {
                        // dB (n, k) = gᵀ · op(A)
                        sgemm(transA: true, transB: transposeA, m: n, n: k, k: m, a: gp, lda: n, b: ap, ldb: ac, c: dp, ldc: bc)
                    } else {
                        // dB (k, n) = op(A)ᵀ · g
                        sgemm(transA: !transposeA, transB: false, m: k, n: n, k: m, a: ap, lda: ac, b: gp, ldb: n, c: dp, ldc: bc)
                    }
                }
            }
        }
    return (da, db)
}
