import Foundation
import DataIO

/// A public RGB raster for figures drawn outside `LinePlot` (attention heatmaps and the like): filled
/// rectangles and text in the 5×7 bitmap font of the line plots, extended with lower-case letters,
/// the punctuation of ordinary prose, and visible marks for a space (␣) and a newline (↵) so that
/// every character of a short text can label an axis.
public struct PixelCanvas {
    /// Size in pixels; `pixels` holds `width × height × 3` values.
    public let width: Int, height: Int
    /// Row-major RGB values in [0, 1].
    public private(set) var pixels: [Float]

    /// A canvas filled with `background`.
    public init(width: Int, height: Int, background: (Float, Float, Float) = (1, 1, 1)) {
        self.width = width
        self.height = height
        pixels = [Float](repeating: 0, count: width * height * 3)
        fill(x: 0, y: 0, width: width, height: height, color: background)
    }

    /// The canvas as an RGB image.
    public var image: PixelImage { PixelImage(width: width, height: height, channels: 3, pixels: pixels) }

    /// Fills a rectangle (clipped to the canvas).
    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, color: (Float, Float, Float)) {
        let x0 = max(0, x), y0 = max(0, y), x1 = min(width, x + w), y1 = min(height, y + h)
        guard x0 < x1, y0 < y1 else { return }
        for yy in y0..<y1 {
            for xx in x0..<x1 {
                let i = (yy * width + xx) * 3
                pixels[i] = color.0; pixels[i + 1] = color.1; pixels[i + 2] = color.2
            }
        }
    }

    /// Draws `text` with its top-left corner at (x, y): 6·scale pixels per character, 7·scale high.
    /// A character the font lacks draws as a small hollow box.
    public mutating func text(_ text: String, x: Int, y: Int, scale: Int = 1, color: (Float, Float, Float)) {
        var cx = x
        for ch in text {
            let rows = PixelCanvas.glyph(ch)
            for (r, bits) in rows.enumerated() {
                for c in 0..<5 where bits & (0x10 >> c) != 0 {
                    fill(x: cx + c * scale, y: y + r * scale, width: scale, height: scale, color: color)
                }
            }
            cx += 6 * scale
        }
    }

    /// Width in pixels of `text` drawn at `scale`.
    public static func textWidth(_ text: String, scale: Int = 1) -> Int { text.count * 6 * scale }

    /// Whether the font has a glyph for `character` (else it draws as a hollow box).
    public static func hasGlyph(_ character: Character) -> Bool {
        Font5x7.glyphs[character] != nil || extraGlyphs[character] != nil
    }

    static func glyph(_ ch: Character) -> [UInt8] {
        Font5x7.glyphs[ch] ?? extraGlyphs[ch] ?? [0, 0x1F, 0x11, 0x11, 0x11, 0x1F, 0]
    }

    /// Glyphs LinePlot's font lacks, drawn as rows of "#" (dot) and "." (blank).
    static let extraGlyphs: [Character: [UInt8]] = {
        let drawn: [Character: [String]] = [
            "a": [".....", ".....", ".###.", "....#", ".####", "#...#", ".####"],
            "b": ["#....", "#....", "#.##.", "##..#", "#...#", "#...#", "####."],
            "c": [".....", ".....", ".###.", "#....", "#....", "#...#", ".###."],
            "d": ["....#", "....#", ".##.#", "#..##", "#...#", "#...#", ".####"],
            "e": [".....", ".....", ".###.", "#...#", "#####", "#....", ".###."],
            "f": ["..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."],
            "g": [".....", ".####", "#...#", "#...#", ".####", "....#", ".###."],
            "h": ["#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"],
            "i": ["..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."],
            "j": ["...#.", ".....", "..##.", "...#.", "...#.", "#..#.", ".##.."],
            "k": ["#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."],
            "l": [".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."],
            "m": [".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"],
            "n": [".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"],
            "o": [".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."],
            "p": [".....", ".....", "####.", "#...#", "####.", "#....", "#...."],
            "q": [".....", ".....", ".##.#", "#..##", ".####", "....#", "....#"],
            "r": [".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."],
            "s": [".....", ".....", ".###.", "#....", ".###.", "....#", "####."],
            "t": [".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."],
            "u": [".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"],
            "v": [".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."],
            "w": [".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."],
            "x": [".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"],
            "y": [".....", ".....", "#...#", "#...#", ".####", "....#", ".###."],
            "z": [".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"],
            "!": ["..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."],
            "?": [".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."],
            "'": ["..#..", "..#..", ".#...", ".....", ".....", ".....", "....."],
            "\"": [".#.#.", ".#.#.", ".....", ".....", ".....", ".....", "....."],
            ",": [".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."],
            ";": [".....", ".##..", ".##..", ".....", ".##..", "..#..", ".#..."],
            "&": [".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"],
            "$": ["..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."],
            "*": [".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."],
            "[": [".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."],
            "]": [".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."],
            "␣": [".....", ".....", ".....", ".....", ".....", "#...#", "#####"],
            "↵": ["....#", "....#", "..#.#", ".#..#", "#####", ".#...", "..#.."],
        ]
        return drawn.mapValues { rows in
            rows.map { row in row.reduce(UInt8(0)) { ($0 << 1) | ($1 == "#" ? 1 : 0) } }
        }
    }()
}
