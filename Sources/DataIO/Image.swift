import Foundation
import TensorCore

/// A decoded image: `height × width × channels` interleaved samples in [0, 1], row-major.
/// Channels are 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA).
public struct PixelImage: Sendable, Equatable {
    /// Width in pixels.
    public let width: Int
    /// Height in pixels.
    public let height: Int
    /// Samples per pixel: 1 (gray), 2 (gray + alpha), 3 (RGB) or 4 (RGBA).
    public let channels: Int
    /// Samples in [0, 1], index `(y * width + x) * channels + c`.
    public var pixels: [Float]

    /// An image from interleaved `pixels` in [0, 1]; their count must be `width × height × channels`.
    public init(width: Int, height: Int, channels: Int, pixels: [Float]) {
        precondition(width >= 0 && height >= 0 && (1...4).contains(channels), "PixelImage: bad geometry \(width)x\(height)x\(channels)")
        precondition(pixels.count == width * height * channels, "PixelImage: \(pixels.count) samples do not fill \(width)x\(height)x\(channels)")
        self.width = width
        self.height = height
        self.channels = channels
        self.pixels = pixels
    }

    /// The sample at column `x`, row `y`, channel `c`.
    public subscript(x: Int, y: Int, c: Int) -> Float { pixels[(y * width + x) * channels + c] }

    /// The image as a `(channels, height, width)` tensor with values mapped from [0, 1] to
    /// `range` (e.g. -1...1 for models).
    public func tensor(range: ClosedRange<Float> = 0...1) -> Tensor {
        Tensor(shape: [channels, height, width]) { out in writeCHW(into: out.baseAddress!, range: range) }
    }

    /// Writes the image in (C, H, W) order to `destination`, mapped from [0, 1] to `range`.
    func writeCHW(into destination: UnsafeMutablePointer<Float>, range: ClosedRange<Float>) {
        let scale = range.upperBound - range.lowerBound
        let offset = range.lowerBound
        let plane = width * height
        pixels.withUnsafeBufferPointer { src in
            for c in 0..<channels {
                let out = destination + c * plane
                for i in 0..<plane { out[i] = src[i * channels + c] * scale + offset }
            }
        }
    }

    /// An image from a `(C, H, W)` (or `(H, W)` for gray) tensor whose values lie in `range`;
    /// values outside are clamped.
    public init(tensor: Tensor, range: ClosedRange<Float> = 0...1) throws {
        let shape = tensor.shape.count == 2 ? [1] + tensor.shape : tensor.shape
        guard shape.count == 3, (1...4).contains(shape[0]) else {
            throw DataIOError.invalidArgument("PixelImage(tensor:): expected shape (C, H, W) with C in 1...4, got \(tensor.shape)")
        }
        let (c, h, w) = (shape[0], shape[1], shape[2])
        let scale = 1 / (range.upperBound - range.lowerBound)
        var pixels = [Float](repeating: 0, count: c * h * w)
        let src = tensor.pointer
        for ch in 0..<c {
            for i in 0..<(h * w) {
                pixels[i * c + ch] = min(1, max(0, (src[ch * h * w + i] - range.lowerBound) * scale))
            }
        }
        self.init(width: w, height: h, channels: c, pixels: pixels)
    }

    // MARK: channel conversion

    /// The image with 1 (gray) or 3 (RGB) channels. Alpha is composited over white; RGB becomes
    /// gray with the ITU-R BT.601 luma weights (0.299, 0.587, 0.114), as PIL's `convert("L")`.
    public func converted(toChannels target: Int) -> PixelImage {
        precondition(target == 1 || target == 3, "converted(toChannels:): only 1 or 3 channels, got \(target)")
        if channels == target { return self }
        let n = width * height
        var out = [Float](repeating: 0, count: n * target)
        pixels.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for i in 0..<n {
                    let s = i * channels
                    var r: Float, g: Float, b: Float
                    switch channels {
                    case 1: r = src[s]; g = r; b = r
                    case 2:
                        let a = src[s + 1]
                        r = src[s] * a + (1 - a); g = r; b = r
                    case 3: r = src[s]; g = src[s + 1]; b = src[s + 2]
                    default:
                        let a = src[s + 3]
                        r = src[s] * a + (1 - a); g = src[s + 1] * a + (1 - a); b = src[s + 2] * a + (1 - a)
                    }
                    if target == 1 {
                        dst[i] = channels <= 2 ? r : 0.299 * r + 0.587 * g + 0.114 * b
                    } else {
                        dst[3 * i] = r; dst[3 * i + 1] = g; dst[3 * i + 2] = b
                    }
                }
            }
        }
        return PixelImage(width: width, height: height, channels: target, pixels: out)
    }

    // MARK: geometry

    /// The image resized to `newWidth × newHeight`. Each axis is resampled on its own: with area
    /// averaging (each output pixel is the coverage-weighted mean of the input pixels under it)
    /// where it shrinks, which avoids aliasing, and with bilinear interpolation (pixel centres
    /// aligned, edges clamped) where it grows or stays.
    public func resized(width newWidth: Int, height newHeight: Int) -> PixelImage {
        precondition(newWidth > 0 && newHeight > 0, "resized: size must be positive")
        if newWidth == width && newHeight == height { return self }
        let columns = Resampling.weights(from: width, to: newWidth)
        let rows = Resampling.weights(from: height, to: newHeight)
        // Horizontal pass: height × newWidth × channels.
        var horizontal = [Float](repeating: 0, count: height * newWidth * channels)
        pixels.withUnsafeBufferPointer { src in
            horizontal.withUnsafeMutableBufferPointer { dst in
                for y in 0..<height {
                    let srcRow = y * width * channels
                    let dstRow = y * newWidth * channels
                    for x in 0..<newWidth {
                        for (index, weight) in columns[x] {
                            for c in 0..<channels { dst[dstRow + x * channels + c] += weight * src[srcRow + index * channels + c] }
                        }
                    }
                }
            }
        }
        // Vertical pass: newHeight × newWidth × channels.
        let rowLength = newWidth * channels
        var out = [Float](repeating: 0, count: newHeight * rowLength)
        horizontal.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { dst in
                for y in 0..<newHeight {
                    for (index, weight) in rows[y] {
                        let s = index * rowLength
                        let d = y * rowLength
                        for i in 0..<rowLength { dst[d + i] += weight * src[s + i] }
                    }
                }
            }
        }
        return PixelImage(width: newWidth, height: newHeight, channels: channels, pixels: out)
    }

    /// The central `cropWidth × cropHeight` region (offsets rounded down, as torchvision's
    /// `CenterCrop` rounds).
    public func centerCropped(width cropWidth: Int, height cropHeight: Int) -> PixelImage {
        precondition(cropWidth <= width && cropHeight <= height && cropWidth > 0 && cropHeight > 0,
                     "centerCropped: \(cropWidth)x\(cropHeight) does not fit in \(width)x\(height)")
        if cropWidth == width && cropHeight == height { return self }
        let left = (width - cropWidth) / 2
        let top = (height - cropHeight) / 2
        var out = [Float]()
        out.reserveCapacity(cropWidth * cropHeight * channels)
        for y in top..<(top + cropHeight) {
            let start = (y * width + left) * channels
            out.append(contentsOf: pixels[start..<(start + cropWidth * channels)])
        }
        return PixelImage(width: cropWidth, height: cropHeight, channels: channels, pixels: out)
    }

    /// Resized so the short side is `size` (aspect ratio kept), then centre-cropped to
    /// `size × size`.
    public func resizedAndCropped(to size: Int) -> PixelImage {
        precondition(size > 0, "resizedAndCropped: size must be positive")
        let shortSide = min(width, height)
        let newWidth = width == shortSide ? size : max(size, Int((Double(width) * Double(size) / Double(shortSide)).rounded()))
        let newHeight = height == shortSide ? size : max(size, Int((Double(height) * Double(size) / Double(shortSide)).rounded()))
        return resized(width: newWidth, height: newHeight).centerCropped(width: size, height: size)
    }

    /// The image mirrored left to right.
    public func flippedHorizontally() -> PixelImage {
        var out = pixels
        for y in 0..<height {
            for x in 0..<width {
                let s = (y * width + x) * channels
                let d = (y * width + (width - 1 - x)) * channels
                for c in 0..<channels { out[d + c] = pixels[s + c] }
            }
        }
        return PixelImage(width: width, height: height, channels: channels, pixels: out)
    }
}

/// One-dimensional resampling weights shared by both axes of `PixelImage.resized`.
enum Resampling {
    /// For each output index, the input indices and weights (summing to 1) that make it.
    static func weights(from source: Int, to destination: Int) -> [[(Int, Float)]] {
        let scale = Double(source) / Double(destination)
        return (0..<destination).map { i in
            if destination < source {
                // Area: output pixel i covers input interval [i·scale, (i+1)·scale).
                let begin = Double(i) * scale
                let end = Double(i + 1) * scale
                var taps: [(Int, Float)] = []
                var j = Int(begin)
                while Double(j) < end && j < source {
                    let overlap = min(end, Double(j + 1)) - max(begin, Double(j))
                    if overlap > 0 { taps.append((j, Float(overlap / scale))) }
                    j += 1
                }
                return taps
            } else {
                // Bilinear with pixel centres aligned (align_corners = false), edges clamped.
                let x = max(0, min(Double(source - 1), (Double(i) + 0.5) * scale - 0.5))
                let left = Int(x)
                let right = min(source - 1, left + 1)
                let t = Float(x - Double(left))
                return right == left || t == 0 ? [(left, Float(1))] : [(left, 1 - t), (right, t)]
            }
        }
    }
}
