import Foundation
import DataIO

/// Pictures of sound: for each clip a waveform strip above its spectrogram (STFT magnitude in dB,
/// time left to right, frequency bottom to top, the magma colour map), clips in a grid.
/// It lives in Figures beside `LinePlot` because training writes it every epoch and Sampling reuses it.
public enum AudioFigure {
    /// A magnitude spectrogram in dB.
    public struct Spectrogram: Sendable {
        /// Number of STFT frames (time steps, one per hop).
        public let frames: Int
        /// Number of frequency bins per frame, fftSize/2 + 1, from 0 Hz to the Nyquist frequency.
        public let bins: Int
        /// dB values, frame-major: `values[frame * bins + bin]`.
        public let values: [Float]
        /// Hz per bin.
        public let binHz: Double
    }

    /// STFT magnitude in dB relative to full scale: Hann window of `fftSize`, hop `hop`, the clip
    /// zero-padded to whole frames. A full-scale sine peaks near 0 dB (the magnitude is divided by
    /// the window sum / 2); values are floored at −120 dB.
    public static func spectrogram(_ samples: [Float], sampleRate: Int, fftSize: Int = 256, hop: Int = 64) -> Spectrogram {
        precondition(fftSize >= 4 && hop >= 1, "spectrogram: fftSize must be ≥ 4 and hop ≥ 1")
        let bins = fftSize / 2 + 1
        let frames = max(1, (samples.count - fftSize + hop - 1) / hop + 1)
        var window = [Double](repeating: 0, count: fftSize)
        for i in 0..<fftSize { window[i] = 0.5 - 0.5 * cos(2 * Double.pi * Double(i) / Double(fftSize)) }
        let norm = window.reduce(0, +) / 2
        // Twiddle table: a direct DFT over fftSize points (a 256-point frame costs 33K multiply-adds;
        // a figure of a few clips is milliseconds, so an FFT would add code without saving time).
        var cosTable = [Double](repeating: 0, count: fftSize), sinTable = cosTable
        for i in 0..<fftSize {
            cosTable[i] = cos(2 * Double.pi * Double(i) / Double(fftSize))
            sinTable[i] = sin(2 * Double.pi * Double(i) / Double(fftSize))
        }
        var values = [Float](repeating: -120, count: frames * bins)
        var frame = [Double](repeating: 0, count: fftSize)
        for f in 0..<frames {
            for i in 0..<fftSize {
                let s = f * hop + i
                frame[i] = s < samples.count ? Double(samples[s]) * window[i] : 0
            }
            for k in 0..<bins {
                var re = 0.0, im = 0.0, index = 0
                for i in 0..<fftSize {
                    re += frame[i] * cosTable[index]
                    im -= frame[i] * sinTable[index]
                    index += k
                    if index >= fftSize { index -= fftSize }
                }
                let magnitude = (re * re + im * im).squareRoot() / norm
                values[f * bins + k] = Float(max(-120, 20 * log10(max(magnitude, 1e-12))))
            }
        }
        return Spectrogram(frames: frames, bins: bins, values: values, binHz: Double(sampleRate) / Double(fftSize))
    }

    /// The magma colour map at t ∈ [0, 1] (black → purple → orange → pale yellow), interpolated
    /// linearly between 9 samples of matplotlib's table.
    public static func magma(_ t: Float) -> (Float, Float, Float) {
        let x = min(max(t, 0), 1) * Float(magmaTable.count - 1)
        let i = min(Int(x), magmaTable.count - 2), w = x - Float(i)
        let a = magmaTable[i], b = magmaTable[i + 1]
        return (a.0 + (b.0 - a.0) * w, a.1 + (b.1 - a.1) * w, a.2 + (b.2 - a.2) * w)
    }

    /// matplotlib magma at 0, 1/8, …, 1.
    static let magmaTable: [(Float, Float, Float)] = [
        (0.001, 0.000, 0.014), (0.113, 0.065, 0.277), (0.316, 0.071, 0.485), (0.513, 0.148, 0.508),
        (0.716, 0.215, 0.475), (0.904, 0.310, 0.388), (0.986, 0.535, 0.382), (0.996, 0.765, 0.544),
        (0.987, 0.991, 0.750),
    ]

    /// Pixels around each panel's plots: the title row above, the amplitude/frequency tick labels
    /// at the left, the time ticks and "TIME (S)" below; the dB colour bar column at the right
    /// of the figure; the gap between panels.
    public static let titleHeight = 12, leftAxisWidth = 52, bottomAxisHeight = 28, colourBarWidth = 64, gap = 6

    /// Width and height in pixels of the figure of `clipCount` clips:
    /// width = gap + columns·(leftAxisWidth + panelWidth + gap) + colourBarWidth,
    /// height = gap + rows·(titleHeight + waveHeight + 2 + spectrogramHeight + bottomAxisHeight + gap),
    /// with columns = min(columns, clipCount) and rows = ⌈clipCount / columns⌉.
    public static func size(clipCount: Int, columns: Int = 2, panelWidth: Int = 480, waveHeight: Int = 80,
                            spectrogramHeight: Int = 128) -> (width: Int, height: Int) {
        let columns = max(1, min(columns, clipCount))
        let rows = (clipCount + columns - 1) / columns
        return (gap + columns * (leftAxisWidth + panelWidth + gap) + colourBarWidth,
                gap + rows * (titleHeight + waveHeight + 2 + spectrogramHeight + bottomAxisHeight + gap))
    }

    /// Where panel `n`'s waveform and spectrogram are drawn: their left column, the waveform's top
    /// row and the spectrogram's top row (each `panelWidth` wide).
    public static func panelOrigin(_ n: Int, columns: Int, panelWidth: Int = 480, waveHeight: Int = 80,
                                   spectrogramHeight: Int = 128) -> (x: Int, waveY: Int, spectrogramY: Int) {
        let panelHeight = titleHeight + waveHeight + 2 + spectrogramHeight + bottomAxisHeight
        let x = gap + (n % columns) * (leftAxisWidth + panelWidth + gap) + leftAxisWidth
        let waveY = gap + (n / columns) * (panelHeight + gap) + titleHeight
        return (x, waveY, waveY + waveHeight + 2)
    }

    /// A grid of panels, one per clip: its title (`titles[n]`, e.g. the class and seed), the
    /// waveform (`waveHeight` rows, amplitude ±1 full height, ticks at −1, 0, 1) above the
    /// spectrogram (`spectrogramHeight` rows, 0 Hz at the bottom, ticks in Hz on the left and in
    /// seconds below); a colour bar in dB at the right of each row of panels. The dB scale spans
    /// `dynamicRange` dB below the loudest bin of the whole figure, so clips compare at one scale.
    /// Size: `size(clipCount:…)`.
    public static func render(clips: [[Float]], sampleRate: Int, columns: Int = 2, titles: [String]? = nil,
                              panelWidth: Int = 480, waveHeight: Int = 80, spectrogramHeight: Int = 128,
                              dynamicRange: Float = 80, fftSize: Int = 256, hop: Int = 64) -> PixelImage {
        precondition(!clips.isEmpty && columns > 0, "AudioFigure.render: needs clips and a positive column count")
        let columns = min(columns, clips.count)
        let (width, height) = size(clipCount: clips.count, columns: columns, panelWidth: panelWidth,
                                   waveHeight: waveHeight, spectrogramHeight: spectrogramHeight)
        var canvas = Canvas(width: width, height: height)   // white background
        let ink: (Float, Float, Float) = (0.15, 0.15, 0.15)
        let spectrograms = clips.map { spectrogram($0, sampleRate: sampleRate, fftSize: fftSize, hop: hop) }
        let top = spectrograms.flatMap(\.values).max() ?? 0
        let floor = top - dynamicRange
        let nyquist = Double(sampleRate) / 2
        for (n, clip) in clips.enumerated() {
            let (x0, y0, sy0) = panelOrigin(n, columns: columns, panelWidth: panelWidth, waveHeight: waveHeight,
                                            spectrogramHeight: spectrogramHeight)
            if let titles, n < titles.count {
                canvas.text(titles[n].uppercased(), x: x0, y: y0 - titleHeight + 2, scale: 1, color: (0, 0, 0))
            }
            // Waveform: dark background, a centre line, and per pixel column the min…max of its samples.
            canvas.fill(x0, y0, panelWidth, waveHeight, color: (0.08, 0.08, 0.12))
            let mid = waveHeight / 2
            canvas.line(x0, y0 + mid, x0 + panelWidth - 1, y0 + mid, color: (0.3, 0.3, 0.35))
            if !clip.isEmpty {
                for x in 0..<panelWidth {
                    let a = x * clip.count / panelWidth, b = max(a + 1, (x + 1) * clip.count / panelWidth)
                    var lo: Float = 1, hi: Float = -1
                    for s in a..<min(b, clip.count) { lo = min(lo, clip[s]); hi = max(hi, clip[s]) }
                    let yHi = mid - Int((max(-1, min(1, hi)) * Float(mid - 1)).rounded())
                    let yLo = mid - Int((max(-1, min(1, lo)) * Float(mid - 1)).rounded())
                    for y in yHi...max(yHi, yLo) { canvas.set(x0 + x, y0 + y, (0.45, 0.85, 1.0)) }
                }
            }
            // Amplitude axis: ticks at +1, 0, −1 (the rows the waveform maps them to).
            canvas.line(x0 - 1, y0, x0 - 1, y0 + waveHeight - 1, color: ink)
            for (label, y) in [("1", y0 + 1), ("0", y0 + mid), ("-1", y0 + waveHeight - 1)] {
                canvas.line(x0 - 5, y, x0 - 1, y, color: ink)
                canvas.text(label, x: x0 - 8 - Canvas.textWidth(label), y: min(max(y - 3, y0), y0 + waveHeight - 7), scale: 1, color: ink)
            }
            canvas.verticalText("AMP", x: x0 - leftAxisWidth + 2, y: y0 + mid + 9, scale: 1, color: ink)

            // Spectrogram, nearest-neighbour scaled to the panel.
            let s = spectrograms[n]
            for y in 0..<spectrogramHeight {
                let bin = (spectrogramHeight - 1 - y) * s.bins / spectrogramHeight
                for x in 0..<panelWidth {
                    let frame = x * s.frames / panelWidth
                    canvas.set(x0 + x, sy0 + y, magma((s.values[frame * s.bins + bin] - floor) / dynamicRange))
                }
            }
            // Frequency axis (Hz): row y shows bins up to (spectrogramHeight − y)/spectrogramHeight · Nyquist.
            canvas.line(x0 - 1, sy0, x0 - 1, sy0 + spectrogramHeight - 1, color: ink)
            for hz in LinePlot.niceTicks(0, nyquist) where hz <= nyquist {
                let y = sy0 + spectrogramHeight - 1 - Int((hz / nyquist * Double(spectrogramHeight - 1)).rounded())
                canvas.line(x0 - 5, y, x0 - 1, y, color: ink)
                let label = String(Int(hz))
                canvas.text(label, x: x0 - 8 - Canvas.textWidth(label), y: min(max(y - 3, sy0), sy0 + spectrogramHeight - 7),
                            scale: 1, color: ink)
            }
            canvas.verticalText("HZ", x: x0 - leftAxisWidth + 2, y: sy0 + spectrogramHeight / 2 + 6, scale: 1, color: ink)
            // Time axis (s) under the spectrogram.
            let seconds = Double(clip.count) / Double(sampleRate)
            let by = sy0 + spectrogramHeight
            canvas.line(x0, by, x0 + panelWidth - 1, by, color: ink)
            if seconds > 0 {
                let ticks = LinePlot.niceTicks(0, seconds).filter { $0 <= seconds + 1e-9 }
                let decimals = LinePlot.decimals(ticks)
                for t in ticks {
                    let x = x0 + Int((t / seconds * Double(panelWidth - 1)).rounded())
                    canvas.line(x, by, x, by + 4, color: ink)
                    let label = String(format: "%.\(decimals)f", t)
                    canvas.text(label, x: min(max(x - Canvas.textWidth(label) / 2, x0 - 4), x0 + panelWidth - Canvas.textWidth(label)),
                                y: by + 7, scale: 1, color: ink)
                }
            }
            canvas.text("TIME (S)", x: x0 + panelWidth / 2 - Canvas.textWidth("TIME (S)") / 2, y: by + 18, scale: 1, color: ink)

            // Colour bar in dB beside the last panel of each row.
            if n % columns == columns - 1 || n == clips.count - 1 {
                let bx = width - colourBarWidth + 4, barWidth = 10
                for y in 0..<spectrogramHeight {
                    let t = Float(spectrogramHeight - 1 - y) / Float(spectrogramHeight - 1)
                    canvas.fill(bx, sy0 + y, barWidth, 1, color: magma(t))
                }
                canvas.rect(bx - 1, sy0 - 1, barWidth + 1, spectrogramHeight + 1, color: ink)
                for db in LinePlot.niceTicks(Double(floor), Double(top)) where db >= Double(floor) - 1e-6 && db <= Double(top) + 1e-6 {
                    let y = sy0 + spectrogramHeight - 1 - Int(((db - Double(floor)) / Double(dynamicRange) * Double(spectrogramHeight - 1)).rounded())
                    canvas.line(bx + barWidth, y, bx + barWidth + 3, y, color: ink)
                    let label = String(Int(db.rounded()))
                    canvas.text(label, x: bx + barWidth + 6, y: min(max(y - 3, sy0), sy0 + spectrogramHeight - 7), scale: 1, color: ink)
                }
                canvas.text("DB", x: bx, y: sy0 - 10, scale: 1, color: ink)
            }
        }
        return canvas.image
    }

    /// Writes `render(clips:…)` as a PNG.
    public static func write(clips: [[Float]], sampleRate: Int, columns: Int = 2, titles: [String]? = nil, to path: String) throws {
        try ImageCodec.writePNG(render(clips: clips, sampleRate: sampleRate, columns: columns, titles: titles), to: path)
    }
}
