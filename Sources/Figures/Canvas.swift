import Foundation
import DataIO

// The raster and the font every figure draws with: line plots, audio figures and labelled grids.

/// An RGB raster with clipped drawing primitives.
struct Canvas {
    /// Pixels per character cell at `scale` 1 (5 dots wide plus a 1-dot gap) and glyph height.
    static let charWidth = 6, charHeight = 7

    let width: Int, height: Int
    var pixels: [Float]

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
        pixels = [Float](repeating: 1, count: width * height * 3)
    }

    var image: PixelImage { PixelImage(width: width, height: height, channels: 3, pixels: pixels) }

    mutating func set(_ x: Int, _ y: Int, _ c: (Float, Float, Float)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = c.0; pixels[i + 1] = c.1; pixels[i + 2] = c.2
    }

    /// Bresenham line; `thick` draws a 2-pixel pen.
    mutating func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, color: (Float, Float, Float), thick: Bool = false) {
        var (x, y) = (x0, y0)
        let dx = abs(x1 - x0), dy = -abs(y1 - y0)
        let sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1
        var err = dx + dy
        while true {
            set(x, y, color)
            if thick { set(x + 1, y, color); set(x, y + 1, color) }
            if x == x1 && y == y1 { break }
            let e2 = 2 * err
            if e2 >= dy { err += dy; x += sx }
            if e2 <= dx { err += dx; y += sy }
        }
    }

    mutating func fill(_ x: Int, _ y: Int, _ w: Int, _ h: Int, color: (Float, Float, Float)) {
        for yy in y..<(y + h) { for xx in x..<(x + w) { set(xx, yy, color) } }
    }

    mutating func rect(_ x: Int, _ y: Int, _ w: Int, _ h: Int, color: (Float, Float, Float)) {
        line(x, y, x + w, y, color: color); line(x, y + h, x + w, y + h, color: color)
        line(x, y, x, y + h, color: color); line(x + w, y, x + w, y + h, color: color)
    }

    mutating func disc(_ x: Int, _ y: Int, color: (Float, Float, Float)) {
        for dy in -2...2 { for dx in -2...2 where dx * dx + dy * dy <= 5 { set(x + dx, y + dy, color) } }
    }

    /// Width in pixels of `text` drawn at `scale`.
    static func textWidth(_ text: String, scale: Int = 1) -> Int { text.count * charWidth * scale }

    /// Draws `text` in the 5×7 font, `scale` pixels per font dot, 6·scale pixels per character.
    /// Lower-case letters draw as capitals (the font has only capitals).
    mutating func text(_ text: String, x: Int, y: Int, scale: Int, color: (Float, Float, Float)) {
        var cx = x
        for ch in text {
            if let rows = Font5x7.glyph(ch) {
                for (r, bits) in rows.enumerated() {
                    for c in 0..<5 where bits & (0x10 >> c) != 0 {
                        fill(cx + c * scale, y + r * scale, scale, scale, color: color)
                    }
                }
            }
            cx += 6 * scale
        }
    }

    /// Draws `text` rotated a quarter turn anticlockwise (reading bottom to top), its baseline at
    /// column `x`, starting at row `y` (the bottom end) — a y-axis label.
    mutating func verticalText(_ text: String, x: Int, y: Int, scale: Int, color: (Float, Float, Float)) {
        var cy = y
        for ch in text {
            if let rows = Font5x7.glyph(ch) {
                for (r, bits) in rows.enumerated() {
                    for c in 0..<5 where bits & (0x10 >> c) != 0 {
                        fill(x + r * scale, cy - (c + 1) * scale, scale, scale, color: color)
                    }
                }
            }
            cy -= 6 * scale
        }
    }

    /// Copies `image` (1 or 3 channels, gray replicated) with its top-left corner at (x, y).
    mutating func blit(_ image: PixelImage, x: Int, y: Int) {
        for yy in 0..<image.height {
            for xx in 0..<image.width {
                let i = (yy * image.width + xx) * image.channels
                let c = image.channels >= 3 ? (image.pixels[i], image.pixels[i + 1], image.pixels[i + 2])
                                            : (image.pixels[i], image.pixels[i], image.pixels[i])
                set(x + xx, y + yy, c)
            }
        }
    }
}

/// A 5×7 bitmap font: digits, upper-case letters and the punctuation that labels need. Each glyph is
/// seven rows, bit 4 the leftmost dot. Unknown characters draw as blanks.
enum Font5x7 {
    /// The glyph of `ch`, a lower-case letter as its capital; nil when the font lacks it.
    static func glyph(_ ch: Character) -> [UInt8]? {
        if let rows = glyphs[ch] { return rows }
        return Character(ch.uppercased()) == ch ? nil : glyphs[Character(ch.uppercased())]
    }

    static let glyphs: [Character: [UInt8]] = [
        "0": [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], "1": [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        "2": [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], "3": [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        "4": [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], "5": [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        "6": [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], "7": [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        "8": [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], "9": [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ".": [0, 0, 0, 0, 0, 0x0C, 0x0C], "-": [0, 0, 0, 0x1F, 0, 0, 0], "+": [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        ":": [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0], "/": [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        "(": [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02], ")": [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        "_": [0, 0, 0, 0, 0, 0, 0x1F], ",": [0, 0, 0, 0, 0x0C, 0x04, 0x08],
        "'": [0x04, 0x04, 0x08, 0, 0, 0, 0], "%": [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        "&": [0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D], "#": [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        "!": [0x04, 0x04, 0x04, 0x04, 0x04, 0, 0x04], "?": [0x0E, 0x11, 0x01, 0x02, 0x04, 0, 0x04],
        "*": [0, 0x04, 0x15, 0x0E, 0x15, 0x04, 0], "<": [0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02],
        ">": [0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08], "=": [0, 0, 0x1F, 0, 0x1F, 0, 0], " ": [0, 0, 0, 0, 0, 0, 0],
        "A": [0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11], "B": [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        "C": [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E], "D": [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        "E": [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F], "F": [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        "G": [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F], "H": [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        "I": [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E], "J": [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        "K": [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11], "L": [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        "M": [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11], "N": [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        "O": [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], "P": [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        "Q": [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D], "R": [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        "S": [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E], "T": [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        "U": [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E], "V": [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        "W": [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A], "X": [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        "Y": [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04], "Z": [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
    ]
}
