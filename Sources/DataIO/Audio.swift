import Foundation
import TensorCore
import CSndFile

/// A clip of audio: interleaved Float32 samples in [-1, 1].
public struct AudioClip: Sendable, Equatable {
    /// Interleaved samples in [-1, 1]: frame `f`, channel `c` is `samples[f * channels + c]`.
    public var samples: [Float]
    /// Number of interleaved channels (1 mono, 2 stereo, …), at least 1.
    public let channels: Int
    /// Frames per second (Hz), positive.
    public let sampleRate: Int

    /// A clip from interleaved `samples` (a whole number of frames) at `sampleRate` Hz.
    public init(samples: [Float], channels: Int, sampleRate: Int) {
        precondition(channels > 0 && samples.count % channels == 0, "AudioClip: \(samples.count) samples for \(channels) channels")
        precondition(sampleRate > 0, "AudioClip: sample rate must be positive")
        self.samples = samples
        self.channels = channels
        self.sampleRate = sampleRate
    }

    /// Number of frames (samples per channel).
    public var frameCount: Int { samples.count / channels }
    /// Length in seconds.
    public var duration: Double { Double(frameCount) / Double(sampleRate) }

    /// The clip mixed down to one channel (the mean of the channels).
    public func mixedToMono() -> AudioClip {
        if channels == 1 { return self }
        let mono = (0..<frameCount).map { f in
            var sum: Float = 0
            for c in 0..<channels { sum += samples[f * channels + c] }
            return sum / Float(channels)
        }
        return AudioClip(samples: mono, channels: 1, sampleRate: sampleRate)
    }

    /// The clip at `targetRate`, by band-limited interpolation with a Hann-windowed sinc kernel
    /// (16 zero crossings each side). When downsampling, the kernel's cutoff is lowered to the
    /// new Nyquist frequency (scaled by 0.97), so it also acts as the anti-alias low-pass filter.
    public func resampled(to targetRate: Int) -> AudioClip {
        precondition(targetRate > 0, "resampled: target rate must be positive")
        if targetRate == sampleRate || frameCount == 0 { return AudioClip(samples: samples, channels: channels, sampleRate: targetRate) }
        let ratio = Double(targetRate) / Double(sampleRate)
        let cutoff = min(1.0, ratio) * 0.97  // fraction of the input Nyquist frequency
        let zeroCrossings = 16.0
        let halfWidth = zeroCrossings / cutoff  // in input samples
        let outFrames = Int((Double(frameCount) * ratio).rounded())
        var out = [Float](repeating: 0, count: outFrames * channels)
        let input = samples
        let inFrames = frameCount
        let channels = self.channels
        out.withUnsafeMutableBufferPointer { buffer in
            let output = SendablePointer(buffer.baseAddress!)
            let source = UnsafeSendableBox(input)
            parallelFor(outFrames, grain: 4096) { start, end in
                source.value.withUnsafeBufferPointer { src in
                    for n in start..<end {
                        let t = Double(n) / ratio  // position in input samples
                        let first = max(0, Int((t - halfWidth).rounded(.up)))
                        let last = min(inFrames - 1, Int((t + halfWidth).rounded(.down)))
                        guard first <= last else { continue }
                        for c in 0..<channels {
                            var acc = 0.0
                            for k in first...last {
                                let x = Double(k) - t
                                let window = 0.5 + 0.5 * cos(Double.pi * x / halfWidth)
                                let arg = Double.pi * cutoff * x
                                let sinc = abs(arg) < 1e-9 ? 1.0 : sin(arg) / arg
                                acc += Double(src[k * channels + c]) * cutoff * sinc * window
                            }
                            output.p[n * channels + c] = Float(acc)
                        }
                    }
                }
            }
        }
        return AudioClip(samples: out, channels: channels, sampleRate: targetRate)
    }

    /// The first `length` frames, zero-padded at the end when the clip is shorter.
    public func paddedOrCropped(to length: Int) -> AudioClip {
        var out = Array(samples.prefix(length * channels))
        out.append(contentsOf: [Float](repeating: 0, count: length * channels - out.count))
        return AudioClip(samples: out, channels: channels, sampleRate: sampleRate)
    }
}

/// Audio file reading and writing through libsndfile.
public enum AudioIO {
    /// Sample encodings for `write`.
    public enum Encoding: Sendable { case pcm16, float32 }

    /// Reads a WAV, FLAC, OGG/Vorbis (or any format libsndfile knows) file as Float32 in
    /// [-1, 1]; `mono` mixes the channels down. A truncated file is an error (see `decode`).
    public static func read(path: String, mono: Bool = false) throws -> AudioClip {
        try decode(bytes: FileIO.readBytes(path), source: path, mono: mono)
    }

    /// Decodes audio file `bytes` held in memory (libsndfile through a virtual file); `source`
    /// names them in errors. Refuses a file that ends before the audio its header declares: a WAV or
    /// AIFF whose data chunk is cut short (libsndfile itself would quietly return the frames that are
    /// there), or any file that decodes to fewer frames than its header claims (MPEG aside, whose
    /// count is an estimate).
    public static func decode(bytes: [UInt8], source: String = "<memory>", mono: Bool = false) throws -> AudioClip {
        if let problem = truncatedDataChunk(bytes) {
            throw DataIOError.invalidAudio(path: source, message: problem)
        }
        return try bytes.withUnsafeBufferPointer { buffer in
            let reader = MemoryFile(buffer)
            var io = SF_VIRTUAL_IO(
                get_filelen: { MemoryFile.from($0).length },
                seek: { offset, whence, user in MemoryFile.from(user).seek(offset, whence) },
                read: { destination, count, user in MemoryFile.from(user).read(into: destination, count) },
                write: { _, _, _ in 0 },
                tell: { MemoryFile.from($0).position })
            var info = SF_INFO()
            guard let file = sf_open_virtual(&io, Int32(SFM_READ), &info, Unmanaged.passUnretained(reader).toOpaque()) else {
                throw DataIOError.invalidAudio(path: source, message: String(cString: sf_strerror(nil)))
            }
            defer { sf_close(file) }
            return try withExtendedLifetime(reader) {
                try decodeOpened(file, info, byteCount: bytes.count, source: source, mono: mono)
            }
        }
    }

    private static func decodeOpened(_ file: OpaquePointer, _ info: SF_INFO, byteCount: Int, source: String, mono: Bool) throws -> AudioClip {
        guard info.channels > 0, info.samplerate > 0 else {
            throw DataIOError.invalidAudio(path: source, message: "bad header (\(info.channels) channels at \(info.samplerate) Hz)")
        }
        guard info.frames > 0 else { throw DataIOError.invalidAudio(path: source, message: "file holds no audio frames") }
        // The frame count comes from the header: check it against the file size before allocating.
        let channels = Int(info.channels)
        let (claimed, overflow) = Int64(info.frames).multipliedReportingOverflow(by: Int64(channels))
        // Compressed formats can expand; allow a generous 64 samples per stored byte.
        guard !overflow, claimed <= Int64(max(byteCount, 1)) * 64 else {
            throw DataIOError.invalidAudio(path: source, message: "header claims \(info.frames) frames, more than the \(byteCount)-byte file can hold")
        }
        var samples = [Float](repeating: 0, count: Int(claimed))
        let read = samples.withUnsafeMutableBufferPointer { sf_readf_float(file, $0.baseAddress, info.frames) }
        guard read > 0 else { throw DataIOError.invalidAudio(path: source, message: "no frames could be decoded: \(String(cString: sf_strerror(file)))") }
        // MPEG streams' frame counts are estimates; every other format's header gives the exact count.
        let exactCount = info.format & Int32(SF_FORMAT_TYPEMASK) != Int32(SF_FORMAT_MPEG)
        guard read == info.frames || !exactCount else {
            throw DataIOError.invalidAudio(path: source, message: "truncated or corrupt: \(read) of the \(info.frames) frames its header declares could be decoded")
        }
        samples.removeLast(samples.count - Int(read) * channels)
        let clip = AudioClip(samples: samples, channels: channels, sampleRate: Int(info.samplerate))
        return mono ? clip.mixedToMono() : clip
    }

    /// Why a RIFF/WAVE (or RIFX) or AIFF file is cut short, or nil: its sample data chunk (`data`,
    /// `SSND`) declares more bytes than follow it. Sizes 0 and 0xFFFFFFFF mean "unknown" (streamed
    /// files) and are not judged; other formats are left to the decoder.
    static func truncatedDataChunk(_ bytes: [UInt8]) -> String? {
        guard bytes.count >= 12 else { return nil }
        let tag = { (at: Int) in String(decoding: bytes[at..<(at + 4)], as: UTF8.self) }
        let bigEndian: Bool, dataID: String
        switch (tag(0), tag(8)) {
        case ("RIFF", "WAVE"): (bigEndian, dataID) = (false, "data")
        case ("RIFX", "WAVE"): (bigEndian, dataID) = (true, "data")
        case ("FORM", "AIFF"), ("FORM", "AIFC"): (bigEndian, dataID) = (true, "SSND")
        default: return nil
        }
        var offset = 12
        while offset + 8 <= bytes.count {
            let b = bytes[(offset + 4)..<(offset + 8)].map(UInt64.init)
            let size = bigEndian ? b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3] : b[3] << 24 | b[2] << 16 | b[1] << 8 | b[0]
            let available = UInt64(bytes.count - offset - 8)
            if tag(offset) == dataID {
                guard size != 0, size != 0xFFFF_FFFF, size > available else { return nil }
                return "truncated: its \(dataID) chunk declares \(size) bytes of samples but the file ends \(available) bytes into it (after \(bytes.count) bytes)"
            }
            guard size <= available else { return nil }   // a cut-short chunk before the data: the decoder says what is wrong
            offset += 8 + Int(size) + Int(size & 1)          // chunks are padded to an even size
        }
        return nil
    }

    /// Writes `clip` as a WAV file (16-bit PCM, clipped to [-1, 1], or 32-bit float), atomically.
    public static func writeWAV(_ clip: AudioClip, to path: String, encoding: Encoding = .pcm16) throws {
        try FileIO.writeAtomically(to: path) { temporaryPath in
            var info = SF_INFO()
            info.samplerate = Int32(clip.sampleRate)
            info.channels = Int32(clip.channels)
            info.format = Int32(SF_FORMAT_WAV) | Int32(encoding == .pcm16 ? SF_FORMAT_PCM_16 : SF_FORMAT_FLOAT)
            guard let file = sf_open(temporaryPath, Int32(SFM_WRITE), &info) else {
                throw DataIOError.invalidAudio(path: path, message: "cannot create: \(String(cString: sf_strerror(nil)))")
            }
            if encoding == .pcm16 {
                // Scale floats so ±1.0 maps to the full 16-bit range, clipping beyond.
                sf_command(file, Int32(SFC_SET_CLIPPING), nil, Int32(SF_TRUE))
            }
            let frames = Int64(clip.frameCount)
            let written = clip.samples.withUnsafeBufferPointer { sf_writef_float(file, $0.baseAddress, frames) }
            let closed = sf_close(file)
            guard written == frames, closed == 0 else {
                throw DataIOError.invalidAudio(path: path, message: "write failed after \(written) of \(frames) frames")
            }
        }
    }
}

/// A folder of audio clips as a `(N, length)` tensor of mono samples at `sampleRate`, with labels
/// from first-level sub-folders (sorted names → ids), like `ImageFolder`. Every clip is mixed to
/// mono, resampled, and cropped or zero-padded to `length` frames.
public final class AudioFolder: @unchecked Sendable {
    /// The folder's standardized absolute path.
    public let root: String
    /// The rate (Hz) every clip was resampled to.
    public let sampleRate: Int
    /// Frames per clip after cropping or zero-padding.
    public let length: Int
    /// `(N, length)` samples in [-1, 1].
    public let clips: Tensor
    /// One class id per clip; empty when the folder has no class sub-folders.
    public let labels: [Int]
    /// Class names by id (the sorted sub-folder names); empty when the folder has no sub-folders.
    public let classNames: [String]
    /// Paths of the clips in `clips`, in row order (sorted within each class).
    public let files: [String]
    /// Paths of the audio files that could not be read, with the reason (each also reported through `warn`).
    public let skipped: [(path: String, reason: String)]

    /// File extensions recognised as audio (lower-cased), the formats libsndfile decodes.
    public static let audioExtensions: Set<String> = ["wav", "flac", "ogg", "oga", "aiff", "aif"]

    /// Number of clips loaded (rows of `clips`).
    public var count: Int { files.count }

    /// Loads every audio file under `path` (recursively, hidden files skipped), mixed to mono, resampled to
    /// `sampleRate` Hz and cropped or padded to `length` frames, decoding in parallel. Unreadable files are
    /// skipped with one line each to `warn`; throws when nothing is usable or `path` is not a folder.
    public init(path: String, sampleRate: Int, length: Int,
                warn: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws {
        guard sampleRate > 0, length > 0 else { throw DataIOError.invalidArgument("AudioFolder: sample rate and length must be positive") }
        let root = URL(fileURLWithPath: path).standardizedFileURL.path
        self.root = root
        self.sampleRate = sampleRate
        self.length = length
        let manager = FileManager.default
        var isFolder: ObjCBool = false
        guard manager.fileExists(atPath: root, isDirectory: &isFolder), isFolder.boolValue else {
            throw DataIOError.io(path: root, message: "not a folder")
        }
        let entries = (try? manager.contentsOfDirectory(atPath: root)) ?? []
        let classNames = entries.filter { name in
            var sub: ObjCBool = false
            return !name.hasPrefix(".") && manager.fileExists(atPath: root + "/" + name, isDirectory: &sub) && sub.boolValue
        }.sorted()
        var candidates: [(path: String, label: Int)] = []
        func collect(_ folder: String, label: Int) {
            var found: [String] = []
            let walker = manager.enumerator(atPath: folder)
            while let relative = walker?.nextObject() as? String {
                let name = (relative as NSString).lastPathComponent
                if !name.hasPrefix("."), AudioFolder.audioExtensions.contains((name as NSString).pathExtension.lowercased()) {
                    found.append(folder + "/" + relative)
                }
            }
            candidates += found.sorted().map { ($0, label) }
        }
        if classNames.isEmpty { collect(root, label: 0) } else { for (i, name) in classNames.enumerated() { collect(root + "/" + name, label: i) } }

        var results = [Result<[Float], DataIOError>?](repeating: nil, count: candidates.count)
        results.withUnsafeMutableBufferPointer { buffer in
            let slots = SendablePointer(buffer.baseAddress!)
            let paths = UnsafeSendableBox(candidates.map(\.path))
            parallelFor(candidates.count, grain: 4) { start, end in
                for i in start..<end {
                    do {
                        let clip = try AudioIO.read(path: paths.value[i], mono: true).resampled(to: sampleRate).paddedOrCropped(to: length)
                        slots.p[i] = .success(clip.samples)
                    } catch let error as DataIOError {
                        slots.p[i] = .failure(error)
                    } catch {
                        slots.p[i] = .failure(.invalidAudio(path: paths.value[i], message: "\(error)"))
                    }
                }
            }
        }
        var kept: [[Float]] = []
        var labels: [Int] = []
        var files: [String] = []
        var skipped: [(path: String, reason: String)] = []
        for (i, result) in results.enumerated() {
            switch result! {
            case let .success(samples):
                kept.append(samples); labels.append(candidates[i].label); files.append(candidates[i].path)
            case let .failure(error):
                // As ImageFolder does: the line names the file once, then what is wrong with it.
                let reason: String
                switch error {
                case let .io(_, message), let .invalidAudio(_, message): reason = message
                default: reason = error.description
                }
                warn("warning: skipping \(candidates[i].path): \(reason)")
                skipped.append((candidates[i].path, reason))
            }
        }
        guard !kept.isEmpty else {
            throw DataIOError.emptyDataset(path: root, message: candidates.isEmpty ? "no usable audio: no audio files found" : "no usable audio: none of the \(candidates.count) files could be read")
        }
        clips = Tensor(shape: [kept.count, length], data: kept.flatMap { $0 })
        self.labels = classNames.isEmpty ? [] : labels
        self.classNames = classNames
        self.files = files
        self.skipped = skipped
    }
}

/// The read side of a file held in memory, for `sf_open_virtual`.
private final class MemoryFile {
    let bytes: UnsafeBufferPointer<UInt8>
    var position: sf_count_t = 0
    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    static func from(_ user: UnsafeMutableRawPointer?) -> MemoryFile { Unmanaged<MemoryFile>.fromOpaque(user!).takeUnretainedValue() }

    var length: sf_count_t { sf_count_t(bytes.count) }

    func seek(_ offset: sf_count_t, _ whence: Int32) -> sf_count_t {
        let base: sf_count_t
        switch whence {
        case SEEK_SET: base = 0
        case SEEK_CUR: base = position
        case SEEK_END: base = length
        default: return -1
        }
        let (target, overflow) = base.addingReportingOverflow(offset)
        guard !overflow, target >= 0 else { return -1 }
        position = target
        return position
    }

    func read(into destination: UnsafeMutableRawPointer?, _ count: sf_count_t) -> sf_count_t {
        guard let destination, count > 0, position < length else { return 0 }
        let n = Int(min(count, length - position))
        destination.copyMemory(from: bytes.baseAddress! + Int(position), byteCount: n)
        position += sf_count_t(n)
        return sf_count_t(n)
    }
}

extension AudioFolder {
    /// Whether `path` is a folder of sound files: it holds audio files (any depth) and no images.
    public static func isAudioFolder(_ path: String) -> Bool {
        var audio = 0, images = 0
        let walker = FileManager.default.enumerator(atPath: path)
        while let relative = walker?.nextObject() as? String {
            let ext = (relative as NSString).pathExtension.lowercased()
            if audioExtensions.contains(ext) { audio += 1 }
            if ImageFolder.imageExtensions.contains(ext) { images += 1 }
        }
        return audio > 0 && images == 0
    }

    /// The sample rate of the first readable audio file in `path` (sorted order): the default rate a
    /// folder is read at (files at other rates are resampled to it).
    public static func firstSampleRate(in path: String) -> Int? {
        var files: [String] = []
        let walker = FileManager.default.enumerator(atPath: path)
        while let relative = walker?.nextObject() as? String {
            if audioExtensions.contains((relative as NSString).pathExtension.lowercased()) { files.append(relative) }
        }
        for file in files.sorted() {
            if let clip = try? AudioIO.read(path: path + "/" + file, mono: true) { return clip.sampleRate }
        }
        return nil
    }
}
