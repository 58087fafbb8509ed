import Foundation
import DataIO

// TensorBoard event files, written by hand: no protobuf runtime, no TensorFlow.
//
// A file is a sequence of TFRecords, each
//
//     uint64 length (little-endian) · uint32 masked CRC-32C of those 8 bytes · data · uint32 masked CRC-32C of data
//
// where masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8, and each record's data is one serialized
// `tensorboard.Event`. The fields written, with their numbers from tensorboard's
// compat/proto/event.proto, summary.proto, tensor.proto and plugins/text/plugin_data.proto (read
// from the installed package's descriptors, tensorboard 2.x):
//
//     Event          wall_time 1 (double) · step 2 (int64) · file_version 3 (string) · summary 5 · session_log 7
//     SessionLog     status 1 (enum: START = 1)
//     Summary        value 1 (repeated Value)
//     Summary.Value  tag 1 · simple_value 2 (float) · image 4 · audio 6 · tensor 8 · metadata 9
//     Summary.Image  height 1 · width 2 · colorspace 3 (1 gray, 2 gray+alpha, 3 RGB, 4 RGBA) · encoded_image_string 4
//     Summary.Audio  sample_rate 1 (float) · num_channels 2 · length_frames 3 · encoded_audio_string 4 · content_type 5
//     SummaryMetadata  plugin_data 1 (PluginData: plugin_name 1, content 2) · data_class 4 (enum: TENSOR = 2)
//     TensorProto    dtype 1 (enum: DT_STRING = 7) · tensor_shape 2 (TensorShapeProto; empty = a scalar) · string_val 8
//     TextPluginData version 1 (0, the default, so the content is empty)
//
// Text is what tensorboard's text plugin reads: a Value whose metadata names the plugin "text" and
// whose tensor is a scalar string.

/// Why the TensorBoard folder or event file cannot be written, or an image or a sound cannot go into it.
public struct TensorBoardError: Error, CustomStringConvertible, Equatable {
    /// The problem in one sentence, naming the folder, file or tag concerned.
    public let message: String
    /// The message itself.
    public var description: String { message }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TFRecord framing.
public enum CRC32C {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    /// The CRC-32C of `bytes` ("123456789" → 0xE3069283).
    public static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// The masked CRC that TFRecords store (so that a CRC of data containing CRCs stays well mixed).
    public static func masked<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        let c = checksum(bytes)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}

/// Protobuf wire encoding of the few field kinds the event files need.
struct ProtoWriter {
    var bytes: [UInt8] = []

    mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wireType: UInt64) { varint(UInt64(field) << 3 | wireType) }
    /// int32/int64/enum (non-negative here).
    mutating func int(_ field: Int, _ value: Int) { key(field, 0); varint(UInt64(bitPattern: Int64(value))) }
    mutating func double(_ field: Int, _ value: Double) {
        key(field, 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }
    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }
    mutating func data(_ field: Int, _ value: [UInt8]) { key(field, 2); varint(UInt64(value.count)); bytes.append(contentsOf: value) }
    mutating func string(_ field: Int, _ value: String) { data(field, Array(value.utf8)) }
    mutating func message(_ field: Int, _ build: (inout ProtoWriter) -> Void) {
        var inner = ProtoWriter()
        build(&inner)
        data(field, inner.bytes)
    }
}

/// Writes a TensorBoard run: one event file `events.out.tfevents.<unix time>.<host>.<pid>` in
/// `directory`, to which scalars, images (PNG), audio (WAV) and text are appended.
///
/// Events are buffered and written out by `flush()`, which also happens by itself when an event is
/// added `flushIntervalSeconds` after the last flush, so a killed run keeps all but its last
/// seconds. `close()` flushes. A resumed run makes a new writer in the same folder: a new file, and
/// `addSessionStart(step:)` tells TensorBoard to drop what earlier files logged past the resumed step.
/// Look at the runs with `tensorboard --logdir runs`.
public final class TensorBoardWriter: @unchecked Sendable {
    /// The run's TensorBoard folder (what `tensorboard --logdir` is pointed at, or a subfolder of it).
    public let directory: String
    /// The event file.
    public let path: String
    /// Seconds after the last flush at which adding an event flushes by itself (10 by default).
    public var flushIntervalSeconds: Double
    private let lock = NSLock()
    private var pending: [UInt8] = []
    private var lastFlush = Date()
    private var handle: FileHandle?
    /// The step and CRC of each image tag's last image: the same picture again at the same step
    /// (loss.png redrawn after an evaluation and again at the epoch's end) is not logged twice.
    private var lastImage: [String: (step: Int, crc: UInt32)] = [:]

    /// Creates `directory` if needed and starts a new event file there with the `file_version` event.
    public init(directory: String, flushIntervalSeconds: Double = 10) throws {
        self.directory = directory
        self.flushIntervalSeconds = flushIntervalSeconds
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw TensorBoardError(message: "the TensorBoard folder \(directory) cannot be created: \(TensorBoardWriter.why(directory, error))")
        }
        var host = ProcessInfo.processInfo.hostName
        if host.isEmpty { host = "localhost" }
        let base = directory + "/events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host).\(getpid())"
        // Two writers of one process in one second (a resume in a test) get distinct files; the
        // suffix sorts after the plain name, so TensorBoard reads them in order.
        var candidate = base, k = 0
        while FileManager.default.fileExists(atPath: candidate) { k += 1; candidate = base + ".\(k)" }
        path = candidate
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
            throw TensorBoardError(message: "the TensorBoard event file \(path) cannot be created")
        }
        handle = h
        var event = ProtoWriter()
        event.double(1, Date().timeIntervalSince1970)
        event.int(2, 0)
        event.string(3, "brain.Event:2")
        append(record: event.bytes)
        try flush()
    }

    deinit { try? close() }

    /// Why `directory` cannot be made: the nearest existing ancestor is a file or not writable.
    private static func why(_ directory: String, _ error: Error) -> String {
        var path = (directory as NSString).standardizingPath
        var isFolder: ObjCBool = false
        while !path.isEmpty && path != "/" && !FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) {
            path = (path as NSString).deletingLastPathComponent
        }
        if path.isEmpty { path = "." ; _ = FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) }
        if !isFolder.boolValue { return "\(path) is a file, not a folder" }
        if !FileManager.default.isWritableFile(atPath: path) { return "\(path) is not writable" }
        return error.localizedDescription
    }

    /// One TFRecord around `data`.
    static func record(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = UInt64(data.count).littleEndian
        let header = withUnsafeBytes(of: length) { Array($0) }
        out += header
        withUnsafeBytes(of: CRC32C.masked(header).littleEndian) { out.append(contentsOf: $0) }
        out += data
        withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { out.append(contentsOf: $0) }
        return out
    }

    private func append(record data: [UInt8]) {
        lock.lock()
        pending += TensorBoardWriter.record(data)
        let due = Date().timeIntervalSince(lastFlush) >= flushIntervalSeconds
        lock.unlock()
        if due { try? flush() }
    }

    /// An event at `step` whose summary holds the values `build` writes (each a `Summary.Value`).
    private func addSummary(step: Int, _ build: (inout ProtoWriter) -> Void) {
        var event = ProtoWriter()
        event.double(1, Date().timeIntervalSince1970)
        event.int(2, step)
        event.message(5, build)
        append(record: event.bytes)
    }

    /// Scalars at `step` under their tags, in one event; NaN values (empty cells) are left out.
    public func addScalars(_ values: [(tag: String, value: Double)], step: Int) {
        let kept = values.filter { !$0.value.isNaN }
        guard !kept.isEmpty else { return }
        addSummary(step: step) { summary in
            for (tag, value) in kept {
                summary.message(1) { v in v.string(1, tag); v.float(2, Float(value)) }
            }
        }
    }

    /// One scalar at `step`.
    public func addScalar(_ tag: String, _ value: Double, step: Int) { addScalars([(tag, value)], step: step) }

    /// A PNG image at `step`; its size and colour type come from its header.
    public func addImage(_ tag: String, png: [UInt8], step: Int) throws {
        let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        guard png.count >= 26, Array(png[0..<8]) == signature, Array(png[12..<16]) == Array("IHDR".utf8) else {
            throw TensorBoardError(message: "the image for \(tag) is not a PNG")
        }
        func be32(_ i: Int) -> Int { Int(png[i]) << 24 | Int(png[i + 1]) << 16 | Int(png[i + 2]) << 8 | Int(png[i + 3]) }
        let width = be32(16), height = be32(20)
        let colorspace: Int
        switch png[25] {  // PNG colour type
        case 0: colorspace = 1
        case 4: colorspace = 2
        case 6: colorspace = 4
        default: colorspace = 3  // RGB or palette
        }
        let crc = CRC32C.checksum(png)
        lock.lock()
        let repeated = lastImage[tag].map { $0.step == step && $0.crc == crc } ?? false
        lastImage[tag] = (step, crc)
        lock.unlock()
        if repeated { return }
        addSummary(step: step) { summary in
            summary.message(1) { v in
                v.string(1, tag)
                v.message(4) { image in
                    image.int(1, height)
                    image.int(2, width)
                    image.int(3, colorspace)
                    image.data(4, png)
                }
            }
        }
    }

    /// An image at `step`, encoded as PNG.
    public func addImage(_ tag: String, image: PixelImage, step: Int) throws {
        try addImage(tag, png: try ImageCodec.encodePNG(image), step: step)
    }

    /// The PNG file at `path` as an image at `step`; nothing when there is no such file (a plot
    /// that had no points to draw yet).
    public func addImageFile(_ tag: String, path: String, step: Int) throws {
        guard let data = FileManager.default.contents(atPath: path) else { return }
        try addImage(tag, png: [UInt8](data), step: step)
    }

    /// A WAV file's bytes at `step`; its rate, channels and length come from its `fmt ` and `data` chunks.
    public func addAudio(_ tag: String, wav: [UInt8], step: Int) throws {
        func le16(_ i: Int) -> Int { Int(wav[i]) | Int(wav[i + 1]) << 8 }
        func le32(_ i: Int) -> Int { le16(i) | le16(i + 2) << 16 }
        guard wav.count >= 12, Array(wav[0..<4]) == Array("RIFF".utf8), Array(wav[8..<12]) == Array("WAVE".utf8) else {
            throw TensorBoardError(message: "the sound for \(tag) is not a WAV file")
        }
        var offset = 12
        var format: (channels: Int, rate: Int, blockAlign: Int)? = nil
        var frames: Int? = nil
        while offset + 8 <= wav.count {
            let id = String(decoding: wav[offset..<(offset + 4)], as: UTF8.self), size = le32(offset + 4)
            let body = offset + 8
            if id == "fmt ", body + 16 <= wav.count {
                format = (le16(body + 2), le32(body + 4), le16(body + 12))
            } else if id == "data", let f = format, f.blockAlign > 0 {
                frames = min(size, wav.count - body) / f.blockAlign
                break
            }
            offset = body + size + (size & 1)
        }
        guard let format, let frames, format.channels > 0, format.rate > 0 else {
            throw TensorBoardError(message: "the WAV file for \(tag) has no readable fmt and data chunks")
        }
        addSummary(step: step) { summary in
            summary.message(1) { v in
                v.string(1, tag)
                v.message(6) { audio in
                    audio.float(1, Float(format.rate))
                    audio.int(2, format.channels)
                    audio.int(3, frames)
                    audio.data(4, wav)
                    audio.string(5, "audio/wav")
                }
            }
        }
    }

    /// The WAV file at `path` as audio at `step`.
    public func addAudioFile(_ tag: String, path: String, step: Int) throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TensorBoardError(message: "the WAV file \(path) for \(tag) cannot be read")
        }
        try addAudio(tag, wav: [UInt8](data), step: step)
    }

    /// Text at `step`, shown (as Markdown) in TensorBoard's Text tab.
    public func addText(_ tag: String, _ text: String, step: Int) {
        addSummary(step: step) { summary in
            summary.message(1) { v in
                v.string(1, tag)
                v.message(9) { metadata in
                    metadata.message(1) { plugin in
                        plugin.string(1, "text")
                        plugin.data(2, [])  // TextPluginData(version: 0)
                    }
                    metadata.int(4, 2)  // DATA_CLASS_TENSOR
                }
                v.message(8) { tensor in
                    tensor.int(1, 7)  // DT_STRING
                    tensor.message(2) { _ in }  // shape []: a scalar
                    tensor.string(8, text)
                }
            }
        }
    }

    /// Marks a restart at `step` (a `SessionLog` START): TensorBoard discards events of earlier
    /// files with steps from `step` on, which a killed run wrote after its last checkpoint.
    public func addSessionStart(step: Int) {
        var event = ProtoWriter()
        event.double(1, Date().timeIntervalSince1970)
        event.int(2, step)
        event.message(7) { log in log.int(1, 1) }
        append(record: event.bytes)
    }

    /// Writes the buffered events to the file.
    public func flush() throws {
        lock.lock()
        defer { lock.unlock() }
        lastFlush = Date()
        guard !pending.isEmpty, let handle else { return }
        do {
            try handle.seekToEnd()
            try handle.write(contentsOf: pending)
            pending = []
        } catch {
            throw TensorBoardError(message: "the TensorBoard event file \(path) cannot be written: \(error.localizedDescription)")
        }
    }

    /// Flushes and closes the file; later events are dropped.
    public func close() throws {
        try flush()
        lock.lock()
        defer { lock.unlock() }
        try? handle?.close()
        handle = nil
    }
}

/// The writers the training loop hands to running tasks (see `TrainingTask.tensorBoard`).
final class TaskTensorBoards: @unchecked Sendable {
    static let shared = TaskTensorBoards()
    private let lock = NSLock()
    private var writers: [ObjectIdentifier: TensorBoardWriter] = [:]

    subscript(task: ObjectIdentifier) -> TensorBoardWriter? {
        get { lock.lock(); defer { lock.unlock() }; return writers[task] }
        set { lock.lock(); defer { lock.unlock() }; writers[task] = newValue }
    }
}

extension TrainingTask {
    /// The run's TensorBoard writer while `TrainingLoop` runs this task (nil when TensorBoard is
    /// off or outside a run): tasks log their pictures, sound and text through it.
    public var tensorBoard: TensorBoardWriter? {
        get { TaskTensorBoards.shared[ObjectIdentifier(self)] }
        set { TaskTensorBoards.shared[ObjectIdentifier(self)] = newValue }
    }
}
