// libFuzzer harness: IDX (MNIST-family) bytes, gzip-compressed or not → Gzip.decompress and IDX.parse,
// as IDX.read does.
@testable import DataIO

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let raw = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    // A 16 MiB inflate limit (IDX.read allows 2 GiB) keeps a gzip bomb inside libFuzzer's memory limit.
    guard let bytes = Gzip.isGzip(raw) ? try? Gzip.decompress(raw, source: "<fuzz>", limit: 1 << 24) : raw else { return 0 }
    if let array = try? IDX.parse(bytes) {
        precondition(array.shape.reduce(1, *) == array.bytes.count, "IDX: shape \(array.shape) disagrees with \(array.bytes.count) bytes")
    }
    return 0
}
