import Foundation
import CBLAS
import CKernels

/// OpenBLAS set-up: the kernel choice and the thread count.
public enum BLAS {
    /// The OpenBLAS kernel set in use (e.g. "SkylakeX", "Haswell", "Prescott").
    public static var coreName: String { String(cString: openblas_get_corename()) }
    /// OpenBLAS's build description as `openblas_get_config()` reports it (version and build options
    /// such as DYNAMIC_ARCH and MAX_THREADS), for diagnosing which library a program loaded.
    public static var config: String { String(cString: openblas_get_config()) }
    /// Which clone of Forge's C kernels runs on this CPU.
    public static var kernelLevel: String { String(cString: fk_kernel_level()) }

    static let avx512Cores: Set<String> = ["SkylakeX", "Cooperlake", "SapphireRapids"]
    static let avx2Cores: Set<String> = avx512Cores.union(["Haswell", "Zen"])

    /// The OpenBLAS core Forge would ask for on this CPU, or nil when the detected one is fine.
    /// Debian's OpenBLAS 0.3.21 does not know some new CPUs and falls back to generic SSE kernels,
    /// 4-9x slower; this names the fast kernel set the CPU can run instead (never one it cannot).
    public static func preferredCore(detected: String, avx512: Bool, avx2: Bool) -> String? {
        if avx512 && !avx512Cores.contains(detected) { return "SkylakeX" }
        if !avx512 && avx2 && !avx2Cores.contains(detected) { return "Haswell" }
        return nil
    }

    /// Call first thing in `main`. If the user has not set `OPENBLAS_CORETYPE` and OpenBLAS picked a
    /// slow fallback core, re-executes the process once with the right `OPENBLAS_CORETYPE`
    /// (OpenBLAS reads it when it is loaded, before `main`, so setting it now would be too late).
    /// Then applies the thread count (`FORGE_THREADS`).
    public static func configure(allowReexec: Bool = true) {
        let env = ProcessInfo.processInfo.environment
        if allowReexec, env["OPENBLAS_CORETYPE"] == nil, env["FORGE_BLAS_REEXEC"] == nil,
           let core = preferredCore(detected: coreName, avx512: fk_cpu_has_avx512() != 0,
                                    avx2: fk_cpu_has_avx2_fma() != 0) {
            setenv("OPENBLAS_CORETYPE", core, 1)
            setenv("FORGE_BLAS_REEXEC", "1", 1)  // never loop
            let args = CommandLine.arguments
            var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) }
            cargs.append(nil)
            execv("/proc/self/exe", &cargs)
            // execv only returns on failure: carry on with the slow kernels.
            FileHandle.standardError.write("forge: could not re-exec with OPENBLAS_CORETYPE=\(core); BLAS may be slow\n".data(using: .utf8)!)
        }
        Threads.applyToBLAS()
    }
}

/// C = alpha * op(A) * op(B) + beta * C, row-major. op(A) is (m, k), op(B) is (k, n).
///
/// OpenBLAS runs single-threaded (see `Threads.applyToBLAS`); a product big enough to pay for it is
/// cut into blocks of C along the larger of m and n, and Forge's workers share the blocks out. The cut
/// depends only on the shape, never on the thread count or on whether the caller is already inside a
/// parallel region (then the blocks run one after another), so the bits of C are the same with
/// `FORGE_THREADS=1`, 2 or 64. That is needed because OpenBLAS's result for an element depends on
/// the size of the call it is in: on its Zen kernels a 512×384×128 product cut into halves differed
/// from the whole call in 7,150 of 196,608 elements, and `forge train` wrote other weights with one
/// thread than with two. (Blocked results may differ from one unblocked call in the last bits.)
@inline(__always)
public func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    if k == 0 {
        if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
        else if beta != 1 { for i in 0..<m { for j in 0..<n { c[i * ldc + j] *= beta } } }
        return
    }
    if m * n * k >= sgemmSplitWork && max(m, n) >= 2 * sgemmSplitAlign {
        sgemmSplit(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                   beta: beta, c: c, ldc: ldc)
        return
    }
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Products below this many multiply-adds run on one thread, and no block of a split one is smaller
/// than half of it. Splitting costs a few microseconds, and there is a second reason: OpenBLAS runs
/// products of at most 100³ multiply-adds through its "small matrix" kernels on AVX-512 cores, whose
/// sums round differently from its blocked kernels, so a split whose blocks fell under that bound
/// would change the bits of C with the thread count (measured: a VAE step's fc21 weight gradient,
/// 20×400×128, differed between FORGE_THREADS=1 and 2 when split at 2¹⁸). With every block above
/// 2²⁰ ≥ 100³ the blocked kernel computes each element of C the same way whatever the split.
@usableFromInline let sgemmSplitWork = 1 << 21
@usableFromInline let sgemmSplitMinPart = 1 << 20
/// Blocks of C start on multiples of this many rows or columns (whole cache lines, whole kernel tiles).
@usableFromInline let sgemmSplitAlign = 16
/// At most this many blocks (a power of two, so 2, 4 or 8 threads share them evenly). Above two
/// blocks, each keeps at least `sgemmSplitMinLength` rows (columns): every block re-packs the whole of
/// the other operand, which on thin blocks would cost more than the blocks gain.
@usableFromInline let sgemmSplitMaxParts = 8
@usableFromInline let sgemmSplitMinLength = 512

/// The number of blocks `sgemm` cuts C (m × n, k deep) into along its larger side: a function of
/// the shape alone (1: not cut). Public for the tests that check the cut.
public func sgemmSplitParts(m: Int, n: Int, k: Int) -> Int {
    let length = max(m, n), work = m * n * k
    guard work >= sgemmSplitWork && length >= 2 * sgemmSplitAlign else { return 1 }
    let wanted = min(sgemmSplitMaxParts, length / sgemmSplitMinLength, work / sgemmSplitMinPart)
    var parts = 2
    while parts * 2 <= wanted { parts *= 2 }
    return parts
}

@usableFromInline
func sgemmSplit(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    // Split the larger side: each block re-packs the whole of the other operand, so that one should be the smaller.
    let alongN = n >= m
    let length = alongN ? n : m
    let parts = sgemmSplitParts(m: m, n: n, k: k)
    let per = (length + parts - 1) / parts
    let step = (per + sgemmSplitAlign - 1) / sgemmSplitAlign * sgemmSplitAlign
    let pa = SendablePointer(a), pb = SendablePointer(b), pc = SendablePointer(c)
    func block(_ i: Int) {
        let lo = i * step, hi = min(length, lo + step)
        guard lo < hi else { return }
        let tA = transA ? CblasTrans : CblasNoTrans, tB = transB ? CblasTrans : CblasNoTrans
        if alongN {
            // C[:, lo..<hi] = op(A) · op(B)[:, lo..<hi]; op(B) columns are B's columns, or Bᵀ's rows
            cblas_sgemm(CblasRowMajor, tA, tB, Int32(m), Int32(hi - lo), Int32(k), alpha, pa.p, Int32(lda),
                        pb.p + (transB ? lo * ldb : lo), Int32(ldb), beta, pc.p + lo, Int32(ldc))
        } else {
            // C[lo..<hi, :] = op(A)[lo..<hi, :] · op(B); op(A) rows are A's rows, or Aᵀ's columns
            cblas_sgemm(CblasRowMajor, tA, tB, Int32(hi - lo), Int32(n), Int32(k), alpha, pa.p + (transA ? lo : lo * lda),
                        Int32(lda), pb.p, Int32(ldb), beta, pc.p + lo * ldc, Int32(ldc))
        }
    }
    // the blocks in contiguous runs, one run per worker (all on this thread when it is the only one)
    let workers = Threads.inParallelRegion ? 1 : min(Threads.count, parts)
    runChunks(workers) { w in
        for i in (w * parts / workers)..<((w + 1) * parts / workers) { block(i) }
    }
}

// MARK: - Forge's own GEMM (gemm.c)

/// C (m × n) = op(A) · op(B) [+ C when `accumulate`] [+ the output's row bias], on operand views
/// (a matrix, NCHW images as a matrix, or an implicit im2col) — Forge's packed GEMM in CKernels
/// (`fk_gemm`). Split over `Threads.count` threads; each element is summed in one fixed order, so
/// results do not depend on the thread count.
@inline(__always)
func viewGEMM(_ a: fk_view, _ b: fk_view, _ c: fk_out, m: Int, n: Int, k: Int, accumulate: Bool = false) {
    var a = a, b = b, c = c
    fk_view_gemm(&a, &b, &c, m, n, k, accumulate ? 1 : 0, Threads.inParallelRegion ? 1 : Threads.count)
}

/// Which GEMM runs convolutions: OpenBLAS on im2col buffers, or Forge's own GEMM with the im2col gather
/// fused into its packing (implicit GEMM), chosen per product by measured speed.
public enum ConvGEMM: String, Sendable {
    /// im2col / col2im buffers + OpenBLAS sgemm for every product.
    case blas
    /// Forge's own GEMM (implicit im2col) for every product it serves.
    case own
    /// Per product, the backend measured faster on it (see `Conv.swift`, `convUsesOwnGEMM`).
    case auto

    nonisolated(unsafe) private static var _current: ConvGEMM = {
        if let s = ProcessInfo.processInfo.environment["FORGE_CONV_GEMM"], let v = ConvGEMM(rawValue: s) { return v }
        return .auto
    }()
    /// The backend in use (`FORGE_CONV_GEMM=blas|own|auto`, default auto). Set it only between steps
    /// (benchmarks and tests flip it); it is read once per convolution.
    public static var current: ConvGEMM {
        get { _current }
        set { _current = newValue }
    }
    /// The micro-kernel Forge's GEMM runs here: "avx512", "avx2" or "baseline".
    public static var kernelLevel: String { String(cString: fk_gemm_level_name()) }
}
