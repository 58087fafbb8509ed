import XCTest
import Foundation
import TensorCore
import DataIO
import Figures
import Training

/// The pictures checked by their pixels: labels in the grid margin, the audio figure's axes,
/// colour bar and title, the loss plot's log axis, y label and smoothed curve, and every size
/// as documented.
final class FigureTests: XCTestCase {
    private func temporaryDirectory() throws -> String {
        let dir = NSTemporaryDirectory() + "forge-figures-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: dir) }
        return dir
    }

    /// Gray level of pixel (x, y): channel 0, or the mean of RGB.
    private func level(_ image: PixelImage, _ x: Int, _ y: Int) -> Float {
        let i = (y * image.width + x) * image.channels
        return image.channels >= 3 ? (image.pixels[i] + image.pixels[i + 1] + image.pixels[i + 2]) / 3 : image.pixels[i]
    }

    /// Pixels darker than `threshold` in the rectangle.
    private func darkPixels(_ image: PixelImage, x: Range<Int>, y: Range<Int>, threshold: Float = 0.5) -> Int {
        var n = 0
        for yy in y { for xx in x where level(image, xx, yy) < threshold { n += 1 } }
        return n
    }

    // MARK: labelled grids

    func testLabelledGridDrawsEachRowsNameInTheMarginAndKeepsTheDocumentedSize() throws {
        // 20 gray 28×28 tiles, all mid-gray, 8 per row: 3 rows, two of them labelled.
        let images = Tensor(shape: [20, 1, 28, 28], data: [Float](repeating: 0, count: 20 * 28 * 28))
        let labels = ["T-shirt/top", "Trouser"]
        let dir = try temporaryDirectory()
        try LabelledGrid.write(images: images, rowLabels: labels, columns: 8, to: dir + "/grid.png")
        let grid = try ImageCodec.load(path: dir + "/grid.png")
        let margin = LabelledGrid.marginWidth(rowLabels: labels, tileHeight: 28)
        XCTAssertEqual(margin, 11 * 6 + 8)                     // "T-SHIRT/TOP" at scale 1, 4 px either side
        XCTAssertEqual(grid.width, margin + 8 * (28 + 2) + 2)  // margin + make_grid's width
        XCTAssertEqual(grid.height, 3 * (28 + 2) + 2)
        XCTAssertEqual(grid.channels, 1)
        for row in 0..<3 {
            let top = 2 + row * 30
            let ink = darkPixels(grid, x: 0..<margin, y: top..<(top + 28))
            if row < 2 { XCTAssertGreaterThan(ink, 20, "row \(row): its label should be drawn in the margin") }
            else { XCTAssertEqual(ink, 0, "row 2 has no label: its margin stays white") }
        }
        // The longer label is wider: more dark pixels for "T-SHIRT/TOP" than "TROUSER".
        XCTAssertGreaterThan(darkPixels(grid, x: 0..<margin, y: 2..<30), darkPixels(grid, x: 0..<margin, y: 32..<60))
        // The tiles are where make_grid puts them, shifted by the margin: tile (0,0) is mid-gray.
        XCTAssertEqual(level(grid, margin + 2 + 14, 2 + 14), 0.5, accuracy: 0.01)
    }

    func testAGridWithoutLabelsIsExactlyTheTorchvisionGrid() throws {
        let images = Tensor(shape: [4, 3, 8, 8], data: (0..<(4 * 3 * 64)).map { Float($0 % 7) / 3 - 1 })
        let plain = try ImageCodec.gridImage(images, columns: 2)
        XCTAssertEqual(try LabelledGrid.image(images: images, rowLabels: [], columns: 2), plain)
        XCTAssertEqual(LabelledGrid.marginWidth(rowLabels: [], tileHeight: 8), 0)
    }

    func testLongLabelsAreCutAndTallTilesGetLargerText() {
        XCTAssertEqual(LabelledGrid.shown("a-very-long-class-name"), "a-very-long-..")
        XCTAssertEqual(LabelledGrid.shown("a-very-long-class-name").count, LabelledGrid.maxLabelCharacters)
        XCTAssertEqual(LabelledGrid.marginWidth(rowLabels: ["cat"], tileHeight: 64), 3 * 12 + 8)
        XCTAssertEqual(LabelledGrid.classRowLabels(classNames: ["a", "b", "c"], count: 40, columns: 8),
                       ["a", "b", "c", "a", "b"])
        XCTAssertEqual(LabelledGrid.classRowLabels(classNames: ["a", "b", "c"], count: 16, columns: 8, classIndex: 2), ["c", "c"])
    }

    // MARK: audio figure

    func testAudioFigureHasItsAxesColourBarAndTitleWhereDocumented() throws {
        let rate = 8000, n = 4096
        let sine = (0..<n).map { Float(0.8 * sin(2 * Double.pi * 1000 * Double($0) / Double(rate))) }
        let image = AudioFigure.render(clips: [sine], sampleRate: rate, columns: 2, titles: ["Dog seed 7"])
        let size = AudioFigure.size(clipCount: 1, columns: 2)
        XCTAssertEqual(size.width, 6 + (52 + 480 + 6) + 64)
        XCTAssertEqual(size.height, 6 + (12 + 80 + 2 + 128 + 28 + 6))
        XCTAssertEqual(image.width, size.width)
        XCTAssertEqual(image.height, size.height)
        let three = AudioFigure.size(clipCount: 3, columns: 2)
        XCTAssertEqual(three.width, 6 + 2 * (52 + 480 + 6) + 64)
        XCTAssertEqual(three.height, 6 + 2 * (12 + 80 + 2 + 128 + 28 + 6))

        let o = AudioFigure.panelOrigin(0, columns: 1)
        // Title: ink in the row above the waveform.
        XCTAssertGreaterThan(darkPixels(image, x: o.x..<(o.x + 120), y: (o.waveY - 12)..<o.waveY), 30)
        // Frequency axis: the axis line, and ticks every 1000 Hz up to 4000 Hz (Nyquist).
        XCTAssertEqual(darkPixels(image, x: (o.x - 1)..<o.x, y: o.spectrogramY..<(o.spectrogramY + 128)), 128)
        for hz in [0, 1000, 2000, 3000, 4000] {
            let y = o.spectrogramY + 127 - Int((Double(hz) / 4000 * 127).rounded())
            XCTAssertEqual(darkPixels(image, x: (o.x - 5)..<(o.x - 1), y: y..<(y + 1)), 4, "tick at \(hz) Hz (row \(y))")
        }
        XCTAssertEqual(darkPixels(image, x: (o.x - 5)..<(o.x - 1), y: (o.spectrogramY + 30)..<(o.spectrogramY + 31)), 0,
                       "no tick between 3000 and 4000 Hz")
        // Time axis: 0.512 s long, ticks at 0, 0.2, 0.4 s below the spectrogram.
        let by = o.spectrogramY + 128
        for t in [0.0, 0.2, 0.4] {
            let x = o.x + Int((t / 0.512 * 479).rounded())
            XCTAssertEqual(darkPixels(image, x: x..<(x + 1), y: (by + 1)..<(by + 5)), 4, "tick at \(t) s (column \(x))")
        }
        XCTAssertEqual(darkPixels(image, x: (o.x + 100)..<(o.x + 101), y: (by + 1)..<(by + 5)), 0)
        // Amplitude axis: ticks at +1, 0 and −1.
        for y in [o.waveY + 1, o.waveY + 40, o.waveY + 79] {
            XCTAssertEqual(darkPixels(image, x: (o.x - 5)..<(o.x - 1), y: y..<(y + 1)), 4, "amplitude tick at row \(y)")
        }
        // Colour bar: bright (magma's pale yellow) at the top, near black at the bottom, with dB labels.
        let bx = image.width - AudioFigure.colourBarWidth + 4
        XCTAssertGreaterThan(level(image, bx + 5, o.spectrogramY + 1), 0.8)
        XCTAssertLessThan(level(image, bx + 5, o.spectrogramY + 126), 0.1)
        XCTAssertGreaterThan(darkPixels(image, x: (bx + 16)..<image.width, y: o.spectrogramY..<(o.spectrogramY + 128)), 40)
        // The 1000 Hz tone is the brightest row of its spectrogram.
        let toneRow = o.spectrogramY + 127 - 32
        XCTAssertGreaterThan(level(image, o.x + 240, toneRow), level(image, o.x + 240, o.spectrogramY + 127 - 90) + 0.3)
    }

    // MARK: line plots

    func testTensorBoardSmoothingIsDebiased() {
        for v in LinePlot.smoothed([3, 3, 3], weight: 0.9) { XCTAssertEqual(v, 3, accuracy: 1e-12) }   // no pull towards 0
        let s = LinePlot.smoothed([2, 0], weight: 0.5)
        XCTAssertEqual(s[0], 2, accuracy: 1e-12)
        XCTAssertEqual(s[1], (0.5 * 1 + 0) / 0.75, accuracy: 1e-12)   // (w·(1−w)·2 + (1−w)·0) / (1 − w²)
        XCTAssertEqual(LinePlot.smoothed([1, 5], weight: 0), [1, 5])
    }

    /// A sweep's 27 trials get 27 different colours, far enough apart to tell on screen.
    func testCurveColoursDoNotRepeatWithinTwentySevenCurves() {
        let colours = (0..<27).map { LinePlot.color($0) }
        for i in colours.indices {
            for j in colours.indices where j > i {
                let (a, b) = (colours[i], colours[j])
                let distance = abs(a.0 - b.0) + abs(a.1 - b.1) + abs(a.2 - b.2)
                XCTAssertGreaterThan(distance, 0.1, "curves \(i) and \(j): \(a) and \(b)")
            }
        }
        XCTAssertEqual(LinePlot.color(0).0, 0.12, accuracy: 1e-6, "the first curve keeps the first palette colour")
    }

    func testValuesSpanningMoreThanTwoDecadesGetALogAxisWithTicksAtPowersOfTen() throws {
        let x = (0..<200).map(Double.init)
        let y = x.map { 10 * Foundation.pow(0.97, $0) }   // 10 → 0.023: more than two decades
        let plot = LinePlot(title: "loss", yLabel: "loss", series: [.init(name: "loss", x: x, y: y, smoothing: 0.9)])
        let layout = try XCTUnwrap(plot.layout())
        XCTAssertTrue(layout.logY)
        XCTAssertEqual(layout.yTicks.map(\.value), [0.01, 0.1, 1, 10])
        let image = plot.render()
        XCTAssertEqual(image.width, 720)
        XCTAssertEqual(image.height, 420)
        // Each decade tick is an ink mark just left of the axis, evenly spaced.
        for tick in layout.yTicks {
            XCTAssertLessThan(level(image, layout.left - 3, tick.pixel), 0.3, "tick \(tick.value) at row \(tick.pixel)")
        }
        let gaps = zip(layout.yTicks, layout.yTicks.dropFirst()).map { $0.0.pixel - $0.1.pixel }
        XCTAssertLessThanOrEqual((gaps.max() ?? 0) - (gaps.min() ?? 0), 1)
        // The axes themselves (the curve starts on the y axis and covers a few of its pixels).
        XCTAssertGreaterThan(darkPixels(image, x: layout.left..<(layout.left + 1), y: layout.top..<layout.bottom, threshold: 0.3),
                             layout.bottom - layout.top - 6)
        XCTAssertGreaterThan(darkPixels(image, x: layout.left..<layout.right, y: layout.bottom..<(layout.bottom + 1), threshold: 0.3),
                             layout.right - layout.left - 6)
        // The y label, written up the left edge.
        XCTAssertGreaterThan(darkPixels(image, x: 0..<14, y: layout.top..<layout.bottom), 30)

        let linear = LinePlot(title: "loss", series: [.init(name: "loss", x: x, y: x.map { 2 - $0 / 400 })])
        XCTAssertEqual(linear.layout()?.logY, false)
        XCTAssertEqual(darkPixels(linear.render(), x: 0..<14, y: 28..<380), 0, "no y label given, none drawn")
    }

    /// The learning-rate finder's axis: x on log10, ticks at powers of ten in data units, equal
    /// decades equally wide, labels drawn below them.
    func testALogXAxisPutsPowersOfTenAtEvenSpacing() throws {
        let rates = (0...420).map { 1e-6 * Foundation.pow(10, Double($0) / 60) }   // 1e-6 … 10
        let plot = LinePlot(title: "lr", xLabel: "learning rate", series: [.init(name: "loss", x: rates, y: rates.map { 2 + $0 })], logX: true)
        let layout = try XCTUnwrap(plot.layout())
        XCTAssertTrue(layout.logX)
        XCTAssertEqual(layout.xTicks.map(\.value).map { Foundation.log10($0).rounded() }, [-6, -5, -4, -3, -2, -1, 0, 1])
        let gaps = zip(layout.xTicks, layout.xTicks.dropFirst()).map { $0.1.pixel - $0.0.pixel }
        XCTAssertLessThanOrEqual((gaps.max() ?? 0) - (gaps.min() ?? 0), 1, "decades \(gaps)")
        XCTAssertEqual(layout.column(1e-6), layout.left)
        XCTAssertEqual(layout.column(10), layout.right)
        XCTAssertEqual(layout.column(Foundation.sqrt(1e-6 * 10)), (layout.left + layout.right) / 2, accuracy: 1)
        XCTAssertEqual(LinePlot.logTickLabel(1e-4), "1E-4")
        XCTAssertEqual(LinePlot.logTickLabel(0.01), "0.01")
        XCTAssertEqual(LinePlot.logTickLabel(2e-5), "2E-5")
        XCTAssertEqual(LinePlot.logTickLabel(500), "500")
        // Under two decades: 1, 2, 5 × 10^k.
        XCTAssertEqual(LinePlot.logTicks(Foundation.log10(1e-3), Foundation.log10(2e-2)).count, 5)
        let image = plot.render()
        for tick in layout.xTicks {  // a label under each tick
            XCTAssertGreaterThan(darkPixels(image, x: (tick.pixel - 8)..<(tick.pixel + 8), y: (layout.bottom + 6)..<(layout.bottom + 16)), 3,
                                 "label of \(tick.value)")
        }
    }

    func testASmoothedSeriesDrawsItsRawValuesInALighterTint() throws {
        let x = (0..<300).map(Double.init)
        let y = x.map { 2 + ($0.truncatingRemainder(dividingBy: 2) == 0 ? 0.5 : -0.5) }
        let image = LinePlot(title: "t", series: [.init(name: "loss", x: x, y: y, smoothing: 0.9)]).render()
        let blue: (Float, Float, Float) = (0.12, 0.47, 0.71)   // the first series' colour
        let tint = (0.35 * blue.0 + 0.65, 0.35 * blue.1 + 0.65, 0.35 * blue.2 + 0.65)
        var full = 0, light = 0
        for p in stride(from: 0, to: image.pixels.count, by: 3) {
            let c = (image.pixels[p], image.pixels[p + 1], image.pixels[p + 2])
            if abs(c.0 - blue.0) < 0.01 && abs(c.1 - blue.1) < 0.01 && abs(c.2 - blue.2) < 0.01 { full += 1 }
            if abs(c.0 - tint.0) < 0.01 && abs(c.1 - tint.1) < 0.01 && abs(c.2 - tint.2) < 0.01 { light += 1 }
        }
        XCTAssertGreaterThan(full, 600, "the smoothed curve (2 px pen over ~640 columns)")
        XCTAssertGreaterThan(light, 300, "the raw curve beneath, lighter")
    }

    func testLossPlotPutsTrainAndValInOneLabelledPlot() throws {
        let dir = try temporaryDirectory()
        let log = try MetricsLog(directory: dir, metricNames: ["loss"], evaluationNames: ["train_loss", "val_loss"],
                                 plottedMetrics: ["loss", "train_loss", "val_loss"])
        for step in 1...60 {
            log.append(step: step, epoch: 1, wallSeconds: Double(step), rate: 100, learningRate: 1e-3, values: [4 - Double(step) / 30])
            if step % 20 == 0 {
                log.appendEvaluation(step: step, epoch: 1, wallSeconds: Double(step), learningRate: 1e-3,
                                     values: [4 - Double(step) / 30, 4.2 - Double(step) / 40])
            }
        }
        try log.writePlot(title: "char loss")
        let image = try ImageCodec.load(path: dir + "/loss.png")
        XCTAssertEqual(image.width, 720)
        XCTAssertEqual(image.height, 420)
        XCTAssertGreaterThan(darkPixels(image, x: 0..<14, y: 28..<380), 20, "the y-axis label")
        // All three curves in the one plot: loss blue (palette 0), train_loss orange (1), val_loss green (2).
        var orange = 0, green = 0
        for p in stride(from: 0, to: image.pixels.count, by: 3) {
            let c = (image.pixels[p], image.pixels[p + 1], image.pixels[p + 2])
            if abs(c.0 - 1.0) < 0.01 && abs(c.1 - 0.5) < 0.01 && abs(c.2 - 0.05) < 0.01 { orange += 1 }
            if abs(c.0 - 0.17) < 0.01 && abs(c.1 - 0.63) < 0.01 && abs(c.2 - 0.17) < 0.01 { green += 1 }
        }
        XCTAssertGreaterThan(orange, 50, "train_loss")
        XCTAssertGreaterThan(green, 50, "val_loss")
    }
}
