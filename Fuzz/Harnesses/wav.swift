// libFuzzer harness: audio file bytes (WAV and whatever else libsndfile recognises) → AudioIO.decode,
// the in-memory form of AudioIO.read.
import DataIO

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    if let clip = try? AudioIO.decode(bytes: bytes, source: "<fuzz>") {
        precondition(clip.samples.count == clip.frameCount * clip.channels, "WAV: sample count disagrees with the frames")
    }
    return 0
}
