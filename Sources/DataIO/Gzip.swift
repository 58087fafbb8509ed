import Foundation
import CZlib

/// gzip decompression through zlib.
enum Gzip {
    /// Whether `bytes` start with the gzip magic number.
    static func isGzip(_ bytes: [UInt8]) -> Bool { bytes.count >= 2 && bytes[0] == 0x1F && bytes[1] == 0x8B }

    /// The decompressed contents of gzip `bytes` (all members, as `gunzip` does). Output grows
    /// with the data actually inflated, never from a size the file claims, up to `limit` bytes.
    static func decompress(_ bytes: [UInt8], source: String, limit: Int = 1 << 31) throws -> [UInt8] {
        var output = [UInt8]()
        output.reserveCapacity(min(limit, bytes.count * 4))
        var stream = z_stream()
        // 16 + MAX_WBITS: expect a gzip wrapper.
        guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DataIOError.io(path: source, message: "zlib: cannot initialise the decompressor")
        }
        defer { inflateEnd(&stream) }
        var chunk = [UInt8](repeating: 0, count: 1 << 18)
        try bytes.withUnsafeBufferPointer { input in
            stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress)
            stream.avail_in = UInt32(input.count)
            while true {
                let status: Int32 = chunk.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = UInt32(out.count)
                    return inflate(&stream, Z_NO_FLUSH)
                }
                let produced = chunk.count - Int(stream.avail_out)
                guard output.count + produced <= limit else {
                    throw DataIOError.io(path: source, message: "gzip data expands beyond \(limit) bytes")
                }
                output.append(contentsOf: chunk[0..<produced])
                switch status {
                case Z_STREAM_END:
                    // Concatenated members: keep going while input remains.
                    if stream.avail_in == 0 { return }
                    guard inflateReset(&stream) == Z_OK else { throw DataIOError.io(path: source, message: "zlib: reset failed") }
                case Z_OK:
                    continue
                case Z_BUF_ERROR where stream.avail_in == 0:
                    throw DataIOError.io(path: source, message: "truncated gzip data")
                default:
                    let reason = stream.msg.map { String(cString: $0) } ?? "error \(status)"
                    throw DataIOError.io(path: source, message: "corrupt gzip data: \(reason)")
                }
            }
        }
        return output
    }
}
