import Foundation
import DataIO

/// A small line-chart rasteriser: axes with "nice" ticks and labels, one coloured line per series
/// and a legend, drawn into an RGB buffer by hand and written as PNG through DataIO. Enough to
/// watch a loss curve without any plotting dependency.
public struct LinePlot {
    /// One named curve: x and y values of equal length.
    public struct Series {
        public let name: String
        public let x: [Double]
        public let y: [Double]
        public init(name: String, x: [Double], y: [Double]) {
            self.name = name
            self.x = x
            self.y = y
        }
    }

    public var width: Int
    public var height: Int
    public var title: String
    public var xLabel: String
    public var series: [Series]

    public init(width: Int = 720, height: Int = 420, title: String, xLabel: String = "step", series: [Series]) {
        self.width = width
        self.height = height
        self.title = title
        self.xLabel = xLabel
        self.series = series
    }

    static let palette: [(Float, Float, Float)] = [
        (0.12, 0.47, 0.71), (1.00, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
        (0.58, 0.40, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50),
    ]

    /// Renders the chart. A series with more points than pixel columns is averaged per column,
    /// which also smooths the per-step noise of stochastic losses.
    public func render() -> Image {
        var canvas = Canvas(width: width, height: height)
        let left = 64, right = width - 16, top = 28, bottom = height - 40
        canvas.text(title.uppercased(), x: left, y: 8, scale: 2, color: (0, 0, 0))

        let finite = series.map { s in zip(s.x, s.y).filter { $0.0.isFinite && $0.1.isFinite } }
        let xs = finite.flatMap { $0.map(\.0) }
        guard let xMin = xs.min(), let xMax = xs.max() else {
            canvas.text("NO DATA", x: (left + right) / 2 - 20, y: (top + bottom) / 2, scale: 1, color: (0.3, 0.3, 0.3))
            return canvas.image
        }
        let xSpan = xMax > xMin ? xMax - xMin : 1
        let columns = right - left
        // Average each series per pixel column.
        let binned: [[(Int, Double)]] = finite.map { points in
            var sums = [Double](repeating: 0, count: columns + 1), counts = [Int](repeating: 0, count: columns + 1)
            for (x, y) in points {
                let c = Int(((x - xMin) / xSpan * Double(columns)).rounded())
                sums[c] += y
                counts[c] += 1
            }
            return (0...columns).compactMap { counts[$0] > 0 ? ($0, sums[$0] / Double(counts[$0])) : nil }
        }
        let ys = binned.flatMap { $0.map(\.1) }
        var yMin = ys.min() ?? 0, yMax = ys.max() ?? 1
        if yMax - yMin < 1e-9 { yMin -= 0.5; yMax += 0.5 }
        let yTicks = LinePlot.niceTicks(yMin, yMax)
        yMin = Swift.min(yMin, yTicks.first ?? yMin)
        yMax = Swift.max(yMax, yTicks.last ?? yMax)
        let xTicks = LinePlot.niceTicks(xMin, xMax == xMin ? xMin + 1 : xMax)

        func py(_ y: Double) -> Int { bottom - Int(((y - yMin) / (yMax - yMin) * Double(bottom - top)).rounded()) }
        func px(_ x: Double) -> Int { left + Int(((x - xMin) / xSpan * Double(columns)).rounded()) }

        // grid and ticks
        let grid: (Float, Float, Float) = (0.9, 0.9, 0.9), ink: (Float, Float, Float) = (0.15, 0.15, 0.15)
        let yDecimals = LinePlot.decimals(yTicks)
        for t in yTicks where t >= yMin && t <= yMax {
            let y = py(t)
            canvas.line(left, y, right, y, color: grid)
            canvas.line(left - 4, y, left, y, color: ink)
            let label = String(format: "%.\(yDecimals)f", t)
            canvas.text(label, x: left - 8 - label.count * 6, y: y - 3, scale: 1, color: ink)
        }
        for t in xTicks where t >= xMin && t <= xMax {
            let x = px(t)
            canvas.line(x, top, x, bottom, color: grid)
            canvas.line(x, bottom, x, bottom + 4, color: ink)
            let label = String(format: "%.\(LinePlot.decimals(xTicks))f", t)
            canvas.text(label, x: x - label.count * 3, y: bottom + 8, scale: 1, color: ink)
        }
        canvas.line(left, top, left, bottom, color: ink)
        canvas.line(left, bottom, right, bottom, color: ink)
        canvas.text(xLabel.uppercased(), x: (left + right) / 2 - xLabel.count * 3, y: bottom + 22, scale: 1, color: ink)

        // curves
        for (k, points) in binned.enumerated() {
            let color = LinePlot.palette[k % LinePlot.palette.count]
            if points.count == 1 { canvas.disc(left + points[0].0, py(points[0].1), color: color) }
            for (a, b) in zip(points, points.dropFirst()) {
                canvas.line(left + a.0, py(a.1), left + b.0, py(b.1), color: color, thick: true)
            }
        }

        // legend, top right
        let names = series.map { $0.name.uppercased() }
        let legendWidth = 28 + 6 * (names.map(\.count).max() ?? 0)
        let lx = right - legendWidth - 6, ly = top + 6
        canvas.fill(lx, ly, legendWidth, 6 + 12 * names.count, color: (1, 1, 1))
        canvas.rect(lx, ly, legendWidth, 6 + 12 * names.count, color: (0.6, 0.6, 0.6))
        for (k, name) in names.enumerated() {
            let color = LinePlot.palette[k % LinePlot.palette.count]
            let y = ly + 9 + 12 * k
            canvas.line(lx + 4, y, lx + 18, y, color: color, thick: true)
            canvas.text(name, x: lx + 22, y: y - 3, scale: 1, color: ink)
        }
        return canvas.image
    }

    /// Writes the chart as a PNG (atomically).
    public func write(to path: String) throws { try ImageCodec.writePNG(render(), to: path) }

    /// About five round tick values (1, 2 or 5 × 10^k apart) covering [low, high].
    static func niceTicks(_ low: Double, _ high: Double) -> [Double] {
        let span = high - low
        guard span > 0, span.isFinite else { return [low] }
        let raw = span / 5
        let magnitude = Foundation.pow(10, Foundation.floor(Foundation.log10(raw)))
        let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? 10 * magnitude
        var ticks: [Double] = []
        var t = Foundation.floor(low / step) * step
        while t <= high + step * 0.5 && ticks.count < 20 {
            ticks.append(abs(t) < step * 1e-9 ? 0 : t)
            t += step
        }
        return ticks
    }

    /// Decimals needed to tell the ticks apart.
    static func decimals(_ ticks: [Double]) -> Int {
        guard ticks.count > 1 else { return 2 }
        let step = ticks[1] - ticks[0]
        return Swift.max(0, Swift.min(6, Int(-Foundation.floor(Foundation.log10(step)))))
    }
}

/// An RGB raster with clipped drawing primitives.
struct Canvas {
    let width: Int, height: Int
    var pixels: [Float]

    init(width: Int, height: Int) {
        self.width = width
        self.height = height
        pixels = [Float](repeating: 1, count: width * height * 3)
    }

    var image: Image { Image(width: width, height: height, channels: 3, pixels: pixels) }

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

    /// Draws `text` in the 5×7 font, `scale` pixels per font dot, 6·scale pixels per character.
    mutating func text(_ text: String, x: Int, y: Int, scale: Int, color: (Float, Float, Float)) {
        var cx = x
        for ch in text {
            if let rows = Font5x7.glyphs[ch] {
                for (r, bits) in rows.enumerated() {
                    for c in 0..<5 where bits & (0x10 >> c) != 0 {
                        fill(cx + c * scale, y + r * scale, scale, scale, color: color)
                    }
                }
            }
            cx += 6 * scale
        }
    }
}

/// A 5×7 bitmap font: digits, upper-case letters and the punctuation that labels need. Each glyph is
/// seven rows, bit 4 the leftmost dot. Unknown characters draw as blanks.
enum Font5x7 {
    static let glyphs: [Character: [UInt8]] = [
        "0": [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E], "1": [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        "2": [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F], "3": [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        "4": [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02], "5": [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        "6": [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E], "7": [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        "8": [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E], "9": [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        ".": [0, 0, 0, 0, 0, 0x0C, 0x0C], "-": [0, 0, 0, 0x1F, 0, 0, 0], "+": [0, 0x04, 0x04, 0x1F, 0x04, 0x04, 0],
        ":": [0, 0x0C, 0x0C, 0, 0x0C, 0x0C, 0], "/": [0, 0x01, 0x02, 0x04, 0x08, 0x10, 0],
        "(": [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02], ")": [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        "_": [0, 0, 0, 0, 0, 0, 0x1F], "=": [0, 0, 0x1F, 0, 0x1F, 0, 0], " ": [0, 0, 0, 0, 0, 0, 0],
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
