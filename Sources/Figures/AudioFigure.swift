import Foundation
import DataIO

/// Pictures of sound: for each clip a waveform strip above its spectrogram (STFT magnitude in dB,
/// time left to right, frequency bottom to top, the magma colour map), clips in a grid.
/// It lives in Training beside `LinePlot` because training writes it every epoch; Sampling reuses it.
public enum AudioFigure {
    /// A magnitude spectrogram in dB.
    public struct Spectrogram: Sendable {
        /// Number of STFT frames (time) and frequency bins (fftSize/2 + 1).
        public let frames: Int
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

    /// A grid of panels, one per clip: waveform (`waveHeight` rows, amplitude ±1 full height) above
    /// the spectrogram (`spectrogramHeight` rows, 0 Hz at the bottom). The dB scale spans
    /// `dynamicRange` dB below the loudest bin of the whole figure, so clips compare at one scale.
    public static func render(clips: [[Float]], sampleRate: Int, columns: Int = 2, panelWidth: Int = 480,
                              waveHeight: Int = 80, spectrogramHeight: Int = 128, dynamicRange: Float = 80,
                              fftSize: Int = 256, hop: Int = 64) -> Image {
        precondition(!clips.isEmpty && columns > 0, "AudioFigure.render: needs clips and a positive column count")
        let columns = min(columns, clips.count)
        let rows = (clips.count + columns - 1) / columns
        let gap = 6, panelHeight = waveHeight + 2 + spectrogramHeight
        let width = columns * panelWidth + (columns + 1) * gap, height = rows * panelHeight + (rows + 1) * gap
        var pixels = [Float](repeating: 1, count: width * height * 3)  // white background
        func put(_ x: Int, _ y: Int, _ c: (Float, Float, Float)) {
            let o = (y * width + x) * 3
            pixels[o] = c.0; pixels[o + 1] = c.1; pixels[o + 2] = c.2
        }
        let spectrograms = clips.map { spectrogram($0, sampleRate: sampleRate, fftSize: fftSize, hop: hop) }
        let top = spectrograms.flatMap(\.values).max() ?? 0
        let floor = top - dynamicRange
        for (n, clip) in clips.enumerated() {
            let x0 = gap + (n % columns) * (panelWidth + gap), y0 = gap + (n / columns) * (panelHeight + gap)
            // Waveform: dark background, a centre line, and per pixel column the min…max of its samples.
            for y in 0..<waveHeight { for x in 0..<panelWidth { put(x0 + x, y0 + y, (0.08, 0.08, 0.12)) } }
            let mid = waveHeight / 2
            for x in 0..<panelWidth { put(x0 + x, y0 + mid, (0.3, 0.3, 0.35)) }
            if !clip.isEmpty {
                for x in 0..<panelWidth {
                    let a = x * clip.count / panelWidth, b = max(a + 1, (x + 1) * clip.count / panelWidth)
                    var lo: Float = 1, hi: Float = -1
                    for s in a..<min(b, clip.count) { lo = min(lo, clip[s]); hi = max(hi, clip[s]) }
                    let yHi = mid - Int((max(-1, min(1, hi)) * Float(mid - 1)).rounded())
                    let yLo = mid - Int((max(-1, min(1, lo)) * Float(mid - 1)).rounded())
                    for y in yHi...max(yHi, yLo) { put(x0 + x, y0 + y, (0.45, 0.85, 1.0)) }
                }
            }
            // Spectrogram, nearest-neighbour scaled to the panel.
            let s = spectrograms[n]
            let sy0 = y0 + waveHeight + 2
            for y in 0..<spectrogramHeight {
                let bin = (spectrogramHeight - 1 - y) * s.bins / spectrogramHeight
                for x in 0..<panelWidth {
                    let frame = x * s.frames / panelWidth
                    let db = s.values[frame * s.bins + bin]
                    put(x0 + x, sy0 + y, magma((db - floor) / dynamicRange))
                }
            }
        }
        return Image(width: width, height: height, channels: 3, pixels: pixels)
    }

    /// Writes `render(clips:…)` as a PNG.
    public static func write(clips: [[Float]], sampleRate: Int, columns: Int = 2, to path: String) throws {
        try ImageCodec.writePNG(render(clips: clips, sampleRate: sampleRate, columns: columns), to: path)
    }
}
