import Foundation
import CBLAS
import CKernels

/// OpenBLAS set-up: the kernel choice and the thread count.
public enum BLAS {
    /// The OpenBLAS kernel set in use (e.g. "SkylakeX", "Haswell", "Prescott").
    public static var coreName: String { String(cString: openblas_get_corename()) }
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
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// OpenBLAS's own thread count, switched to 1 while Forge's threads each run small GEMMs.
enum BLASThreads {
    static func withSingleThreaded(when condition: Bool, _ body: () -> Void) {
        guard condition else { body(); return }
        openblas_set_num_threads(1)
        body()
        openblas_set_num_threads(Int32(Threads.count))
    }
}
