// libFuzzer harness: safetensors bytes → SafeTensors.read(bytes:) (header JSON, entries, offsets), then
// every entry read back as a tensor or int64 array.
import DataIO

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    guard let file = try? SafeTensors.read(bytes: bytes) else { return 0 }
    for name in file.entries.keys {
        _ = try? file.tensor(name)
        _ = try? file.int64Array(name)
    }
    return 0
}
