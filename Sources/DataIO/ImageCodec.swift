import Foundation
import TensorCore
import CPNG
import CJPEG

/// How values of a tensor map to image intensities when writing.
public enum ImageValueRange: Sendable {
    /// 0 is black, 1 is white.
    case zeroToOne
    /// -1 is black, 1 is white (the range models train in).
    case minusOneToOne

    var closedRange: ClosedRange<Float> { self == .zeroToOne ? 0...1 : -1...1 }
}

/// PNG and JPEG decoding (through libpng and libjpeg-turbo C shims) and PNG encoding.
public enum ImageCodec {
    /// Largest image (width × height) decoded unless the caller says otherwise: 64 megapixels.
    public static let defaultPixelBudget = 64_000_000

    /// The file formats recognised by their first bytes.
    public enum Format: Sendable { case png, jpeg }

    /// The format of `bytes` by signature, or nil when neither PNG nor JPEG.
    public static func sniff(_ bytes: [UInt8]) -> Format? {
        if bytes.count >= 8 && bytes[0..<8].elementsEqual([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF { return .jpeg }
        return nil
    }

    /// Reads and decodes the PNG or JPEG file at `path` (format by content, not by extension).
    public static func load(path: String, pixelBudget: Int = defaultPixelBudget) throws -> PixelImage {
        try decode(bytes: FileIO.readBytes(path), source: path, pixelBudget: pixelBudget)
    }

    /// Decodes PNG or JPEG `bytes`; `source` names them in error messages.
    public static func decode(bytes: [UInt8], source: String = "<memory>", pixelBudget: Int = defaultPixelBudget) throws -> PixelImage {
        switch sniff(bytes) {
        case .png: return try decodePNG(bytes: bytes, source: source, pixelBudget: pixelBudget)
        case .jpeg: return try decodeJPEG(bytes: bytes, source: source, pixelBudget: pixelBudget)
        case nil: throw DataIOError.invalidImage(path: source, message: "neither a PNG nor a JPEG file (unrecognised signature)")
        }
    }

    /// Decodes a PNG of any colour type (gray, gray+alpha, RGB, RGBA, palette), any bit depth
    /// (1/2/4/8/16) and interlaced or not. Palette images become RGB (RGBA with transparency).
    public static func decodePNG(bytes: [UInt8], source: String = "<memory>", pixelBudget: Int = defaultPixelBudget) throws -> PixelImage {
        var decoded = forge_png_image()
        var message = [CChar](repeating: 0, count: 256)
        let status = bytes.withUnsafeBufferPointer { buffer in
            forge_png_decode(buffer.baseAddress, buffer.count, UInt64(max(0, pixelBudget)), &decoded, &message, message.count)
        }
        guard status == 0 else { throw codecError(message, bytes: bytes, source: source, pixelBudget: pixelBudget, format: .png) }
        defer { forge_png_free(decoded.pixels) }
        let width = Int(decoded.width), height = Int(decoded.height), channels = Int(decoded.channels)
        let count = width * height * channels
        var pixels = [Float](repeating: 0, count: count)
        pixels.withUnsafeMutableBufferPointer { out in
            if decoded.bit_depth == 16 {
                decoded.pixels.withMemoryRebound(to: UInt16.self, capacity: count) { samples in
                    for i in 0..<count { out[i] = Float(samples[i]) / 65535 }
                }
            } else {
                for i in 0..<count { out[i] = Float(decoded.pixels[i]) / 255 }
            }
        }
        return PixelImage(width: width, height: height, channels: channels, pixels: pixels)
    }

    /// Decodes a baseline or progressive JPEG to gray (grayscale files) or RGB (everything else).
    public static func decodeJPEG(bytes: [UInt8], source: String = "<memory>", pixelBudget: Int = defaultPixelBudget) throws -> PixelImage {
        var decoded = forge_jpeg_image()
        var message = [CChar](repeating: 0, count: 256)
        let status = bytes.withUnsafeBufferPointer { buffer in
            forge_jpeg_decode(buffer.baseAddress, buffer.count, UInt64(max(0, pixelBudget)), &decoded, &message, message.count)
        }
        guard status == 0 else { throw codecError(message, bytes: bytes, source: source, pixelBudget: pixelBudget, format: .jpeg) }
        defer { forge_jpeg_free(decoded.pixels) }
        let width = Int(decoded.width), height = Int(decoded.height), channels = Int(decoded.channels)
        let count = width * height * channels
        var pixels = [Float](repeating: 0, count: count)
        pixels.withUnsafeMutableBufferPointer { out in
            for i in 0..<count { out[i] = Float(decoded.pixels[i]) / 255 }
        }
        return PixelImage(width: width, height: height, channels: channels, pixels: pixels)
    }

    /// Width and height from the header only (nothing decoded).
    public static func dimensions(bytes: [UInt8], source: String = "<memory>") throws -> (width: Int, height: Int) {
        var width: UInt32 = 0, height: UInt32 = 0, channels: Int32 = 0, depth: Int32 = 0
        var message = [CChar](repeating: 0, count: 256)
        let status: Int32 = bytes.withUnsafeBufferPointer { buffer in
            switch sniff(bytes) {
            case .png: return forge_png_read_header(buffer.baseAddress, buffer.count, &width, &height, &channels, &depth, &message, message.count)
            case .jpeg: return forge_jpeg_read_header(buffer.baseAddress, buffer.count, &width, &height, &channels, &message, message.count)
            case nil: return -2
            }
        }
        if status == -2 { throw DataIOError.invalidImage(path: source, message: "neither a PNG nor a JPEG file (unrecognised signature)") }
        guard status == 0 else { throw DataIOError.invalidImage(path: source, message: messageString(message)) }
        return (Int(width), Int(height))
    }

    private static func messageString(_ message: [CChar]) -> String {
        let text = message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return text.isEmpty ? "decoder failed without a message" : text
    }

    /// Turns a shim failure into the precise error: a pixel-budget refusal becomes
    /// `.imageTooLarge` with the header's dimensions.
    private static func codecError(_ message: [CChar], bytes: [UInt8], source: String, pixelBudget: Int, format: Format) -> DataIOError {
        let text = messageString(message)
        if text.contains("exceeds the pixel budget") {
            // "image of W x H pixels exceeds …", written by the shims.
            let numbers = text.split(separator: " ").compactMap { Int($0) }
            if numbers.count >= 2 { return .imageTooLarge(path: source, width: numbers[0], height: numbers[1], budget: pixelBudget) }
        }
        return .invalidImage(path: source, message: (format == .png ? "PNG: " : "JPEG: ") + text)
    }

    // MARK: encoding

    /// The 8-bit PNG encoding of `image` (gray, gray+alpha, RGB or RGBA as it has 1–4 channels).
    /// Samples are rounded to the nearest of 256 levels.
    public static func encodePNG(_ image: PixelImage, compressionLevel: Int = 6) throws -> [UInt8] {
        guard image.width > 0 && image.height > 0 else {
            throw DataIOError.invalidArgument("encodePNG: image has no pixels (\(image.width)x\(image.height))")
        }
        let samples = image.pixels.map { UInt8((min(1, max(0, $0.isNaN ? 0 : $0)) * 255).rounded()) }
        var output: UnsafeMutablePointer<UInt8>?
        var length = 0
        var message = [CChar](repeating: 0, count: 256)
        let status = samples.withUnsafeBufferPointer { buffer in
            forge_png_encode(buffer.baseAddress, UInt32(image.width), UInt32(image.height), Int32(image.channels),
                             Int32(compressionLevel), &output, &length, &message, message.count)
        }
        guard status == 0, let output else { throw DataIOError.invalidImage(path: "<png encoder>", message: messageString(message)) }
        defer { forge_png_free(output) }
        return Array(UnsafeBufferPointer(start: output, count: length))
    }

    /// Writes `image` as an 8-bit PNG at `path` (atomically).
    public static func writePNG(_ image: PixelImage, to path: String) throws {
        do {
            try FileIO.writeAtomically(encodePNG(image), to: path)
        } catch let DataIOError.invalidImage(_, message) {
            throw DataIOError.invalidImage(path: path, message: message)
        }
    }

    /// Writes a `(C, H, W)` tensor (C = 1, 3 or 4) with values in `range` as an 8-bit PNG.
    public static func writePNG(_ tensor: Tensor, range: ImageValueRange = .zeroToOne, to path: String) throws {
        try writePNG(PixelImage(tensor: tensor, range: range.closedRange), to: path)
    }

    /// Tiles the N images of an `(N, C, H, W)` tensor (C = 1 or 3) into one grid image,
    /// `columns` per row, with `padding` pixels of `padValue` (in [0, 1]) around and between
    /// them — the layout of torchvision's `make_grid`/`save_image`.
    public static func gridImage(_ images: Tensor, range: ImageValueRange = .minusOneToOne, columns: Int = 8,
                                 padding: Int = 2, padValue: Float = 0) throws -> PixelImage {
        guard images.shape.count == 4, images.shape[0] > 0, [1, 3].contains(images.shape[1]) else {
            throw DataIOError.invalidArgument("gridImage: expected a non-empty (N, C, H, W) tensor with C = 1 or 3, got \(images.shape)")
        }
        guard columns > 0, padding >= 0 else { throw DataIOError.invalidArgument("gridImage: columns must be positive and padding not negative") }
        let (n, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let gridColumns = min(columns, n)
        let gridRows = (n + gridColumns - 1) / gridColumns
        let gridWidth = gridColumns * (w + padding) + padding
        let gridHeight = gridRows * (h + padding) + padding
        let lower = range.closedRange.lowerBound
        let scale = 1 / (range.closedRange.upperBound - lower)
        var pixels = [Float](repeating: padValue, count: gridWidth * gridHeight * c)
        let src = images.pointer
        for k in 0..<n {
            let left = padding + (k % gridColumns) * (w + padding)
            let top = padding + (k / gridColumns) * (h + padding)
            for ch in 0..<c {
                let plane = src + (k * c + ch) * h * w
                for y in 0..<h {
                    for x in 0..<w {
                        pixels[((top + y) * gridWidth + left + x) * c + ch] = min(1, max(0, (plane[y * w + x] - lower) * scale))
                    }
                }
            }
        }
        return PixelImage(width: gridWidth, height: gridHeight, channels: c, pixels: pixels)
    }

    /// Writes `gridImage(images, …)` as a PNG at `path`, like torchvision's `save_image`.
    public static func writeGrid(_ images: Tensor, range: ImageValueRange = .minusOneToOne, columns: Int = 8,
                                 padding: Int = 2, padValue: Float = 0, to path: String) throws {
        try writePNG(gridImage(images, range: range, columns: columns, padding: padding, padValue: padValue), to: path)
    }
}
