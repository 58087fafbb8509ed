import Foundation

// 2-D pooling over NCHW inputs. Each (image, channel) plane is independent, so both passes run
// parallel over planes and every thread writes its own planes (deterministic, no atomics).

/// Output geometry of a pooling window (no dilation, floor mode like torch's default).
private func poolGeometry(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int), op: String) -> WindowGeometry {
    convPrecondition(x.rank == 4, "\(op): input must be (B, C, H, W), got \(x.shape)")
    convPrecondition(kernel.0 >= 1 && kernel.1 >= 1 && stride.0 >= 1 && stride.1 >= 1,
                 "\(op): kernel \(kernel) and stride \(stride) must be >= 1 (input \(x.shape))")
    // torch's rule: the padding must be at most half the window, so every window sees a real pixel.
    convPrecondition(padding.0 >= 0 && padding.1 >= 0 && 2 * padding.0 <= kernel.0 && 2 * padding.1 <= kernel.1,
                 "\(op): padding \(padding) must be in 0 ... kernel/2 for kernel \(kernel) (input \(x.shape))")
    let (H, W) = (x.shape[2], x.shape[3])
    convPrecondition(H + 2 * padding.0 >= kernel.0 && W + 2 * padding.1 >= kernel.1,
                 "\(op): kernel \(kernel) is larger than the padded input \(x.shape) (padding \(padding))")
    return WindowGeometry(channels: x.shape[0] * x.shape[1], height: H, width: W, kernelH: kernel.0, kernelW: kernel.1,
                          strideH: stride.0, strideW: stride.1, padH: padding.0, padW: padding.1,
                          outH: (H + 2 * padding.0 - kernel.0) / stride.0 + 1, outW: (W + 2 * padding.1 - kernel.1) / stride.1 + 1)
}

// MARK: - max pool

/// Max pooling (`torch.nn.functional.max_pool2d`): x (B, C, H, W) -> (B, C, OH, OW),
/// OH = (H + 2·padH − KH) / strideH + 1. `stride` defaults to the kernel size; padding counts as −∞.
/// NaN wins like in torch. The gradient goes to the (first) maximum of each window.
public func maxPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0)) -> Tensor {
    let g = poolGeometry(x, kernel: kernel, stride: stride ?? kernel, padding: padding, op: "maxPool2d")
    let planes = g.channels, P = g.outPixels
    let y = Tensor(uninitializedShape: [x.shape[0], x.shape[1], g.outH, g.outW])
    // argmax[plane·P + o] = index within the input plane (h·W + w) of the window's maximum
    var argmax = [Int32](repeating: 0, count: planes * P)
    let px = SendablePointer(x.pointer), py = SendablePointer(y.mutablePointer)
    argmax.withUnsafeMutableBufferPointer { ab in
        let pa = SendablePointer(ab.baseAddress!)
        parallelFor(planes, grain: Swift.max(1, 16_384 / Swift.max(P * g.kernelArea, 1))) { s, e in
            for plane in s..<e {
                let src = px.p + plane * g.inPixels
                for oh in 0..<g.outH {
                    let h0 = oh * g.strideH - g.padH
                    for ow in 0..<g.outW {
                        let w0 = ow * g.strideW - g.padW
                        var best = -Float.infinity, bestIndex = -1
                        for h in Swift.max(h0, 0)..<Swift.min(h0 + g.kernelH, g.height) {
                            for w in Swift.max(w0, 0)..<Swift.min(w0 + g.kernelW, g.width) {
                                let v = src[h * g.width + w]
                                if v > best || v.isNaN || bestIndex < 0 {
                                    best = v; bestIndex = h * g.width + w
                                    if v.isNaN { break }
                                }
                            }
                            if best.isNaN { break }
                        }
                        let o = plane * P + oh * g.outW + ow
                        py.p[o] = best
                        pa.p[o] = Int32(bestIndex)
                    }
                }
            }
        }
    }
    let inPixels = g.inPixels
    return Tensor.record(y, "max_pool2d", [x]) { dy in
        // dy: (B, C, OH, OW) -> dx: (B, C, H, W), each window's gradient added at its argmax
        let dx = Tensor(uninitializedShape: x.shape)
        let pd = SendablePointer(dx.mutablePointer), pg = SendablePointer(dy.pointer)
        argmax.withUnsafeBufferPointer { ab in
            let pa = SendablePointer(ab.baseAddress!)
            parallelFor(planes, grain: Swift.max(1, 16_384 / Swift.max(P + inPixels, 1))) { s, e in
                for plane in s..<e {
                    let d = pd.p + plane * inPixels
                    d.update(repeating: 0, count: inPixels)
                    for o in 0..<P { d[Int(pa.p[plane * P + o])] += pg.p[plane * P + o] }
                }
            }
        }
        return [dx]
    }
}

/// `maxPool2d` with square kernel, stride (default: the kernel) and padding.
public func maxPool2d(_ x: Tensor, kernel: Int, stride: Int? = nil, padding: Int = 0) -> Tensor {
    maxPool2d(x, kernel: (kernel, kernel), stride: (stride ?? kernel, stride ?? kernel), padding: (padding, padding))
}

// MARK: - average pool

/// Average pooling (`torch.nn.functional.avg_pool2d` with count_include_pad=True): x (B, C, H, W) ->
/// (B, C, OH, OW); each output is the window's sum divided by KH·KW, zero padding included.
/// `stride` defaults to the kernel size.
public func avgPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil, padding: (Int, Int) = (0, 0)) -> Tensor {
    let g = poolGeometry(x, kernel: kernel, stride: stride ?? kernel, padding: padding, op: "avgPool2d")
    let planes = g.channels, P = g.outPixels
    let scale = 1 / Float(g.kernelArea)
    let y = Tensor(uninitializedShape: [x.shape[0], x.shape[1], g.outH, g.outW])
    let px = SendablePointer(x.pointer), py = SendablePointer(y.mutablePointer)
    let grain = Swift.max(1, 16_384 / Swift.max(P * g.kernelArea, 1))
    parallelFor(planes, grain: grain) { s, e in
        for plane in s..<e {
            let src = px.p + plane * g.inPixels
            for oh in 0..<g.outH {
                let h0 = oh * g.strideH - g.padH
                for ow in 0..<g.outW {
                    let w0 = ow * g.strideW - g.padW
                    var sum: Float = 0
                    for h in Swift.max(h0, 0)..<Swift.min(h0 + g.kernelH, g.height) {
                        for w in Swift.max(w0, 0)..<Swift.min(w0 + g.kernelW, g.width) { sum += src[h * g.width + w] }
                    }
                    py.p[plane * P + oh * g.outW + ow] = sum * scale
                }
            }
        }
    }
    return Tensor.record(y, "avg_pool2d", [x]) { dy in
        // dy: (B, C, OH, OW) -> dx: (B, C, H, W), each window spreads dy/(KH·KW) over its real pixels
        let dx = Tensor(uninitializedShape: x.shape)
        let pd = SendablePointer(dx.mutablePointer), pg = SendablePointer(dy.pointer)
        parallelFor(planes, grain: grain) { s, e in
            for plane in s..<e {
                let d = pd.p + plane * g.inPixels
                d.update(repeating: 0, count: g.inPixels)
                for oh in 0..<g.outH {
                    let h0 = oh * g.strideH - g.padH
                    for ow in 0..<g.outW {
                        let w0 = ow * g.strideW - g.padW
                        let v = pg.p[plane * P + oh * g.outW + ow] * scale
                        for h in Swift.max(h0, 0)..<Swift.min(h0 + g.kernelH, g.height) {
                            for w in Swift.max(w0, 0)..<Swift.min(w0 + g.kernelW, g.width) { d[h * g.width + w] += v }
                        }
                    }
                }
            }
        }
        return [dx]
    }
}

/// `avgPool2d` with square kernel, stride (default: the kernel) and padding.
public func avgPool2d(_ x: Tensor, kernel: Int, stride: Int? = nil, padding: Int = 0) -> Tensor {
    avgPool2d(x, kernel: (kernel, kernel), stride: (stride ?? kernel, stride ?? kernel), padding: (padding, padding))
}
