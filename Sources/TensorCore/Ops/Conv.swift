import Foundation
import CKernels

// Convolutions as GEMMs (NCHW, PyTorch weight layouts).
//
// Every conv here is built from the same two moves on a "window geometry" (an image (C, H, W) seen
// through a (KH, KW) window with stride and zero padding, giving (OH, OW) windows):
//   lower:  im2col over a chunk of n images -> col (C·KH·KW, n·OH·OW), then ONE sgemm against it
//   fold:   ONE sgemm producing col (C·KH·KW, n·OH·OW), then col2im back into n images
// conv2d forward = lower(x);          conv2d backward: dW = dY·colᵀ (lower(x)), dX = fold(Wᵀ·dY)
// convT2d forward = fold(Wᵀ·X);       convT2d backward: dX = W·lower(dY), dW = X·lower(dY)ᵀ
// The GEMM's N is (images × OH × OW), so the small late layers of a DCGAN (4×4, 8×8 maps) still
// give OpenBLAS a wide matrix. The batch is cut into chunks so the column buffer stays bounded.

// MARK: - geometry

/// Like `precondition`, but the message survives `-O`: Swift drops precondition messages in release
/// builds, and a bad shape must say which op and which shapes, not just trap.
@inline(__always)
func convPrecondition(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fatalError(message()) }
}

/// An image (channels, height, width) seen through a (kernelH, kernelW) window with stride and zero
/// padding: (outH, outW) window positions. im2col turns one image into a (patchSize, outPixels) matrix.
struct WindowGeometry {
    let channels: Int, height: Int, width: Int
    let kernelH: Int, kernelW: Int
    let strideH: Int, strideW: Int
    let padH: Int, padW: Int
    let outH: Int, outW: Int

    var kernelArea: Int { kernelH * kernelW }
    /// Rows of the column matrix: one per (channel, kh, kw).
    var patchSize: Int { channels * kernelH * kernelW }
    /// Columns of the column matrix per image: one per window position.
    var outPixels: Int { outH * outW }
    var inPixels: Int { height * width }
    /// One unpadded window over the whole image (a DCGAN's last D conv, 4×4 → 1×1, and first G
    /// convT, 1×1 → 4×4): the column matrix of an image is the image itself, so the conv is a plain
    /// GEMM on the tensors as they lie, with no im2col or col2im pass.
    var coversWholeImage: Bool { outH == 1 && outW == 1 && padH == 0 && padW == 0 && kernelH == height && kernelW == width }
}

/// Upper bound on the column buffer (floats) of one chunk (`FORGE_CONV_CHUNK_FLOATS`, default 2M floats = 8 MB).
/// A chunk small enough to stay in the 32 MB L3 between im2col and the GEMM (and between the GEMM and col2im)
/// made the layout passes up to 2-3x faster in a single-thread measurement (D2 im2col: 67 MB column buffer 17.8 ms,
/// 8 MB chunks 5.9 ms), while N = n·OH·OW stays >= 512 on every DCGAN layer. On the whole DCGAN benchmark
/// (2 threads, shared machine) 8 MB vs 64 MB chunks measured 1847 vs 1903 ms forward+backward: within noise.
let convColumnBudget: Int = {
    if let s = ProcessInfo.processInfo.environment["FORGE_CONV_CHUNK_FLOATS"], let n = Int(s), n > 0 { return n }
    return 1 << 21
}()

/// How many images go into one chunk so that a (rows, n·pixels) buffer stays within the budget.
@inline(__always)
func imagesPerChunk(batch: Int, floatsPerImage: Int) -> Int {
    Swift.max(1, Swift.min(batch, convColumnBudget / Swift.max(floatsPerImage, 1)))
}

// MARK: - lower / fold kernels (parallel over channels, each over a run of images)

/// How many planes of (height, width), padded or not, the C kernels' stack copy (`FK_PAD_MAX` floats)
/// holds at once (0 when not even one does).
@inline(__always)
func planesPerStackCopy(_ g: WindowGeometry, padded: Bool) -> Int {
    let plane = padded ? (g.height + 2 * g.padH) * (g.width + 2 * g.padW) : g.inPixels
    return Int(FK_PAD_MAX) / Swift.max(plane, 1)
}

/// Runs `body(channel, firstImage, imageCount)` in parallel over (channel, run of at most `perRun`
/// images) units, so each unit of a lower or fold pass reads or writes every (kh, kw) row of its
/// channel as one sequential stream over its images.
@inline(__always)
func forEachChannelRun(_ g: WindowGeometry, images n: Int, perRun: Int, _ body: (Int, Int, Int) -> Void) {
    let run = Swift.max(1, Swift.min(n, perRun))
    let runs = (n + run - 1) / run
    parallelFor(runs * g.channels, grain: Swift.max(1, 16_384 / Swift.max(run * g.kernelArea * g.outPixels, 1))) { s, e in
        for unit in s..<e {
            let (c, r) = unit.quotientAndRemainder(dividingBy: runs)
            body(c, r * run, Swift.min(run, n - r * run))
        }
    }
}

/// col (patchSize, n·outPixels) ← im2col of `n` images (n, C, H, W) starting at `images`.
/// Image i of the chunk fills columns i·outPixels ..< (i+1)·outPixels.
func im2colChunk(_ images: UnsafePointer<Float>, _ col: UnsafeMutablePointer<Float>, _ g: WindowGeometry, images n: Int) {
    let ld = n * g.outPixels
    let src = SendablePointer(images), dst = SendablePointer(col)
    let fit = planesPerStackCopy(g, padded: true)
    forEachChannelRun(g, images: n, perRun: Swift.max(fit, 1)) { c, i0, count in
        let img = src.p + (i0 * g.channels + c) * g.inPixels, col = dst.p + c * g.kernelArea * ld + i0 * g.outPixels
        // Zero-padded copies of the planes remove all bounds logic; a plane too big for the copy
        // takes the row kernels (hoisted bounds pay off on rows >= 8 wide).
        if fit > 0, fk_im2col_planes_padded(img, count, g.channels * g.inPixels, col, g.height, g.width, g.kernelH, g.kernelW,
                                            g.strideH, g.strideW, g.padH, g.padW, g.outH, g.outW, ld) != 0 { return }
        let lower = g.outW >= 8 ? fk_im2col_rows : fk_im2col
        for i in 0..<count {
            lower(img + i * g.channels * g.inPixels, col + i * g.outPixels, 1, g.height, g.width, g.kernelH, g.kernelW,
                  g.strideH, g.strideW, g.padH, g.padW, g.outH, g.outW, ld)
        }
    }
}

/// `n` images (n, C, H, W) at `images` ← col2im of col (patchSize, n·outPixels).
/// Each plane starts at `initial[c]` (a bias) or 0, so no separate zeroing or bias pass is needed.
func col2imChunk(_ col: UnsafePointer<Float>, _ images: UnsafeMutablePointer<Float>, _ g: WindowGeometry, images n: Int,
                 initial: UnsafePointer<Float>?) {
    let ld = n * g.outPixels
    let src = SendablePointer(col), dst = SendablePointer(images), bias = initial.map { SendablePointer($0) }
    let fit = g.strideW == 2 ? planesPerStackCopy(g, padded: false) : 0
    forEachChannelRun(g, images: n, perRun: Swift.max(fit, 1)) { c, i0, count in
        let img = dst.p + (i0 * g.channels + c) * g.inPixels, source = src.p + c * g.kernelArea * ld + i0 * g.outPixels
        let start = bias?.p[c] ?? 0
        if fit > 0, fk_col2im_planes_s2(source, img, count, g.channels * g.inPixels, start, g.height, g.width, g.kernelH,
                                        g.kernelW, g.strideH, g.padH, g.padW, g.outH, g.outW, ld) != 0 { return }
        let fold = g.outW >= 8 ? fk_col2im_rows : fk_col2im
        for i in 0..<count {
            let plane = img + i * g.channels * g.inPixels
            plane.update(repeating: start, count: g.inPixels)
            fold(source + i * g.outPixels, plane, 1, g.height, g.width, g.kernelH, g.kernelW, g.strideH, g.strideW,
                 g.padH, g.padW, g.outH, g.outW, ld)
        }
    }
}

/// dst (rows, n·pixels) ← src (n, rows, pixels): puts a chunk of NCHW images side by side as GEMM columns.
func imagesToColumns(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, images n: Int, rows: Int, pixels: Int) {
    let s = SendablePointer(src), d = SendablePointer(dst)
    parallelFor(n * rows, grain: Swift.max(1, 32_768 / Swift.max(pixels, 1))) { a, b in
        var r = a
        while r < b {   // one run of rows per image: contiguous in src, n·pixels apart in dst
            let (i, row) = r.quotientAndRemainder(dividingBy: rows)
            let count = Swift.min(b - r, rows - row)
            fk_copy_rows(s.p + r * pixels, pixels, d.p + row * n * pixels + i * pixels, n * pixels, count, pixels)
            r += count
        }
    }
}

/// dst (n, rows, pixels) ← src (rows, n·pixels) (+ bias[row]): the inverse of `imagesToColumns`.
func columnsToImages(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>, images n: Int, rows: Int, pixels: Int,
                     bias: UnsafePointer<Float>?) {
    let s = SendablePointer(src), d = SendablePointer(dst), b = bias.map { SendablePointer($0) }
    parallelFor(n * rows, grain: Swift.max(1, 32_768 / Swift.max(pixels, 1))) { lo, hi in
        for r in lo..<hi {
            let (i, row) = r.quotientAndRemainder(dividingBy: rows)
            let o = d.p + r * pixels, x = s.p + row * n * pixels + i * pixels
            if let b {
                let v = b.p[row]
                for j in 0..<pixels { o[j] = x[j] + v }
            } else {
                fk_copy_rows(x, pixels, o, pixels, 1, pixels)
            }
        }
    }
}

/// out[c] = Σ over images and pixels of t (B, C, pixels), in Double; parallel over channels (deterministic).
func channelSums(_ t: Tensor, batch: Int, channels: Int, pixels: Int) -> Tensor {
    let out = Tensor(uninitializedShape: [channels])
    let src = SendablePointer(t.pointer), dst = SendablePointer(out.mutablePointer)
    parallelFor(channels, grain: Swift.max(1, 65_536 / Swift.max(batch * pixels, 1))) { s, e in
        for c in s..<e {
            var sum = 0.0
            for b in 0..<batch { sum += fk_sum(src.p + (b * channels + c) * pixels, pixels) }
            dst.p[c] = Float(sum)
        }
    }
    return out
}

// MARK: - Forge's own GEMM on views (implicit im2col)

/// The six products a conv / convT layer runs, for the per-product backend choice.
enum ConvProduct {
    case convForward, convInputGrad, convWeightGrad, convTForward, convTInputGrad, convTWeightGrad
}

/// Whether `product` (C (m × n) = A (m × k) · B (k × n)) runs on Forge's own GEMM (`ConvGEMM`).
///
/// The auto table comes from `FORGE_THREADS=1 forge bench core --only conv --cpu-time` on the AMD EPYC
/// (Zen 4, AVX-512) beside other agents' load, 2026-12-01 (GF/s, OpenBLAS path vs own):
/// - conv forward: own where K < 256, i.e. few input channels (D 3→64, K = 48: 34.9 vs 65.9). Elsewhere own
///   forward is faster alone (D 64→128: 67 vs 80, D 128→256: 79 vs 83) but keeps no im2col for the
///   weight gradient, and the whole layer measured no faster (D 128→256 fwd+dX+dW: 77.6 blas, 70.9 with it);
/// - conv input and weight gradients: OpenBLAS (dX ties or loses, 40 vs 36 … 71 vs 65; dW on forward's
///   kept columns 50–91 vs 34–82);
/// - convT forward: own (66 vs 65 … 33 vs 37); convT input gradient own where m = Cin ≤ 128 (64 vs 74,
///   28 vs 50; Cin 256, 512: 89 vs 84, 78 vs 68); convT weight gradient own (77 vs 81, 63 vs 85, 67 vs 65, 30 vs 37).
func convUsesOwnGEMM(_ product: ConvProduct, m: Int, n: Int, k: Int) -> Bool {
    switch ConvGEMM.current {
    case .blas: return false
    case .own: return true
    case .auto:
        switch product {
        case .convForward: return k < 256
        case .convInputGrad, .convWeightGrad: return false
        case .convTForward, .convTWeightGrad: return true
        case .convTInputGrad: return m <= 128
        }
    }
}

extension WindowGeometry {
    /// The im2col of images (n, channels, height, width) at `images` as a GEMM operand view
    /// (rows (c, kh, kw), columns (image, oh, ow)), transposed when `transposed`.
    func im2colView(_ images: UnsafePointer<Float>, transposed: Bool) -> fk_view {
        fk_view_im2col(images, channels, height, width, kernelH, kernelW, strideH, strideW, padH, padW, outH, outW,
                       transposed ? 1 : 0)
    }
}

/// NCHW images (n, rows, pixels) at `p` as the (rows, n·pixels) matrix of GEMM columns, transposed when asked.
@inline(__always)
func imagesView(_ p: UnsafePointer<Float>, rows: Int, pixels: Int, transposed: Bool = false) -> fk_view {
    fk_view_images(p, pixels, rows * pixels, transposed ? 1 : 0)
}

/// A row-major (rows, ld) matrix as a GEMM operand, transposed when asked.
@inline(__always)
func matrixView(_ p: UnsafePointer<Float>, ld: Int, transposed: Bool = false) -> fk_view {
    fk_view_matrix(p, ld, transposed ? 1 : 0)
}

/// A GEMM output written as NCHW images (n, rows, pixels) (+ bias per row), or as a row-major matrix.
@inline(__always)
func imagesOutput(_ p: UnsafeMutablePointer<Float>, rows: Int, pixels: Int, bias: UnsafePointer<Float>? = nil) -> fk_out {
    fk_out(p: p, ld: 0, pixels: pixels, image_stride: rows * pixels, row_bias: bias)
}
@inline(__always)
func matrixOutput(_ p: UnsafeMutablePointer<Float>, ld: Int) -> fk_out {
    fk_out(p: p, ld: ld, pixels: 0, image_stride: 0, row_bias: nil)
}

// MARK: - conv2d

/// 2-D convolution (`torch.nn.functional.conv2d`, no dilation or groups).
/// - x: (B, Cin, H, W); weight: (Cout, Cin, KH, KW); bias: (Cout).
/// - Returns (B, Cout, OH, OW) with OH = (H + 2·padH − KH) / strideH + 1 (floor), likewise OW.
/// Differentiable in x, weight and bias.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil,
                   stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0)) -> Tensor {
    conv2dChecked(x, weight: weight, bias: bias, stride: stride, padding: padding, op: "conv2d")
}

/// `conv2d` with the same stride and padding on both axes.
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int, padding: Int = 0) -> Tensor {
    conv2d(x, weight: weight, bias: bias, stride: (stride, stride), padding: (padding, padding))
}

private func conv2dChecked(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int), padding: (Int, Int), op: String) -> Tensor {
    convPrecondition(x.rank == 4, "\(op): input must be (B, Cin, H, W), got \(x.shape) (weight \(weight.shape))")
    convPrecondition(weight.rank == 4, "\(op): weight must be (Cout, Cin, KH, KW), got \(weight.shape) (input \(x.shape))")
    let (B, Cin, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (Cout, KH, KW) = (weight.shape[0], weight.shape[2], weight.shape[3])
    convPrecondition(weight.shape[1] == Cin, "\(op): input \(x.shape) has \(Cin) channels but weight \(weight.shape) expects \(weight.shape[1])")
    if let bias { convPrecondition(bias.shape == [Cout], "\(op): bias \(bias.shape) does not match weight \(weight.shape) (needs [\(Cout)])") }
    convPrecondition(stride.0 >= 1 && stride.1 >= 1 && padding.0 >= 0 && padding.1 >= 0,
                 "\(op): stride \(stride) must be >= 1 and padding \(padding) >= 0")
    convPrecondition(KH >= 1 && KW >= 1 && H + 2 * padding.0 >= KH && W + 2 * padding.1 >= KW,
                 "\(op): kernel \(KH)×\(KW) of weight \(weight.shape) is larger than the padded input \(x.shape) (padding \(padding))")
    let g = WindowGeometry(channels: Cin, height: H, width: W, kernelH: KH, kernelW: KW,
                           strideH: stride.0, strideW: stride.1, padH: padding.0, padW: padding.1,
                           outH: (H + 2 * padding.0 - KH) / stride.0 + 1, outW: (W + 2 * padding.1 - KW) / stride.1 + 1)
    if g.coversWholeImage { return conv2dWholeWindow(x, weight, bias, batch: B, outChannels: Cout, patch: g.patchSize) }
    return conv2dForward(x, weight, bias, g, batch: B, outChannels: Cout)
}

/// Upper bound (floats) on the im2col of a whole batch that conv2d keeps from forward for the weight
/// gradient (`FORGE_CONV_KEEP_FLOATS`, default 16M floats = 64 MB per layer). Keeping it saves
/// backward one full im2col per layer; past the bound backward lowers the input again.
let convKeptColumnBudget: Int = {
    if let s = ProcessInfo.processInfo.environment["FORGE_CONV_KEEP_FLOATS"], let n = Int(s), n >= 0 { return n }
    return 1 << 24
}()

// x: (B, Cin, H, W) -> y: (B, Cout, OH, OW)
private func conv2dForward(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ g: WindowGeometry, batch B: Int, outChannels Cout: Int) -> Tensor {
    let K = g.patchSize, P = g.outPixels
    let y = Tensor(uninitializedShape: [B, Cout, g.outH, g.outW])
    if convUsesOwnGEMM(.convForward, m: Cout, n: B * P, k: K) {
        // y (B, Cout, P) = W (Cout, K) · im2col(x) (K, B·P) + bias: the gather runs inside the GEMM's packing
        viewGEMM(matrixView(weight.pointer, ld: K), g.im2colView(x.pointer, transposed: false),
                 imagesOutput(y.mutablePointer, rows: Cout, pixels: P, bias: bias?.pointer), m: Cout, n: B * P, k: K)
        return recordConv2d(y, x, weight, bias, g, batch: B, outChannels: Cout, keptColumns: nil)
    }
    let chunk = imagesPerChunk(batch: B, floatsPerImage: K * P)
    // When the weight gradient will be needed and the batch's columns fit the budget, lower every
    // chunk into its own block of one buffer and keep it for backward (chunk at b0 starts at K·b0·P).
    let keep = Tensor.needsGrad(weight) && K * P * B <= convKeptColumnBudget
    let col = Tensor(uninitializedShape: [K * (keep ? B : chunk) * P])  // (K, n·P) per chunk
    let yCols = chunk > 1 ? Tensor(uninitializedShape: [Cout * chunk * P]) : nil  // (Cout, n·P)
    for b0 in stride(from: 0, to: B, by: chunk) {
        let n = Swift.min(chunk, B - b0)
        let colChunk = col.mutablePointer + (keep ? K * b0 * P : 0)
        im2colChunk(x.pointer + b0 * g.channels * g.inPixels, colChunk, g, images: n)
        let yChunk = y.mutablePointer + b0 * Cout * P
        if let yCols {
            // yCols (Cout, n·P) = W (Cout, K) · col (K, n·P), then back to (n, Cout, P) adding the bias
            sgemm(transA: false, transB: false, m: Cout, n: n * P, k: K, a: weight.pointer, lda: K,
                  b: colChunk, ldb: n * P, c: yCols.mutablePointer, ldc: n * P)
            columnsToImages(yCols.pointer, yChunk, images: n, rows: Cout, pixels: P, bias: bias?.pointer)
        } else {
            // one image per chunk: the GEMM writes (Cout, P) straight into y
            sgemm(transA: false, transB: false, m: Cout, n: P, k: K, a: weight.pointer, lda: K,
                  b: colChunk, ldb: P, c: yChunk, ldc: P)
            if let bias { addChannelBias(yChunk, bias.pointer, channels: Cout, pixels: P) }
        }
    }
    return recordConv2d(y, x, weight, bias, g, batch: B, outChannels: Cout, keptColumns: keep ? col : nil)
}

private func recordConv2d(_ y: Tensor, _ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ g: WindowGeometry, batch B: Int,
                          outChannels Cout: Int, keptColumns: Tensor?) -> Tensor {
    let P = g.outPixels
    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    return Tensor.record(y, "conv2d", inputs) { dy in
        // dy: (B, Cout, OH, OW)
        let (dx, dw) = conv2dBackward(x, weight, dy, g, batch: B, outChannels: Cout,
                                      needInput: x.requiresGrad, needWeight: weight.requiresGrad, keptColumns: keptColumns)
        var grads: [Tensor?] = [dx, dw]
        if let bias { grads.append(bias.requiresGrad ? channelSums(dy, batch: B, channels: Cout, pixels: P) : nil) }
        return grads
    }
}

// dy: (B, Cout, OH, OW) -> dx: (B, Cin, H, W) = col2im(Wᵀ·dY), dW: (Cout, Cin, KH, KW) = dY·colᵀ
// keptColumns: forward's im2col of the whole batch, (K, n·P) per chunk, or nil to lower x again.
private func conv2dBackward(_ x: Tensor, _ weight: Tensor, _ dy: Tensor, _ g: WindowGeometry, batch B: Int, outChannels Cout: Int,
                            needInput: Bool, needWeight: Bool, keptColumns: Tensor?) -> (Tensor?, Tensor?) {
    let K = g.patchSize, P = g.outPixels
    let dx = needInput ? Tensor(uninitializedShape: x.shape) : nil
    let dw = needWeight ? Tensor(uninitializedShape: weight.shape) : nil
    if !needInput && !needWeight { return (nil, nil) }
    var dwDone = false, dxDone = false
    if let dw, keptColumns == nil, convUsesOwnGEMM(.convWeightGrad, m: Cout, n: K, k: B * P) {
        // dW (Cout, K) = dY (Cout, B·P) · im2col(x)ᵀ (B·P, K), both read in place
        viewGEMM(imagesView(dy.pointer, rows: Cout, pixels: P), g.im2colView(x.pointer, transposed: true),
                 matrixOutput(dw.mutablePointer, ld: K), m: Cout, n: K, k: B * P)
        dwDone = true
    }
    let chunk = imagesPerChunk(batch: B, floatsPerImage: K * P)
    if let dx, convUsesOwnGEMM(.convInputGrad, m: K, n: chunk * P, k: Cout) {
        // per chunk: dcol (K, n·P) = Wᵀ (K, Cout) · dY (Cout, n·P) read in place, folded back onto the images
        let col = Tensor(uninitializedShape: [K * chunk * P])
        for b0 in stride(from: 0, to: B, by: chunk) {
            let n = Swift.min(chunk, B - b0)
            viewGEMM(matrixView(weight.pointer, ld: K, transposed: true), imagesView(dy.pointer + b0 * Cout * P, rows: Cout, pixels: P),
                     matrixOutput(col.mutablePointer, ld: n * P), m: K, n: n * P, k: Cout)
            col2imChunk(col.pointer, dx.mutablePointer + b0 * g.channels * g.inPixels, g, images: n, initial: nil)
        }
        dxDone = true
    }
    if (dw == nil || dwDone) && (dx == nil || dxDone) { return (dx, dw) }
    let dwRest = dwDone ? nil : dw, dxRest = dxDone ? nil : dx
    let col = Tensor(uninitializedShape: [K * chunk * P])                            // (K, n·P)
    let dyCols = chunk > 1 ? Tensor(uninitializedShape: [Cout * chunk * P]) : nil     // (Cout, n·P)
    for b0 in stride(from: 0, to: B, by: chunk) {
        let n = Swift.min(chunk, B - b0)
        // dY of this chunk as GEMM columns (Cout, n·P); a single image already is that matrix
        let dyChunk: UnsafePointer<Float>
        if let dyCols {
            imagesToColumns(dy.pointer + b0 * Cout * P, dyCols.mutablePointer, images: n, rows: Cout, pixels: P)
            dyChunk = dyCols.pointer
        } else {
            dyChunk = dy.pointer + b0 * Cout * P
        }
        if let dw = dwRest {
            // dW (Cout, K) += dY (Cout, n·P) · colᵀ (n·P, K); the first chunk overwrites
            let xCols: UnsafePointer<Float>
            if let keptColumns {
                xCols = keptColumns.pointer + K * b0 * P
            } else {
                im2colChunk(x.pointer + b0 * g.channels * g.inPixels, col.mutablePointer, g, images: n)
                xCols = col.pointer
            }
            sgemm(transA: false, transB: true, m: Cout, n: K, k: n * P, a: dyChunk, lda: n * P,
                  b: xCols, ldb: n * P, beta: b0 == 0 ? 0 : 1, c: dw.mutablePointer, ldc: K)
        }
        if let dx = dxRest {
            // dcol (K, n·P) = Wᵀ (K, Cout) · dY (Cout, n·P), folded back onto the input images
            sgemm(transA: true, transB: false, m: K, n: n * P, k: Cout, a: weight.pointer, lda: K,
                  b: dyChunk, ldb: n * P, c: col.mutablePointer, ldc: n * P)
            col2imChunk(col.pointer, dx.mutablePointer + b0 * g.channels * g.inPixels, g, images: n, initial: nil)
        }
    }
    return (dx, dw)
}

// MARK: - whole-window convolutions (plain GEMMs)

// x: (B, Cin, KH, KW) seen as X (B, K) -> y: (B, Cout, 1, 1) = X · Wᵀ, W (Cout, K); K = Cin·KH·KW
private func conv2dWholeWindow(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, batch B: Int, outChannels Cout: Int,
                               patch K: Int) -> Tensor {
    wholeWindowGEMM(x, weight, bias, outputShape: [B, Cout, 1, 1], inner: K, outer: Cout, weightIsOuterByInner: true,
                    pixels: 1, name: "conv2d")
}

// x: (B, Cin, 1, 1) seen as X (B, Cin) -> y: (B, Cout, KH, KW) = X · W, W (Cin, Kc); Kc = Cout·KH·KW
private func convTranspose2dWholeWindow(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ g: WindowGeometry,
                                        batch B: Int, inChannels Cin: Int) -> Tensor {
    wholeWindowGEMM(x, weight, bias, outputShape: [B, g.channels, g.height, g.width], inner: Cin, outer: g.patchSize,
                    weightIsOuterByInner: false, pixels: g.inPixels, name: "conv_transpose2d")
}

/// y (B, N) = X (B, K) · op(W), op(W) (K, N): W is stored (N, K) when `weightIsOuterByInner` (a conv's
/// (Cout, Cin·KH·KW)), else (K, N) (a convT's (Cin, Cout·KH·KW)); the bias adds per channel over
/// `pixels` consecutive outputs. Backward: dX = dY · op(W)ᵀ, dW = dYᵀ·X or Xᵀ·dY in W's layout.
private func wholeWindowGEMM(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, outputShape: [Int], inner K: Int, outer N: Int,
                             weightIsOuterByInner wT: Bool, pixels: Int, name: String) -> Tensor {
    let B = x.shape[0], channels = N / pixels
    let y = Tensor(uninitializedShape: outputShape)
    sgemm(transA: false, transB: wT, m: B, n: N, k: K, a: x.pointer, lda: K, b: weight.pointer, ldb: wT ? K : N,
          c: y.mutablePointer, ldc: N)
    if let bias { for i in 0..<B { addChannelBias(y.mutablePointer + i * N, bias.pointer, channels: channels, pixels: pixels) } }
    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    return Tensor.record(y, name, inputs) { dy in
        // dy: (B, N)
        var dx: Tensor?, dw: Tensor?
        if x.requiresGrad {
            dx = Tensor(uninitializedShape: x.shape)   // (B, K) = dY · op(W)ᵀ
            sgemm(transA: false, transB: !wT, m: B, n: K, k: N, a: dy.pointer, lda: N, b: weight.pointer, ldb: wT ? K : N,
                  c: dx!.mutablePointer, ldc: K)
        }
        if weight.requiresGrad {
            dw = Tensor(uninitializedShape: weight.shape)
            if wT {   // (N, K) = dYᵀ · X
                sgemm(transA: true, transB: false, m: N, n: K, k: B, a: dy.pointer, lda: N, b: x.pointer, ldb: K,
                      c: dw!.mutablePointer, ldc: K)
            } else {  // (K, N) = Xᵀ · dY
                sgemm(transA: true, transB: false, m: K, n: N, k: B, a: x.pointer, lda: K, b: dy.pointer, ldb: N,
                      c: dw!.mutablePointer, ldc: N)
            }
        }
        var grads: [Tensor?] = [dx, dw]
        if let bias { grads.append(bias.requiresGrad ? channelSums(dy, batch: B, channels: channels, pixels: pixels) : nil) }
        return grads
    }
}

/// y (C, pixels) += bias[c] per channel row.
private func addChannelBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, channels: Int, pixels: Int) {
    let py = SendablePointer(y), pb = SendablePointer(bias)
    parallelFor(channels, grain: Swift.max(1, 32_768 / Swift.max(pixels, 1))) { s, e in
        for c in s..<e {
            let v = pb.p[c], row = py.p + c * pixels
            for j in 0..<pixels { row[j] += v }
        }
    }
}

// MARK: - convTranspose2d

/// 2-D transposed convolution (`torch.nn.functional.conv_transpose2d`, no dilation or groups):
/// the data-gradient of `conv2d`, used to upsample.
/// - x: (B, Cin, H, W); weight: (Cin, Cout, KH, KW) (torch layout); bias: (Cout).
/// - Returns (B, Cout, OH, OW) with OH = (H − 1)·strideH − 2·padH + KH + outputPaddingH, likewise OW.
///   `outputPadding` must be smaller than `stride` (it picks one of the input sizes a strided conv maps to H).
/// Differentiable in x, weight and bias.
public func convTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: (Int, Int) = (1, 1),
                            padding: (Int, Int) = (0, 0), outputPadding: (Int, Int) = (0, 0)) -> Tensor {
    convTranspose2dChecked(x, weight: weight, bias: bias, stride: stride, padding: padding, outputPadding: outputPadding,
                           op: "convTranspose2d")
}

/// `convTranspose2d` with the same stride, padding and output padding on both axes.
public func convTranspose2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int, padding: Int = 0,
                            outputPadding: Int = 0) -> Tensor {
    convTranspose2d(x, weight: weight, bias: bias, stride: (stride, stride), padding: (padding, padding),
                    outputPadding: (outputPadding, outputPadding))
}

private func convTranspose2dChecked(_ x: Tensor, weight: Tensor, bias: Tensor?, stride: (Int, Int), padding: (Int, Int),
                                    outputPadding: (Int, Int), op: String) -> Tensor {
    convPrecondition(x.rank == 4, "\(op): input must be (B, Cin, H, W), got \(x.shape) (weight \(weight.shape))")
    convPrecondition(weight.rank == 4, "\(op): weight must be (Cin, Cout, KH, KW), got \(weight.shape) (input \(x.shape))")
    let (B, Cin, H, W) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
    let (Cout, KH, KW) = (weight.shape[1], weight.shape[2], weight.shape[3])
    convPrecondition(weight.shape[0] == Cin, "\(op): input \(x.shape) has \(Cin) channels but weight \(weight.shape) expects \(weight.shape[0])")
    if let bias { convPrecondition(bias.shape == [Cout], "\(op): bias \(bias.shape) does not match weight \(weight.shape) (needs [\(Cout)])") }
    convPrecondition(stride.0 >= 1 && stride.1 >= 1 && padding.0 >= 0 && padding.1 >= 0,
                 "\(op): stride \(stride) must be >= 1 and padding \(padding) >= 0")
    convPrecondition(outputPadding.0 >= 0 && outputPadding.1 >= 0 && outputPadding.0 < stride.0 && outputPadding.1 < stride.1,
                 "\(op): outputPadding \(outputPadding) must be in 0 ..< stride \(stride)")
    let OH = (H - 1) * stride.0 - 2 * padding.0 + KH + outputPadding.0
    let OW = (W - 1) * stride.1 - 2 * padding.1 + KW + outputPadding.1
    convPrecondition(KH >= 1 && KW >= 1 && OH >= 1 && OW >= 1,
                 "\(op): input \(x.shape) with weight \(weight.shape), stride \(stride), padding \(padding) gives an empty output \(OH)×\(OW)")
    // The window geometry of the conv2d this op is the gradient of: it maps the output (Cout, OH, OW) to the input (H, W).
    let g = WindowGeometry(channels: Cout, height: OH, width: OW, kernelH: KH, kernelW: KW,
                           strideH: stride.0, strideW: stride.1, padH: padding.0, padW: padding.1, outH: H, outW: W)
    if g.coversWholeImage { return convTranspose2dWholeWindow(x, weight, bias, g, batch: B, inChannels: Cin) }
    return convTranspose2dForward(x, weight, bias, g, batch: B, inChannels: Cin)
}

// x: (B, Cin, H, W) -> y: (B, Cout, OH, OW) = col2im(Wᵀ·X)
private func convTranspose2dForward(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, _ g: WindowGeometry,
                                    batch B: Int, inChannels Cin: Int) -> Tensor {
    let K = g.patchSize, P = g.outPixels   // K = Cout·KH·KW, P = H·W (the input's pixels)
    let y = Tensor(uninitializedShape: [B, g.channels, g.height, g.width])
    let chunk = imagesPerChunk(batch: B, floatsPerImage: K * P)
    let col = Tensor(uninitializedShape: [K * chunk * P])                          // (K, n·P)
    let own = convUsesOwnGEMM(.convTForward, m: K, n: chunk * P, k: Cin)
    let xCols = chunk > 1 && !own ? Tensor(uninitializedShape: [Cin * chunk * P]) : nil     // (Cin, n·P)
    for b0 in stride(from: 0, to: B, by: chunk) where own {
        // col (K, n·P) = Wᵀ (K, Cin) · X (Cin, n·P) read in place, folded onto the output images (from the bias)
        let n = Swift.min(chunk, B - b0)
        viewGEMM(matrixView(weight.pointer, ld: K, transposed: true), imagesView(x.pointer + b0 * Cin * P, rows: Cin, pixels: P),
                 matrixOutput(col.mutablePointer, ld: n * P), m: K, n: n * P, k: Cin)
        col2imChunk(col.pointer, y.mutablePointer + b0 * g.channels * g.inPixels, g, images: n, initial: bias?.pointer)
    }
    for b0 in stride(from: 0, to: B, by: chunk) where !own {
        let n = Swift.min(chunk, B - b0)
        let xChunk: UnsafePointer<Float>
        if let xCols {
            imagesToColumns(x.pointer + b0 * Cin * P, xCols.mutablePointer, images: n, rows: Cin, pixels: P)
            xChunk = xCols.pointer
        } else {
            xChunk = x.pointer + b0 * Cin * P
        }
        // col (K, n·P) = Wᵀ (K, Cin) · X (Cin, n·P), folded onto the output images (starting from the bias)
        sgemm(transA: true, transB: false, m: K, n: n * P, k: Cin, a: weight.pointer, lda: K,
              b: xChunk, ldb: n * P, c: col.mutablePointer, ldc: n * P)
        col2imChunk(col.pointer, y.mutablePointer + b0 * g.channels * g.inPixels, g, images: n, initial: bias?.pointer)
    }
    var inputs = [x, weight]
    if let bias { inputs.append(bias) }
    return Tensor.record(y, "conv_transpose2d", inputs) { dy in
        // dy: (B, Cout, OH, OW)
        let (dx, dw) = convTranspose2dBackward(x, weight, dy, g, batch: B, inChannels: Cin,
                                               needInput: x.requiresGrad, needWeight: weight.requiresGrad)
        var grads: [Tensor?] = [dx, dw]
        if let bias { grads.append(bias.requiresGrad ? channelSums(dy, batch: B, channels: g.channels, pixels: g.inPixels) : nil) }
        return grads
    }
}

// dy: (B, Cout, OH, OW) -> dx: (B, Cin, H, W) = W·im2col(dY), dW: (Cin, Cout, KH, KW) = X·im2col(dY)ᵀ
private func convTranspose2dBackward(_ x: Tensor, _ weight: Tensor, _ dy: Tensor, _ g: WindowGeometry, batch B: Int, inChannels Cin: Int,
                                     needInput: Bool, needWeight: Bool) -> (Tensor?, Tensor?) {
    if !needInput && !needWeight { return (nil, nil) }
    let K = g.patchSize, P = g.outPixels
    let dx = needInput ? Tensor(uninitializedShape: x.shape) : nil
    let dw = needWeight ? Tensor(uninitializedShape: weight.shape) : nil
    let ownDX = dx != nil && convUsesOwnGEMM(.convTInputGrad, m: Cin, n: B * P, k: K)
    let ownDW = dw != nil && convUsesOwnGEMM(.convTWeightGrad, m: Cin, n: K, k: B * P)
    if let dx, ownDX {
        // dX (B, Cin, P) = W (Cin, K) · im2col(dY) (K, B·P), gathered while packing, written as images
        viewGEMM(matrixView(weight.pointer, ld: K), g.im2colView(dy.pointer, transposed: false),
                 imagesOutput(dx.mutablePointer, rows: Cin, pixels: P), m: Cin, n: B * P, k: K)
    }
    if let dw, ownDW {
        // dW (Cin, K) = X (Cin, B·P) · im2col(dY)ᵀ (B·P, K), both read in place
        viewGEMM(imagesView(x.pointer, rows: Cin, pixels: P), g.im2colView(dy.pointer, transposed: true),
                 matrixOutput(dw.mutablePointer, ld: K), m: Cin, n: K, k: B * P)
    }
    if (dx == nil || ownDX) && (dw == nil || ownDW) { return (dx, dw) }
    let dxRest = ownDX ? nil : dx, dwRest = ownDW ? nil : dw
    let chunk = imagesPerChunk(batch: B, floatsPerImage: K * P)
    let col = Tensor(uninitializedShape: [K * chunk * P])                                      // (K, n·P)
    let cols = chunk > 1 ? Tensor(uninitializedShape: [Cin * chunk * P]) : nil                  // (Cin, n·P)
    for b0 in stride(from: 0, to: B, by: chunk) {
        let n = Swift.min(chunk, B - b0)
        // one im2col of dY serves both products
        im2colChunk(dy.pointer + b0 * g.channels * g.inPixels, col.mutablePointer, g, images: n)
        if let dx = dxRest {
            // dX (Cin, n·P) = W (Cin, K) · col (K, n·P)
            let dxChunk = dx.mutablePointer + b0 * Cin * P
            if let cols {
                sgemm(transA: false, transB: false, m: Cin, n: n * P, k: K, a: weight.pointer, lda: K,
                      b: col.pointer, ldb: n * P, c: cols.mutablePointer, ldc: n * P)
                columnsToImages(cols.pointer, dxChunk, images: n, rows: Cin, pixels: P, bias: nil)
            } else {
                sgemm(transA: false, transB: false, m: Cin, n: P, k: K, a: weight.pointer, lda: K,
                      b: col.pointer, ldb: P, c: dxChunk, ldc: P)
            }
        }
        if let dw = dwRest {
            // dW (Cin, K) += X (Cin, n·P) · colᵀ (n·P, K); the first chunk overwrites
            let xChunk: UnsafePointer<Float>
            if let cols {
                imagesToColumns(x.pointer + b0 * Cin * P, cols.mutablePointer, images: n, rows: Cin, pixels: P)
                xChunk = cols.pointer
            } else {
                xChunk = x.pointer + b0 * Cin * P
            }
            sgemm(transA: false, transB: true, m: Cin, n: K, k: n * P, a: xChunk, lda: n * P,
                  b: col.pointer, ldb: n * P, beta: b0 == 0 ? 0 : 1, c: dw.mutablePointer, ldc: K)
        }
    }
    return (dx, dw)
}

// MARK: - 1-D

/// 1-D convolution (`torch.nn.functional.conv1d`): x (B, Cin, L), weight (Cout, Cin, K), bias (Cout)
/// -> (B, Cout, (L + 2·padding − K) / stride + 1). Runs as `conv2d` on a height-1 image (same kernels).
public func conv1d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0) -> Tensor {
    convPrecondition(x.rank == 3, "conv1d: input must be (B, Cin, L), got \(x.shape) (weight \(weight.shape))")
    convPrecondition(weight.rank == 3, "conv1d: weight must be (Cout, Cin, K), got \(weight.shape) (input \(x.shape))")
    convPrecondition(weight.shape[1] == x.shape[1], "conv1d: input \(x.shape) has \(x.shape[1]) channels but weight \(weight.shape) expects \(weight.shape[1])")
    let x4 = x.reshaped([x.shape[0], x.shape[1], 1, x.shape[2]])
    let w4 = weight.reshaped([weight.shape[0], weight.shape[1], 1, weight.shape[2]])
    let y = conv2dChecked(x4, weight: w4, bias: bias, stride: (1, stride), padding: (0, padding), op: "conv1d")
    return y.reshaped([y.shape[0], y.shape[1], y.shape[3]])
}

/// 1-D transposed convolution (`torch.nn.functional.conv_transpose1d`): x (B, Cin, L), weight (Cin, Cout, K),
/// bias (Cout) -> (B, Cout, (L − 1)·stride − 2·padding + K + outputPadding). Runs as `convTranspose2d` with height 1.
public func convTranspose1d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int = 0,
                            outputPadding: Int = 0) -> Tensor {
    convPrecondition(x.rank == 3, "convTranspose1d: input must be (B, Cin, L), got \(x.shape) (weight \(weight.shape))")
    convPrecondition(weight.rank == 3, "convTranspose1d: weight must be (Cin, Cout, K), got \(weight.shape) (input \(x.shape))")
    convPrecondition(weight.shape[0] == x.shape[1], "convTranspose1d: input \(x.shape) has \(x.shape[1]) channels but weight \(weight.shape) expects \(weight.shape[0])")
    let x4 = x.reshaped([x.shape[0], x.shape[1], 1, x.shape[2]])
    let w4 = weight.reshaped([weight.shape[0], weight.shape[1], 1, weight.shape[2]])
    let y = convTranspose2dChecked(x4, weight: w4, bias: bias, stride: (1, stride), padding: (0, padding),
                                   outputPadding: (0, outputPadding), op: "convTranspose1d")
    return y.reshaped([y.shape[0], y.shape[1], y.shape[3]])
}
