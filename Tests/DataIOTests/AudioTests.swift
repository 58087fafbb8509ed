import Foundation
import XCTest
import DataIO
import TensorCore

final class AudioTests: XCTestCase {
    private func sine(_ frequency: Double, rate: Int, frames: Int, amplitude: Float = 0.5) -> [Float] {
        (0..<frames).map { amplitude * Float(sin(2 * Double.pi * frequency * Double($0) / Double(rate))) }
    }

    /// Amplitude of `frequency` in `samples` by correlation with sine and cosine.
    private func amplitude(_ samples: ArraySlice<Float>, _ frequency: Double, rate: Int) -> Double {
        var s = 0.0, c = 0.0
        for (i, v) in samples.enumerated() {
            let phase = 2 * Double.pi * frequency * Double(i) / Double(rate)
            s += Double(v) * sin(phase); c += Double(v) * cos(phase)
        }
        return 2 * (s * s + c * c).squareRoot() / Double(samples.count)
    }

    func testWAVRoundTripPCM16AndFloat() throws {
        let folder = try makeTemporaryFolder(self)
        let stereo = zip(sine(440, rate: 8000, frames: 800), sine(1000, rate: 8000, frames: 800, amplitude: 0.25)).flatMap { [$0, $1] }
        let clip = AudioClip(samples: stereo + [1.5, -1.5], channels: 2, sampleRate: 8000)
        let floatPath = folder.appendingPathComponent("f.wav").path
        try AudioIO.writeWAV(clip, to: floatPath, encoding: .float32)
        XCTAssertEqual(try AudioIO.read(path: floatPath), clip)  // float WAV is exact, even beyond ±1

        let pcmPath = folder.appendingPathComponent("p.wav").path
        try AudioIO.writeWAV(clip, to: pcmPath, encoding: .pcm16)
        let pcm = try AudioIO.read(path: pcmPath)
        XCTAssertEqual([pcm.channels, pcm.sampleRate, pcm.frameCount], [2, 8000, 801])
        let worst = zip(pcm.samples.dropLast(2), stereo).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(worst, 1.0 / 32768 + 1e-6)  // 16-bit quantisation
        XCTAssertEqual(Array(pcm.samples.suffix(2)), [32767.0 / 32768, -1])  // clipped, not wrapped
        let mono = try AudioIO.read(path: floatPath, mono: true)
        XCTAssertEqual(mono.channels, 1)
        XCTAssertEqual(mono.samples[1], (stereo[2] + stereo[3]) / 2)
    }

    func testResamplerKeepsPassbandAndRemovesAliases() throws {
        // 8 kHz → 16 kHz: a 1 kHz tone keeps its amplitude.
        let up = AudioClip(samples: sine(1000, rate: 8000, frames: 8000), channels: 1, sampleRate: 8000).resampled(to: 16000)
        XCTAssertEqual(up.frameCount, 16000)
        XCTAssertEqual(amplitude(up.samples[2000..<14000], 1000, rate: 16000), 0.5, accuracy: 0.005)
        // 16 kHz → 8 kHz: 1 kHz stays, 6 kHz (above the new 4 kHz Nyquist) must not alias to 2 kHz.
        let mixed = zip(sine(1000, rate: 16000, frames: 16000), sine(6000, rate: 16000, frames: 16000)).map { $0 + $1 }
        let down = AudioClip(samples: mixed, channels: 1, sampleRate: 16000).resampled(to: 8000)
        XCTAssertEqual(down.frameCount, 8000)
        XCTAssertEqual(amplitude(down.samples[1000..<7000], 1000, rate: 8000), 0.5, accuracy: 0.005)
        XCTAssertLessThan(amplitude(down.samples[1000..<7000], 2000, rate: 8000), 0.005)
    }

    func testBadAudioFiles() throws {
        let folder = try makeTemporaryFolder(self)
        let empty = folder.appendingPathComponent("empty.wav").path
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        assertThrowsDataIOError(["empty.wav"]) { _ = try AudioIO.read(path: empty) }
        // A valid WAV header with zero frames.
        let zero = folder.appendingPathComponent("zero.wav").path
        try AudioIO.writeWAV(AudioClip(samples: [], channels: 1, sampleRate: 8000), to: zero)
        assertThrowsDataIOError(["zero.wav", "no audio frames"]) { _ = try AudioIO.read(path: zero) }
        let noise = folder.appendingPathComponent("noise.wav").path
        try Data((0..<300).map { UInt8($0 % 251) }).write(to: URL(fileURLWithPath: noise))
        assertThrowsDataIOError(["noise.wav"]) { _ = try AudioIO.read(path: noise) }
    }

    func testAudioFolderLabelsAndFixedLength() throws {
        let root = try makeTemporaryFolder(self).appendingPathComponent("speech")
        for name in ["yes", "no"] { try FileManager.default.createDirectory(at: root.appendingPathComponent(name), withIntermediateDirectories: true) }
        try AudioIO.writeWAV(AudioClip(samples: sine(500, rate: 8000, frames: 4000), channels: 1, sampleRate: 8000), to: root.path + "/yes/a.wav")
        try AudioIO.writeWAV(AudioClip(samples: [Float](repeating: 0.25, count: 2000), channels: 2, sampleRate: 16000), to: root.path + "/no/b.wav", encoding: .float32)
        try Data("junk".utf8).write(to: root.appendingPathComponent("no/c.wav"))
        var warnings: [String] = []
        let folder = try AudioFolder(path: root.path, sampleRate: 16000, length: 1600, warn: { warnings.append($0) })
        XCTAssertEqual(folder.classNames, ["no", "yes"])
        XCTAssertEqual(folder.labels, [0, 1])
        XCTAssertEqual(folder.clips.shape, [2, 1600])
        XCTAssertEqual(folder.skipped.count, 1)
        XCTAssertEqual(warnings.count, 1)
        let values = folder.clips.scalars
        XCTAssertEqual(values[500], 0.25)   // 1000 stereo frames at the target rate: kept as is
        XCTAssertEqual(values[1200], 0)     // zero padding after frame 1000
        XCTAssertEqual(amplitude(values[(1600 + 200)..<(1600 + 1400)], 500, rate: 16000), 0.5, accuracy: 0.01)
    }

    func testRealSpeechRecording() throws {
        let path = "/usr/share/asterisk/sounds/en/hello-world.wav"
        guard FileManager.default.fileExists(atPath: path) else { throw XCTSkip("asterisk sounds are not installed") }
        let clip = try AudioIO.read(path: path, mono: true)
        XCTAssertEqual(clip.sampleRate, 8000)
        XCTAssertGreaterThan(clip.duration, 0.5)
        let rms = (clip.samples.map { Double($0 * $0) }.reduce(0, +) / Double(clip.samples.count)).squareRoot()
        XCTAssertGreaterThan(rms, 0.01)  // real speech, not silence
        let up = clip.resampled(to: 16000)
        XCTAssertEqual(up.frameCount, clip.frameCount * 2)
    }
}
