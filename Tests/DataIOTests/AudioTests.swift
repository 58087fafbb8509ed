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

    /// A WAV cut short (3,000 of its 16,044 bytes) is an error, and a folder skips it with a warning
    /// like a truncated PNG's; libsndfile alone returns the frames that are there, and the folder
    /// used to zero-pad them into a clip without a word.
    func testTruncatedWAVIsAnErrorAndASkippedClipWithAWarning() throws {
        let root = try makeTemporaryFolder(self).appendingPathComponent("clips")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let clip = AudioClip(samples: sine(440, rate: 8000, frames: 8000), channels: 1, sampleRate: 8000)
        let whole = root.path + "/whole.wav", cut = root.path + "/cut.wav"
        try AudioIO.writeWAV(clip, to: whole)
        try AudioIO.writeWAV(clip, to: cut)
        let bytes = try FileIO.readBytes(cut)
        XCTAssertEqual(bytes.count, 16_044)
        try FileIO.writeAtomically(Array(bytes.prefix(3000)), to: cut)
        assertThrowsDataIOError(["cut.wav", "truncated", "declares 16000 bytes", "after 3000 bytes"]) { _ = try AudioIO.read(path: cut) }
        assertThrowsDataIOError(["<memory>", "truncated"]) { _ = try AudioIO.decode(bytes: Array(bytes.prefix(3000))) }
        XCTAssertEqual(try AudioIO.decode(bytes: bytes), try AudioIO.read(path: whole))   // in memory = from the file

        var warnings: [String] = []
        let folder = try AudioFolder(path: root.path, sampleRate: 8000, length: 8000, warn: { warnings.append($0) })
        XCTAssertEqual(folder.files.map { ($0 as NSString).lastPathComponent }, ["whole.wav"])
        XCTAssertEqual(folder.skipped.map { ($0.path as NSString).lastPathComponent }, ["cut.wav"])
        XCTAssertEqual(warnings.count, 1)
        let warning = warnings.first ?? ""
        XCTAssertTrue(warning.hasPrefix("warning: skipping ") && warning.contains("cut.wav: truncated: its data chunk declares 16000 bytes"), warning)
        XCTAssertEqual(warning.components(separatedBy: "cut.wav").count, 2, "the warning names the file once: \(warning)")
    }

    /// The chunk walk that finds a cut-short data chunk steps over other chunks, odd-sized ones
    /// padded to an even size, so a complete file with them is not mistaken for a truncated one.
    func testWAVWithAnOddSizedChunkBeforeTheDataReads() throws {
        func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * $0)) & 0xFF) } }
        let fmt: [UInt8] = [1, 0, 1, 0] + le32(8000) + le32(16000) + [2, 0, 16, 0]
        let samples: [UInt8] = [0x00, 0x40, 0x00, 0xC0, 0x00, 0x20]   // 0.5, -0.5, 0.25
        let chunks: [UInt8] = Array("LIST".utf8) + le32(3) + [1, 2, 3, 0] + Array("fmt ".utf8) + le32(16) + fmt
            + Array("data".utf8) + le32(samples.count) + samples
        let wav = Array("RIFF".utf8) + le32(4 + chunks.count) + Array("WAVE".utf8) + chunks
        XCTAssertEqual(try AudioIO.decode(bytes: wav).samples, [0.5, -0.5, 0.25])
        assertThrowsDataIOError(["truncated", "declares 6 bytes", "ends 4 bytes into it"]) { _ = try AudioIO.decode(bytes: Array(wav.dropLast(2))) }
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
