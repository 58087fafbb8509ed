// libFuzzer harness: JPEG bytes → ImageCodec (header probe and full decode through the CJPEG shim).
import DataIO

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? ImageCodec.dimensions(bytes: bytes)
    // A small pixel budget keeps a header that claims a huge image cheap; the budget check itself is
    // the same code at any budget.
    if let image = try? ImageCodec.decodeJPEG(bytes: bytes, pixelBudget: 1 << 20) {
        precondition(image.pixels.count == image.width * image.height * image.channels, "JPEG: pixel count disagrees with the header")
    }
    return 0
}
