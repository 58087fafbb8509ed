import Foundation
import XCTest
import DataIO
import TensorCore

final class ImageCodecTests: XCTestCase {
    func testDecodesEveryPNGColourTypeAndDepth() throws {
        let expected = try loadJSON(fixtureURL("png/expected.json")) as! [String: [String: Any]]
        XCTAssertEqual(expected.count, 23)
        for (name, info) in expected.sorted(by: { $0.key < $1.key }) {
            let image = try ImageCodec.load(path: fixtureURL("png/\(name)").path)
            XCTAssertEqual(image.width, info["width"] as! Int, name)
            XCTAssertEqual(image.height, info["height"] as! Int, name)
            XCTAssertEqual(image.channels, info["channels"] as! Int, name)
            let maximum = Float(info["max"] as! Int)
            let samples = (info["samples"] as! [Int]).map { Float($0) / maximum }
            XCTAssertEqual(image.pixels.count, samples.count, name)
            let worst = zip(image.pixels, samples).map { abs($0 - $1) }.max() ?? 1
            XCTAssertLessThan(worst, 1e-6, "\(name): max difference \(worst)")
        }
    }

    func testPNGRoundTripsGrayRGBAndRGBA() throws {
        for channels in [1, 2, 3, 4] {
            let (w, h) = (13, 6)
            let pixels = (0..<(w * h * channels)).map { Float(($0 * 37) % 256) / 255 }
            let image = PixelImage(width: w, height: h, channels: channels, pixels: pixels)
            let decoded = try ImageCodec.decode(bytes: ImageCodec.encodePNG(image))
            XCTAssertEqual(decoded, image, "channels \(channels)")
        }
        // Through a file, from a tensor in [-1, 1].
        let folder = try makeTemporaryFolder(self)
        let path = folder.appendingPathComponent("t.png").path
        let tensor = Tensor(shape: [3, 2, 2], data: [-1, 1, 0, 0.5, -1, -1, 1, 1, 0, 0, 0, 0])
        try ImageCodec.writePNG(tensor, range: .minusOneToOne, to: path)
        let back = try ImageCodec.load(path: path)
        XCTAssertEqual(back.channels, 3)
        XCTAssertEqual(back[0, 0, 0], 0)
        XCTAssertEqual(back[1, 0, 0], 1)
        XCTAssertEqual(back[0, 1, 0], 128.0 / 255)  // 0 → 0.5 → 127.5 rounds to 128
        XCTAssertEqual(back[1, 1, 0], 191.0 / 255)  // 0.5 → 0.75 → 191.25
        XCTAssertEqual(back[0, 0, 2], 128.0 / 255)
    }

    func testGridLayoutMatchesTorchvision() throws {
        // 5 images of 1x3x2 (C=1, H=3, W=2), 3 per row, padding 2: torchvision's make_grid gives
        // (2 rows) x (3 cols): height 2*(3+2)+2 = 12, width 3*(2+2)+2 = 14.
        let n = 5
        let images = Tensor(shape: [n, 1, 3, 2]) { b in for i in 0..<b.count { b[i] = Float(i / 6) / 4 * 2 - 1 } }
        let grid = try ImageCodec.gridImage(images, range: .minusOneToOne, columns: 3, padding: 2, padValue: 1)
        XCTAssertEqual(grid.width, 14)
        XCTAssertEqual(grid.height, 12)
        XCTAssertEqual(grid.channels, 1)
        XCTAssertEqual(grid[0, 0, 0], 1)  // padding
        XCTAssertEqual(grid[2, 2, 0], 0)  // image 0 top-left, value -1 → 0
        XCTAssertEqual(grid[6, 2, 0], 0.25)  // image 1
        XCTAssertEqual(grid[10, 4, 0], 0.5)  // image 2, bottom row
        XCTAssertEqual(grid[2, 7, 0], 0.75)  // image 3 on the second row
        XCTAssertEqual(grid[6, 7, 0], 1)  // image 4
        XCTAssertEqual(grid[10, 7, 0], 1)  // empty slot keeps the pad value
        let folder = try makeTemporaryFolder(self)
        let path = folder.appendingPathComponent("grid.png").path
        try ImageCodec.writeGrid(images, columns: 3, to: path)
        let written = try ImageCodec.load(path: path)
        XCTAssertEqual([written.width, written.height, written.channels], [14, 12, 1])
    }

    func testDecodesJPEGLikeLibjpegItself() throws {
        let expected = try loadJSON(fixtureURL("jpeg/expected.json")) as! [String: [String: Any]]
        XCTAssertEqual(expected.count, 5)
        for (name, info) in expected {
            let image = try ImageCodec.load(path: fixtureURL("jpeg/\(name)").path)
            XCTAssertEqual([image.width, image.height, image.channels],
                           [info["width"] as! Int, info["height"] as! Int, info["channels"] as! Int], name)
            let samples = info["samples"] as! [Int]
            let ours = image.pixels.map { Int(($0 * 255).rounded()) }
            // Same library, same default IDCT and upsampling: identical output.
            XCTAssertEqual(ours, samples, name)
        }
    }

    func testRejectsBadImages() throws {
        let png = try Data(contentsOf: fixtureURL("png/rgb8.png"))
        let jpeg = try Data(contentsOf: fixtureURL("jpeg/rgb_baseline.jpg"))
        assertThrowsDataIOError(["truncated.png", "PNG"]) {
            _ = try ImageCodec.decode(bytes: Array(png.prefix(png.count / 2)), source: "truncated.png")
        }
        assertThrowsDataIOError(["truncated.jpg", "JPEG"]) {
            _ = try ImageCodec.decode(bytes: Array(jpeg.prefix(jpeg.count / 2)), source: "truncated.jpg")
        }
        assertThrowsDataIOError(["header.jpg"]) { _ = try ImageCodec.decode(bytes: Array(jpeg.prefix(20)), source: "header.jpg") }
        var generator = RandomGenerator(seed: 3)
        let noise = (0..<500).map { _ in UInt8(generator.nextInt(below: 256)) }
        assertThrowsDataIOError(["noise.bin", "unrecognised signature"]) { _ = try ImageCodec.decode(bytes: noise, source: "noise.bin") }
        // Valid signatures followed by noise.
        assertThrowsDataIOError(["noise.png"]) { _ = try ImageCodec.decode(bytes: Array(png.prefix(8)) + noise, source: "noise.png") }
        assertThrowsDataIOError(["noise.jpg"]) { _ = try ImageCodec.decode(bytes: [0xFF, 0xD8, 0xFF] + noise, source: "noise.jpg") }
        // Flipped bytes anywhere never crash (either an error or a valid decode).
        for _ in 0..<300 {
            var bytes = Array(generator.nextInt(below: 2) == 0 ? png : jpeg)
            for _ in 0..<3 { bytes[generator.nextInt(below: bytes.count)] = UInt8(generator.nextInt(below: 256)) }
            _ = try? ImageCodec.decode(bytes: bytes)
        }
    }

    func testRefusesImagesOverThePixelBudgetBeforeDecoding() throws {
        // A PNG header claiming 100000 x 100000 pixels, with no pixel data at all.
        let huge = pngHeaderOnly(width: 100_000, height: 100_000)
        do {
            _ = try ImageCodec.decode(bytes: huge, source: "huge.png")
            XCTFail("accepted a 10-gigapixel image")
        } catch let error as DataIOError {
            XCTAssertEqual(error, .imageTooLarge(path: "huge.png", width: 100_000, height: 100_000, budget: 64_000_000))
        }
        let small = try Array(Data(contentsOf: fixtureURL("png/rgb8.png")))
        assertThrowsDataIOError(["11 x 7", "budget of 50"]) { _ = try ImageCodec.decode(bytes: small, source: "s.png", pixelBudget: 50) }
        let jpeg = try Array(Data(contentsOf: fixtureURL("jpeg/rgb_baseline.jpg")))
        assertThrowsDataIOError(["24 x 17", "budget of 100"]) { _ = try ImageCodec.decode(bytes: jpeg, source: "s.jpg", pixelBudget: 100) }
    }

    func testResizeCropAndChannelConversion() throws {
        // Area averaging when shrinking 4x4 → 2x2: each output is the mean of a 2x2 block.
        let ramp = PixelImage(width: 4, height: 4, channels: 1, pixels: (0..<16).map { Float($0) / 15 })
        let small = ramp.resized(width: 2, height: 2)
        XCTAssertEqual(small.pixels.map { ($0 * 15 * 100).rounded() / 100 }, [2.5, 4.5, 10.5, 12.5])
        // Bilinear when enlarging 2x1 → 4x1 with half-pixel centres (like PyTorch align_corners=False).
        let pair = PixelImage(width: 2, height: 1, channels: 1, pixels: [0, 1])
        XCTAssertEqual(pair.resized(width: 4, height: 1).pixels, [0, 0.25, 0.75, 1])
        // Short side to size, then centre crop: 8x4 → 4x2 → crop 2x2 from the middle columns.
        let wide = PixelImage(width: 8, height: 4, channels: 1, pixels: (0..<32).map { Float($0 % 8) / 7 })
        let cropped = wide.resizedAndCropped(to: 2)
        XCTAssertEqual([cropped.width, cropped.height], [2, 2])
        XCTAssertEqual(cropped.pixels.map { ($0 * 7 * 100).rounded() / 100 }, [2.5, 4.5, 2.5, 4.5])
        // Alpha over white and BT.601 gray.
        let rgba = PixelImage(width: 2, height: 1, channels: 4, pixels: [1, 0, 0, 1, 0, 0, 0, 0])
        XCTAssertEqual(rgba.converted(toChannels: 3).pixels, [1, 0, 0, 1, 1, 1])
        XCTAssertEqual(rgba.converted(toChannels: 1).pixels[0], 0.299, accuracy: 1e-6)
        XCTAssertEqual(rgba.converted(toChannels: 1).pixels[1], 1, accuracy: 1e-6)
        XCTAssertEqual(PixelImage(width: 1, height: 1, channels: 2, pixels: [0.2, 0.5]).converted(toChannels: 3).pixels, [0.6, 0.6, 0.6])
    }

    /// Signature, a valid IHDR chunk and IEND, nothing else.
    private func pngHeaderOnly(width: UInt32, height: UInt32) -> [UInt8] {
        func be(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        func chunk(_ type: String, _ data: [UInt8]) -> [UInt8] {
            let body = Array(type.utf8) + data
            return be(UInt32(data.count)) + body + be(crc32(body))
        }
        let ihdr = be(width) + be(height) + [8, 2, 0, 0, 0]
        return [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + chunk("IHDR", ihdr) + chunk("IEND", [])
    }

    private func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }
}
