import Foundation
import DataIO

/// A small line-chart rasteriser: axes with "nice" ticks and labels, one coloured line per series
/// and a legend, drawn into an RGB buffer by hand and written as PNG through DataIO. Enough to
/// watch a loss curve without any plotting dependency.
///
/// A series with `smoothing` is drawn twice, as TensorBoard does: the raw values in a light tint
/// and their debiased exponential moving average over them in the full colour. The y axis turns
/// logarithmic (ticks at powers of ten) when every plotted value is positive and they span more
/// than two decades (`max / min > 100`). The image is `width × height` pixels; the plot area is
/// `layout().plotArea`.
public struct LinePlot {
    /// One named curve: x and y values of equal length.
    public struct Series {
        /// The legend label (drawn upper-case, with " (EMA)" appended when smoothed).
        public let name: String
        /// The x values (usually steps); points with a non-finite x or y are skipped and the rest sorted by x.
        public let x: [Double]
        /// The y values (loss and the like), one per `x`.
        public let y: [Double]
        /// EMA weight in [0, 1) for the smoothed curve (TensorBoard's slider; 0.9 ≈ the last ten
        /// points), or nil to draw the values as they are — with a dot at each point when there
        /// are few of them (evaluations).
        public let smoothing: Double?
        /// A curve from `x` and `y` of equal length; `smoothing` as described at the property.
        public init(name: String, x: [Double], y: [Double], smoothing: Double? = nil) {
            self.name = name
            self.x = x
            self.y = y
            self.smoothing = smoothing
        }
    }

    /// Image width in pixels (default 720); the plot area leaves 76 pixels at the left and 16 at the right.
    public var width: Int
    /// Image height in pixels (default 420); the plot area leaves 28 pixels at the top and 40 at the bottom.
    public var height: Int
    /// Drawn upper-case at twice the font size above the plot area.
    public var title: String
    /// Written upper-case under the x axis (default "step").
    public var xLabel: String
    /// Written up the left side; empty for none.
    public var yLabel: String
    /// The curves, coloured in order (`LinePlot.color(_:)`: ten distinct colours, then darker shades of them).
    public var series: [Series]
    /// Draw x on a log10 axis, with ticks at powers of ten (and 2× and 5× when the range spans less
    /// than two decades) labelled in data units; points with x ≤ 0 are left out.
    public var logX: Bool

    /// A chart of `series` in a `width × height` image; nothing is drawn until `render()`.
    public init(width: Int = 720, height: Int = 420, title: String, xLabel: String = "step", yLabel: String = "",
                series: [Series], logX: Bool = false) {
        self.width = width
        self.height = height
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.series = series
        self.logX = logX
    }

    /// matplotlib's "tab10" colours, in its order.
    static let palette: [(Float, Float, Float)] = [
        (0.12, 0.47, 0.71), (1.00, 0.50, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16),
        (0.58, 0.40, 0.74), (0.55, 0.34, 0.29), (0.89, 0.47, 0.76), (0.50, 0.50, 0.50),
        (0.74, 0.74, 0.13), (0.09, 0.75, 0.81),
    ]

    /// The colour of curve `k`: the palette's, then for each further ten the same hues at 0.6× the
    /// brightness of the ten before, so a sweep of more than ten trials still tells every curve apart.
    public static func color(_ k: Int) -> (Float, Float, Float) {
        let c = palette[k % palette.count]
        let shade = Float(Foundation.pow(0.6, Double(k / palette.count)))
        return (c.0 * shade, c.1 * shade, c.2 * shade)
    }

    /// TensorBoard's smoothing: `last = last·w + (1−w)·v`, divided by `1 − w^n` after n points so
    /// the curve does not start from 0 (the debiasing Adam also uses). Non-finite values are
    /// carried through without entering the average.
    public static func smoothed(_ values: [Double], weight: Double) -> [Double] {
        var last = 0.0, n = 0.0
        return values.map { v in
            guard v.isFinite else { return v }
            last = last * weight + (1 - weight) * v
            n += 1
            let debias = weight == 0 ? 1 : 1 - Foundation.pow(weight, n)
            return last / debias
        }
    }

    /// Where things are drawn: the plot rectangle (pixels, y down), whether y is logarithmic, and
    /// each tick's value with the pixel it is drawn at.
    public struct Layout {
        /// Edges of the plot rectangle in pixels (x to the right, y down): columns `left`...`right`, rows
        /// `top`...`bottom`.
        public let left: Int, right: Int, top: Int, bottom: Int
        /// True when the y axis is logarithmic (all values positive, spanning more than two decades).
        public let logY: Bool
        /// x is drawn as log10 x (`LinePlot.logX`).
        public let logX: Bool
        /// The x ticks: each tick's value (data units, on a log axis too) and the pixel column it is drawn at.
        public let xTicks: [(value: Double, pixel: Int)]
        /// The y ticks: each tick's value (powers of ten when `logY`) and the pixel row it is drawn at.
        public let yTicks: [(value: Double, pixel: Int)]
        /// The plot rectangle as origin (top left corner) and size, in pixels.
        public var plotArea: (x: Int, y: Int, width: Int, height: Int) { (left, top, right - left, bottom - top) }
        let xMin: Double, xSpan: Double, yLow: Double, yHigh: Double
        /// Pixel row of the value `y` (on the log axis, of log10 y).
        public func row(_ y: Double) -> Int {
            let v = logY ? Foundation.log10(y) : y
            return bottom - Int(((v - yLow) / (yHigh - yLow) * Double(bottom - top)).rounded())
        }
        /// Pixel column of the value `x` (on the log axis, of log10 x).
        public func column(_ x: Double) -> Int {
            let v = logX ? Foundation.log10(x) : x
            return left + Int(((v - xMin) / xSpan * Double(right - left)).rounded())
        }
    }

    private var finite: [[(Double, Double)]] {
        series.map { s in zip(s.x, s.y).filter { $0.0.isFinite && $0.1.isFinite && (!logX || $0.0 > 0) }.sorted { $0.0 < $1.0 } }
    }

    /// The layout for the current series; nil when there is nothing finite to plot.
    public func layout() -> Layout? {
        let left = 76, right = width - 16, top = 28, bottom = height - 40
        let points = finite
        // on a log x axis, xMin and xSpan are in log10 units and the tick values in data units
        let xs = points.flatMap { $0.map { logX ? Foundation.log10($0.0) : $0.0 } }, ys = points.flatMap { $0.map(\.1) }
        guard let xMin = xs.min(), let xMax = xs.max(), var yMin = ys.min(), var yMax = ys.max() else { return nil }
        let xSpan = xMax > xMin ? xMax - xMin : 1
        let xTickValues = logX ? LinePlot.logTicks(xMin, xMin + xSpan)
            : LinePlot.niceTicks(xMin, xMax == xMin ? xMin + 1 : xMax).filter { $0 >= xMin && $0 <= xMin + xSpan }
        let logY = yMin > 0 && yMax / yMin > 100
        var yTickValues: [Double]
        let low: Double, high: Double
        if logY {
            low = Foundation.floor(Foundation.log10(yMin))
            high = Foundation.ceil(Foundation.log10(yMax))
            yTickValues = stride(from: low, through: high, by: 1).map { Foundation.pow(10, $0) }
        } else {
            if yMax - yMin < 1e-9 { yMin -= 0.5; yMax += 0.5 }
            yTickValues = LinePlot.niceTicks(yMin, yMax)
            yMin = Swift.min(yMin, yTickValues.first ?? yMin)
            yMax = Swift.max(yMax, yTickValues.last ?? yMax)
            yTickValues = yTickValues.filter { $0 >= yMin && $0 <= yMax }
            (low, high) = (yMin, yMax)
        }
        let partial = Layout(left: left, right: right, top: top, bottom: bottom, logY: logY, logX: logX, xTicks: [], yTicks: [],
                             xMin: xMin, xSpan: xSpan, yLow: low, yHigh: high)
        return Layout(left: left, right: right, top: top, bottom: bottom, logY: logY, logX: logX,
                      xTicks: xTickValues.map { ($0, partial.column($0)) }, yTicks: yTickValues.map { ($0, partial.row($0)) },
                      xMin: xMin, xSpan: xSpan, yLow: low, yHigh: high)
    }

    /// Renders the chart. A series with more points than pixel columns is averaged per column.
    public func render() -> PixelImage {
        var canvas = Canvas(width: width, height: height)
        let ink: (Float, Float, Float) = (0.15, 0.15, 0.15), grid: (Float, Float, Float) = (0.9, 0.9, 0.9)
        canvas.text(title.uppercased(), x: 76, y: 8, scale: 2, color: (0, 0, 0))
        guard let frame = layout() else {
            canvas.text("NO DATA", x: width / 2 - 20, y: height / 2, scale: 1, color: (0.3, 0.3, 0.3))
            return canvas.image
        }
        let (left, right, top, bottom) = (frame.left, frame.right, frame.top, frame.bottom)

        // Average a curve per pixel column.
        func binned(_ points: [(Double, Double)]) -> [(Int, Int)] {
            var sums: [Int: (Double, Int)] = [:]
            for (x, y) in points where !frame.logY || y > 0 {
                let c = frame.column(x)
                let v = frame.logY ? Foundation.log10(y) : y
                sums[c, default: (0, 0)].0 += v
                sums[c, default: (0, 0)].1 += 1
            }
            return sums.keys.sorted().map { c in
                let mean = sums[c]!.0 / Double(sums[c]!.1)
                return (c, frame.row(frame.logY ? Foundation.pow(10, mean) : mean))
            }
        }

        // grid, ticks and their labels
        let yDecimals = LinePlot.decimals(frame.yTicks.map(\.value))
        for (t, y) in frame.yTicks {
            canvas.line(left, y, right, y, color: grid)
            canvas.line(left - 4, y, left, y, color: ink)
            let label = frame.logY ? LinePlot.powerLabel(t) : String(format: "%.\(yDecimals)f", t)
            canvas.text(label, x: left - 8 - Canvas.textWidth(label), y: y - 3, scale: 1, color: ink)
        }
        if frame.logY, let first = frame.yTicks.first {
            // minor ticks at 2…9 × 10^k
            var decade = first.value
            while decade < (frame.yTicks.last?.value ?? decade) {
                for m in 2...9 { let y = frame.row(Double(m) * decade); canvas.line(left - 2, y, left, y, color: ink) }
                decade *= 10
            }
        }
        let xDecimals = LinePlot.decimals(frame.xTicks.map(\.value))
        for (t, x) in frame.xTicks {
            canvas.line(x, top, x, bottom, color: grid)
            canvas.line(x, bottom, x, bottom + 4, color: ink)
            let label = frame.logX ? LinePlot.logTickLabel(t) : String(format: "%.\(xDecimals)f", t)
            canvas.text(label, x: x - Canvas.textWidth(label) / 2, y: bottom + 8, scale: 1, color: ink)
        }
        canvas.line(left, top, left, bottom, color: ink)
        canvas.line(left, bottom, right, bottom, color: ink)
        canvas.text(xLabel.uppercased(), x: (left + right) / 2 - Canvas.textWidth(xLabel) / 2, y: bottom + 22, scale: 1, color: ink)
        if !yLabel.isEmpty {
            let label = yLabel.uppercased() + (frame.logY ? " (LOG)" : "")
            canvas.verticalText(label, x: 4, y: (top + bottom) / 2 + Canvas.textWidth(label) / 2, scale: 1, color: ink)
        }

        // curves: every raw tint first, then the full-colour lines over them
        let points = finite
        func color(_ k: Int) -> (Float, Float, Float) { LinePlot.color(k) }
        for (k, s) in series.enumerated() where s.smoothing != nil {
            let c = color(k), tint = (0.35 * c.0 + 0.65, 0.35 * c.1 + 0.65, 0.35 * c.2 + 0.65)
            let raw = binned(points[k])
            for (a, b) in zip(raw, raw.dropFirst()) { canvas.line(a.0, a.1, b.0, b.1, color: tint) }
        }
        for (k, s) in series.enumerated() {
            var curve = points[k]
            if let w = s.smoothing {
                curve = Array(zip(curve.map(\.0), LinePlot.smoothed(curve.map(\.1), weight: w)))
            }
            let line = binned(curve)
            if line.count == 1 || (s.smoothing == nil && line.count <= 50) { for p in line { canvas.disc(p.0, p.1, color: color(k)) } }
            for (a, b) in zip(line, line.dropFirst()) { canvas.line(a.0, a.1, b.0, b.1, color: color(k), thick: true) }
        }

        // legend, top right
        let names = series.map { $0.name.uppercased() + ($0.smoothing != nil ? " (EMA)" : "") }
        let legendWidth = 28 + 6 * (names.map(\.count).max() ?? 0)
        let lx = right - legendWidth - 6, ly = top + 6
        canvas.fill(lx, ly, legendWidth, 6 + 12 * names.count, color: (1, 1, 1))
        canvas.rect(lx, ly, legendWidth, 6 + 12 * names.count, color: (0.6, 0.6, 0.6))
        for (k, name) in names.enumerated() {
            let y = ly + 9 + 12 * k
            canvas.line(lx + 4, y, lx + 18, y, color: color(k), thick: true)
            canvas.text(name, x: lx + 22, y: y - 3, scale: 1, color: ink)
        }
        return canvas.image
    }

    /// Tick values (data units) for a log axis over log10 values [low, high]: the powers of ten inside,
    /// with 2× and 5× added when that gives fewer than three ticks.
    public static func logTicks(_ low: Double, _ high: Double) -> [Double] {
        let first = Int(Foundation.floor(low)), last = Int(Foundation.ceil(high))
        func inside(_ v: Double) -> Bool { let l = Foundation.log10(v); return l >= low - 1e-9 && l <= high + 1e-9 }
        let powers = (first...last).map { Foundation.pow(10, Double($0)) }.filter(inside)
        if powers.count >= 3 { return powers }
        return (first...last).flatMap { e in [1.0, 2, 5].map { $0 * Foundation.pow(10, Double(e)) } }.filter(inside)
    }

    /// A log-axis tick: a power of ten as `powerLabel` writes it, else m × 10^e as "2E-4" (or "0.02").
    public static func logTickLabel(_ v: Double) -> String {
        let e = Int(Foundation.floor(Foundation.log10(v) + 1e-9))
        let m = Int((v / Foundation.pow(10, Double(e))).rounded())
        if m == 1 { return powerLabel(v) }
        if e >= -3 && e <= 2 { return e >= 0 ? String(m * Int(Foundation.pow(10, Double(e)))) : String(format: "%.\(-e)f", v) }
        return "\(m)E\(e)"
    }

    /// A power of ten as a short label: 0.001, 0.01 … 1000, then 1E4, 1E-4.
    static func powerLabel(_ v: Double) -> String {
        let e = Int(Foundation.log10(v).rounded())
        if e >= 0 && e <= 3 { return String(Int(Foundation.pow(10, Double(e)))) }
        if e < 0 && e >= -3 { return String(format: "%.\(-e)f", v) }
        return "1E\(e)"
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
