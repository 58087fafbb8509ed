import CKernels

/// The machine's FP32 FMA peak, measured with the loop of `../shared/bench/peak.c` (16 independent
/// register chains of vfmadd231ps, in CKernels' peak.c), so speeds can be quoted as a share of it.
public enum FMAPeak {
    /// GFLOP/s of `threads` threads (Forge's worker pool) each running `iterations` rounds of the
    /// FMA chains: 512-bit wide when `avx512`, 256-bit (AVX2) otherwise. nil when the CPU lacks the
    /// instructions.
    public static func gflops(threads: Int, iterations: Int = 20_000_000, avx512: Bool) -> Double? {
        let g = fk_fma_peak_gflops(threads, iterations, avx512 ? 1 : 0)
        return g > 0 ? g : nil
    }
}
