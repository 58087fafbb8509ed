import ArgumentParser
import Foundation
import TensorCore
import Training

struct BenchCore: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "GFLOP/s of Tensor matmul and conv2d next to raw cblas_sgemm, and per-op overhead.")

    @Option(help: "Timed repetitions per shape (the median is reported).") var reps = 7
    @Option(help: "Minimum milliseconds per repetition.") var minMs = 200.0
    @Flag(help: "Time the conv layers in process CPU time instead of wall time (with FORGE_THREADS=1 it is the figure least changed by other processes on a shared machine).") var cpuTime = false
    @Option(help: "all | info (the kernel line only) | matmul1024 (one RESULT line, for make bench) | peak (the FMA peak and sgemm at the bench shapes) | conv (the peak and the DCGAN conv layers)") var only = "all"

    func run() throws {
        switch only {
        case "info":
            say("OpenBLAS \(BLAS.coreName), kernels \(BLAS.kernelLevel)")
        case "matmul1024":
            let n = 1024
            var rng = RandomGenerator(seed: 1)
            let a = Tensor.randn([n, n], generator: &rng), b = Tensor.randn([n, n], generator: &rng)
            let t = StepTiming.secondsPerCall(reps: reps, minMs: minMs) { _ = withNoGrad { a.matmul(b) } }
            say("RESULT matmul1024 \(String(format: "%.2f", 2.0 * Double(n * n * n) / t / 1e9)) GFLOP/s")
        case "conv":
            say(CoreBenchmark.header())
            let peak = CoreBenchmark.peak(reps: reps)
            for line in peak.lines { say(line) }
            var reference = peak.best
            if cpuTime {
                // the FMA loop in CPU time on Forge's threads (run one by one under FORGE_THREADS=1)
                var best = 0.0
                for _ in 0..<max(reps, 1) {
                    let c0 = processCPUSeconds(), w0 = DispatchTime.now().uptimeNanoseconds
                    if let g = FMAPeak.gflops(threads: Threads.count, avx512: BLAS.kernelLevel == "avx512") {
                        let wall = Double(DispatchTime.now().uptimeNanoseconds - w0) / 1e9, cpu = processCPUSeconds() - c0
                        best = max(best, g * wall / max(cpu, 1e-9))
                    }
                }
                if best > 0 { reference = best; say(String(format: "FMA peak in CPU time, %d thread(s): %.1f GFLOP/s (best of %d)", Threads.count, best, max(reps, 1))) }
            }
            for line in CoreBenchmark.conv(peak: reference, reps: reps, minMs: minMs, cpuTime: cpuTime) { say(line) }
        case "peak":
            say(CoreBenchmark.header())
            let peak = CoreBenchmark.peak(reps: reps)
            for line in peak.lines { say(line) }
            for line in CoreBenchmark.sgemmAtBenchShapes(peak: peak.best, reps: reps, minMs: minMs) { say(line) }
        default:
            say(CoreBenchmark.header())
            let peak = CoreBenchmark.peak(reps: reps)
            for line in peak.lines { say(line) }
            for line in CoreBenchmark.matmul(sizes: [256, 512, 1024], reps: reps, minMs: minMs) { say(line) }
            for line in CoreBenchmark.sgemmAtBenchShapes(peak: peak.best, reps: reps, minMs: minMs) { say(line) }
            for line in CoreBenchmark.conv(peak: peak.best, reps: reps, minMs: minMs, cpuTime: cpuTime) { say(line) }
            say(CoreBenchmark.opOverhead())
        }
    }
}

/// CPU seconds this process has used (all threads).
func processCPUSeconds() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
}

/// The header and table layout of `forge bench core` (the timing is `StepTiming`).
enum CoreBenchmark {
    static func header() -> String {
        "# forge bench core: OpenBLAS core \(BLAS.coreName), Forge kernels \(BLAS.kernelLevel), threads \(Threads.count)"
    }

    static func row(_ cols: [String], widths: [Int]) -> String {
        zip(cols, widths).map { c, w in w < 0 ? c.padding(toLength: -w, withPad: " ", startingAt: 0)
                                              : String(repeating: " ", count: max(0, w - c.count)) + c }.joined(separator: " ")
    }

    static func matmul(sizes: [Int], reps: Int, minMs: Double) -> [String] {
        let w = [-24, 12, 12, 8]
        var lines = [row(["matmul (square)", "Tensor GF/s", "sgemm GF/s", "ratio"], widths: w)]
        for n in sizes {
            var rng = RandomGenerator(seed: UInt64(n))
            let a = Tensor.randn([n, n], generator: &rng), b = Tensor.randn([n, n], generator: &rng)
            let flops = 2.0 * Double(n * n * n)
            let c = Tensor(uninitializedShape: [n, n])
            let tTensor = StepTiming.secondsPerCall(reps: reps, minMs: minMs) { _ = withNoGrad { a.matmul(b) } }
            let tRaw = StepTiming.secondsPerCall(reps: reps, minMs: minMs) {
                sgemm(transA: false, transB: false, m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, c: c.mutablePointer, ldc: n)
            }
            lines.append(row(["\(n)x\(n)x\(n)", String(format: "%.1f", flops / tTensor / 1e9), String(format: "%.1f", flops / tRaw / 1e9),
                              String(format: "%.1f%%", 100 * tRaw / tTensor)], widths: w))
        }
        return lines
    }

    /// DCGAN-sized layers (batch 64): each of a layer's three products — forward, input gradient, weight
    /// gradient (each gradient's backward pass timed alone, after a forward that records the graph) — on
    /// both convolution backends (`ConvGEMM.blas`, `.own`), one after the other, as GFLOP/s and % of `peak`;
    /// the "layer" row is the whole layer (forward + both gradients, timed as one step) on blas, on own and
    /// on auto, the per-product choice Forge makes.
    static func conv(peak: Double?, reps: Int, minMs: Double, cpuTime: Bool = false) -> [String] {
        struct Layer { let name: String; let transposed: Bool; let cin, cout, h, k, s, p: Int }
        let layers = [
            Layer(name: "D conv 3->64 @64", transposed: false, cin: 3, cout: 64, h: 64, k: 4, s: 2, p: 1),
            Layer(name: "D conv 64->128 @32", transposed: false, cin: 64, cout: 128, h: 32, k: 4, s: 2, p: 1),
            Layer(name: "D conv 128->256 @16", transposed: false, cin: 128, cout: 256, h: 16, k: 4, s: 2, p: 1),
            Layer(name: "D conv 256->512 @8", transposed: false, cin: 256, cout: 512, h: 8, k: 4, s: 2, p: 1),
            Layer(name: "G convT 512->256 @4", transposed: true, cin: 512, cout: 256, h: 4, k: 4, s: 2, p: 1),
            Layer(name: "G convT 256->128 @8", transposed: true, cin: 256, cout: 128, h: 8, k: 4, s: 2, p: 1),
            Layer(name: "G convT 128->64 @16", transposed: true, cin: 128, cout: 64, h: 16, k: 4, s: 2, p: 1),
            Layer(name: "G convT 64->3 @32", transposed: true, cin: 64, cout: 3, h: 32, k: 4, s: 2, p: 1),
        ]
        let w = [-22, -6, 9, 8, 9, 8, 9, 8]
        func pct(_ g: Double) -> String { peak.map { String(format: "%.0f%%", 100 * g / $0) } ?? "-" }
        var lines = [String(format: "conv (batch 64), GF/s and %% of the %@ FMA peak; own GEMM micro-kernel %@; %@ time",
                            peak.map { String(format: "%.1f GF/s", $0) } ?? "unmeasured", ConvGEMM.kernelLevel, cpuTime ? "CPU" : "wall"),
                     row(["layer", "gemm", "fwd", "%", "dX", "%", "dW", "%"], widths: w)]
        let batch = 64
        // The fastest of `reps` timings (each ≥ minMs / 2), not the median: the machine is shared, and the
        // fastest run is the one least disturbed by other processes, so A/B figures compare the kernels.
        // `body` returns the seconds of the part to time (so a backward pass is timed alone, not as a
        // difference of two noisy timings, which on a busy VM gave figures above the peak).
        func clock() -> Double { cpuTime ? processCPUSeconds() : Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
        func fastestPart(_ body: () -> Double) -> Double {
            _ = body()
            var best = Double.infinity
            for _ in 0..<max(reps, 1) {
                var calls = 0, seconds = 0.0
                let w0 = DispatchTime.now().uptimeNanoseconds
                repeat { seconds += body(); calls += 1 } while Double(DispatchTime.now().uptimeNanoseconds - w0) / 1e6 < minMs / 2
                best = min(best, seconds / Double(calls))
            }
            return best
        }
        func fastest(_ body: () -> Void) -> Double {
            fastestPart { let t0 = clock(); body(); return clock() - t0 }
        }
        let saved = ConvGEMM.current
        defer { ConvGEMM.current = saved }
        for l in layers {
            var rng = RandomGenerator(seed: 5)
            let x = Tensor.randn([batch, l.cin, l.h, l.h], generator: &rng)
            let wt = Tensor.randn(l.transposed ? [l.cin, l.cout, l.k, l.k] : [l.cout, l.cin, l.k, l.k], std: 0.02, generator: &rng)
            func forward() -> Tensor {
                l.transposed
                    ? convTranspose2d(x, weight: wt, stride: (l.s, l.s), padding: (l.p, l.p))
                    : conv2d(x, weight: wt, stride: (l.s, l.s), padding: (l.p, l.p))
            }
            let out = withNoGrad { forward() }
            // multiply-adds: each conv output (each convT input) position meets cin·k·k (cout·k·k) weights
            let flops = l.transposed
                ? 2.0 * Double(batch * l.cin * l.h * l.h) * Double(l.cout * l.k * l.k)
                : 2.0 * Double(out.count) * Double(l.cin * l.k * l.k)
            let gy = Tensor.randn(out.shape, generator: &rng)
            // forward + backward with the gradients asked for (timed as one step)
            func step(input: Bool, weight: Bool) -> Double {
                x.requiresGrad = input; wt.requiresGrad = weight
                defer { x.requiresGrad = false; wt.requiresGrad = false }
                return fastest {
                    x.grad = nil; wt.grad = nil
                    forward().backward(gy)
                }
            }
            // the backward pass alone, after a forward that records the graph (and keeps what backward needs)
            func backwardOnly(input: Bool, weight: Bool) -> Double {
                x.requiresGrad = input; wt.requiresGrad = weight
                defer { x.requiresGrad = false; wt.requiresGrad = false }
                return fastestPart {
                    x.grad = nil; wt.grad = nil
                    let y = forward()
                    let t0 = clock()
                    y.backward(gy)
                    return clock() - t0
                }
            }
            var results: [ConvGEMM: (Double, Double, Double)] = [:], layerTotal: [ConvGEMM: Double] = [:]
            for backend in [ConvGEMM.blas, .own] {
                ConvGEMM.current = backend
                let tf = fastest { _ = withNoGrad { forward() } }
                let bx = backwardOnly(input: true, weight: false), bw = backwardOnly(input: false, weight: true)
                results[backend] = (flops / tf / 1e9, flops / bx / 1e9, flops / bw / 1e9)
                layerTotal[backend] = 3 * flops / step(input: true, weight: true) / 1e9
            }
            for backend in [ConvGEMM.blas, .own] {
                let (f, dx, dw) = results[backend]!
                lines.append(row([backend == .blas ? l.name : "", backend.rawValue, String(format: "%.1f", f), pct(f),
                                  String(format: "%.1f", dx), pct(dx), String(format: "%.1f", dw), pct(dw)], widths: w))
            }
            ConvGEMM.current = .auto
            let ga = 3 * flops / step(input: true, weight: true) / 1e9
            let gb = layerTotal[.blas]!, go = layerTotal[.own]!
            lines.append(row(["", "layer", "blas", String(format: "%.1f", gb), "own", String(format: "%.1f", go), "auto",
                              String(format: "%.1f %@", ga, pct(ga))], widths: w))
        }
        return lines
    }

    /// The FMA peak measured now (the loop of ../shared/bench/peak.c), 1 thread and all of Forge's
    /// threads, 512- and 256-bit wide; `best` is the widest all-thread figure, the one speeds are quoted against.
    static func peak(reps: Int) -> (lines: [String], best: Double?) {
        var lines: [String] = [], best: Double?
        for avx512 in [true, false] {
            for threads in Set([1, Threads.count]).sorted() {
                var runs: [Double] = []
                for _ in 0..<max(reps, 1) { if let g = FMAPeak.gflops(threads: threads, avx512: avx512) { runs.append(g) } }
                guard !runs.isEmpty else { continue }
                let g = StepTiming.median(runs)
                if threads == Threads.count && best == nil { best = g }
                lines.append(String(format: "FMA peak %@, %d thread(s): %.1f GFLOP/s (median of %d; min %.1f, max %.1f)",
                                    avx512 ? "AVX-512" : "AVX2   ", threads, g, runs.count, runs.min()!, runs.max()!))
            }
        }
        if let best { lines.append(String(format: "RESULT fma-peak %.1f GFLOP/s", best)) }
        return (lines, best)
    }

    /// Raw sgemm (as Forge calls it) at the GEMM shapes the bench workloads run, as GFLOP/s and % of `peak`.
    static func sgemmAtBenchShapes(peak: Double?, reps: Int, minMs: Double) -> [String] {
        // (name, M, N, K, transB): Linear forward is x·Wᵀ, so transB
        let shapes: [(String, Int, Int, Int, Bool)] = [
            ("matmul1024", 1024, 1024, 1024, false),
            ("char-shakespeare c_attn", 64 * 256, 3 * 384, 384, true),
            ("char-shakespeare c_proj", 64 * 256, 384, 384, true),
            ("char-shakespeare c_fc", 64 * 256, 4 * 384, 384, true),
            ("char-shakespeare mlp proj", 64 * 256, 384, 4 * 384, true),
            ("char-shakespeare lm_head", 64 * 256, 65, 384, true),
            ("char-baby c_fc", 12 * 64, 4 * 128, 128, true),
        ]
        let w = [-28, 16, 12, 10]
        var lines = [row(["sgemm (bench shapes)", "M x N x K", "GF/s", "% peak"], widths: w)]
        for (name, m, n, k, transB) in shapes {
            var rng = RandomGenerator(seed: 9)
            let a = Tensor.randn([m, k], generator: &rng), b = Tensor.randn(transB ? [n, k] : [k, n], generator: &rng)
            let c = Tensor(uninitializedShape: [m, n])
            let t = StepTiming.secondsPerCall(reps: reps, minMs: minMs) {
                sgemm(transA: false, transB: transB, m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: transB ? k : n,
                      c: c.mutablePointer, ldc: n)
            }
            let g = 2.0 * Double(m * n * k) / t / 1e9
            lines.append(row([name, "\(m)x\(n)x\(k)", String(format: "%.1f", g), peak.map { String(format: "%.1f%%", 100 * g / $0) } ?? "-"], widths: w))
        }
        return lines
    }

    /// Wall time of one tiny elementwise op (graph recording off and on).
    static func opOverhead() -> String {
        let a = Tensor(shape: [4], data: [1, 2, 3, 4]), b = Tensor(shape: [4], data: [4, 3, 2, 1])
        let plain = StepTiming.secondsPerCall(reps: 5, minMs: 100) { _ = withNoGrad { a + b } }
        a.requiresGrad = true
        let graph = StepTiming.secondsPerCall(reps: 5, minMs: 100) { _ = a + b }
        return String(format: "tiny op (4-element add): %.2f µs without graph, %.2f µs recording the graph", plain * 1e6, graph * 1e6)
    }
}

/// `forge bench all`: every workload of `make bench`, Forge's side only, one after another in one
/// process (the same argument lists `bench/run.py` passes). `make bench` adds the PyTorch column.
struct BenchAll: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "all",
        abstract: "Run every Forge benchmark workload (core, GAN 32/64, VAE, char baby/shakespeare, char sampling).")

    func run() throws {
        try BenchCore.parse(["--only", "matmul1024"]).run()
        try BenchGAN.parse(["--size", "32", "--batch", "64"]).run()
        try BenchGAN.parse(["--size", "64", "--batch", "64"]).run()
        try BenchVAE.parse(["--batch", "128"]).run()
        try BenchChar.parse(["--preset", "baby"]).run()
        try BenchChar.parse(["--preset", "shakespeare"]).run()
        try BenchChar.parse(["--preset", "baby", "--sample"]).run()
    }
}
