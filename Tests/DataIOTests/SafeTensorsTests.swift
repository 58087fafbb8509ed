import Foundation
import XCTest
import DataIO
import TensorCore

final class SafeTensorsTests: XCTestCase {
    /// A well-formed file built by hand: 8-byte length, header, data.
    private func file(header: String, data: [UInt8]) -> [UInt8] {
        let h = Array(header.utf8)
        var bytes = withUnsafeBytes(of: UInt64(h.count).littleEndian) { Array($0) }
        bytes += h
        bytes += data
        return bytes
    }

    func testRoundTripKeepsOrderValuesMetadataAndInt64() throws {
        let folder = try makeTemporaryFolder(self)
        let url = folder.appendingPathComponent("model.safetensors")
        let w = Tensor(shape: [2, 3], data: [1, -2.5, 3.25, .pi, -0, 1e-30])
        let b = Tensor(shape: [3], data: [0.5, Float.greatestFiniteMagnitude, -7])
        let scalar = Tensor(shape: [], data: [42])
        let metadata = ["kind": "gan", "hyper": "{\"lr\":0.0002,\"beta\":[0.5,0.999]}", "vocab": "ab\n\"ü\u{1}"]
        try SafeTensors.write(items: [.float32("zeta.weight", w), .float32("alpha.bias", b), .float32("scalar", scalar),
                                      .int64("step", shape: [1], values: [123_456_789_012]),
                                      .int64("tokens", shape: [2, 2], values: [-1, 0, Int64.max, Int64.min])],
                              metadata: metadata, to: url)
        let read = try SafeTensors.read(url)
        XCTAssertEqual(read.names, ["zeta.weight", "alpha.bias", "scalar", "step", "tokens"])
        XCTAssertEqual(read.metadata, metadata)
        XCTAssertEqual(read.tensors["zeta.weight"]!.shape, [2, 3])
        XCTAssertEqual(read.tensors["zeta.weight"]!.scalars.map(\.bitPattern), w.scalars.map(\.bitPattern))
        XCTAssertEqual(read.tensors["alpha.bias"]!.scalars, b.scalars)
        XCTAssertEqual(read.tensors["scalar"]!.shape, [])
        XCTAssertEqual(read.tensors["scalar"]!.scalars, [42])
        XCTAssertEqual(try read.int64Array("step"), [123_456_789_012])
        XCTAssertEqual(try read.int64Array("tokens"), [-1, 0, Int64.max, Int64.min])
        XCTAssertEqual(read.entries["tokens"]!.dtype, .I64)
        XCTAssertEqual(read.entries["tokens"]!.shape, [2, 2])
        // The header is padded so the data starts 8-byte aligned.
        let bytes = try Data(contentsOf: url)
        XCTAssertEqual(bytes.prefix(8).enumerated().reduce(0) { $0 | (Int($1.element) << (8 * $1.offset)) } % 8, 0)
        // No temporary files are left behind.
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["model.safetensors"])
    }

    func testWriteReplacesAtomicallyAndRejectsBadInput() throws {
        let folder = try makeTemporaryFolder(self)
        let url = folder.appendingPathComponent("ckpt.safetensors")
        try SafeTensors.write([("a", Tensor(shape: [1], data: [1]))], metadata: [:], to: url)
        try SafeTensors.write([("a", Tensor(shape: [1], data: [2]))], metadata: [:], to: url)
        XCTAssertEqual(try SafeTensors.read(url).tensors["a"]!.scalars, [2])
        // A failed save (duplicate names) leaves the old checkpoint intact.
        assertThrowsDataIOError(["duplicate tensor name \"x\""]) {
            try SafeTensors.write([("x", Tensor(shape: [1], data: [3])), ("x", Tensor(shape: [1], data: [4]))], metadata: [:], to: url)
        }
        XCTAssertEqual(try SafeTensors.read(url).tensors["a"]!.scalars, [2])
        // A save into a missing folder fails with the path named.
        let missing = folder.appendingPathComponent("nope/ckpt.safetensors")
        assertThrowsDataIOError([missing.path]) { try SafeTensors.write([("a", Tensor(shape: [1], data: [1]))], to: missing) }
    }

    func testReadsFileWrittenByPythonSafetensors() throws {
        let file = try SafeTensors.read(fixtureURL("python_written.safetensors"))
        let expected = try loadJSON(fixtureURL("python_written.json"))
        XCTAssertEqual(file.metadata, expected["metadata"] as? [String: String])
        let tensors = expected["tensors"] as! [String: [String: Any]]
        XCTAssertEqual(Set(file.names), Set(tensors.keys))
        for (name, info) in tensors {
            let tensor = try file.tensor(name)
            XCTAssertEqual(tensor.shape, info["shape"] as! [Int], name)
            let values = (info["values"] as! [Double]).map { Float($0) }
            XCTAssertEqual(tensor.scalars, values, name)
        }
        XCTAssertEqual(try file.int64Array("i64"), [-(1 << 40), -1, 0, 1, 1 << 40, 7])
        XCTAssertEqual(try file.int64Array("i32"), [-5, 0, 123_456])
        XCTAssertEqual(file.entries["bf16"]?.dtype, .BF16)
        XCTAssertEqual(file.entries["f16"]?.dtype, .F16)
        XCTAssertEqual(file.entries["f64"]?.dtype, .F64)
        assertThrowsDataIOError(["not an integer type"]) { _ = try file.int64Array("f32") }
        assertThrowsDataIOError(["no tensor named \"missing\""]) { _ = try file.tensor("missing") }
    }

    func testFileWrittenByForgeLoadsInPython() throws {
        guard let python = pythonWithSafeTensors else { throw XCTSkip("no Python with safetensors and numpy") }
        let folder = try makeTemporaryFolder(self)
        let url = folder.appendingPathComponent("forge.safetensors")
        let weight = Tensor(shape: [2, 2, 3], data: (0..<12).map { Float($0) * 0.37 - 2 })
        try SafeTensors.write(items: [.float32("layer.weight", weight), .int64("step", shape: [], values: [9_007_199_254_740_993])],
                              metadata: ["kind": "test", "json": "{\"a\": [1, 2]}"], to: url)
        let script = """
        import json, sys
        from safetensors import safe_open
        out = {}
        with safe_open(sys.argv[1], framework="numpy") as f:
            out["metadata"] = f.metadata()
            for k in f.keys():
                t = f.get_tensor(k)
                out[k] = {"dtype": str(t.dtype), "shape": list(t.shape), "values": [repr(v) for v in t.ravel().tolist()]}
        print(json.dumps(out))
        """
        let result = try runProcess(python, ["-c", script, url.path])
        XCTAssertEqual(result.status, 0)
        let parsed = try JSONSerialization.jsonObject(with: Data(result.output.utf8)) as! [String: Any]
        XCTAssertEqual(parsed["metadata"] as? [String: String], ["kind": "test", "json": "{\"a\": [1, 2]}"])
        let w = parsed["layer.weight"] as! [String: Any]
        XCTAssertEqual(w["dtype"] as? String, "float32")
        XCTAssertEqual(w["shape"] as? [Int], [2, 2, 3])
        // Python prints float32 values widened to double with repr: compare exactly.
        XCTAssertEqual((w["values"] as! [String]).map { Float(Double($0)!) }, weight.scalars)
        let step = parsed["step"] as! [String: Any]
        XCTAssertEqual(step["dtype"] as? String, "int64")
        XCTAssertEqual(step["values"] as? [String], ["9007199254740993"])
    }

    func testRejectsMalformedFilesWithoutCrashing() throws {
        let f32 = "\"dtype\":\"F32\""
        let cases: [(String, [UInt8], String)] = [
            ("too short", [1, 2, 3], "too short"),
            ("header past end", file(header: "{}", data: []).enumerated().map { $0.offset == 0 ? 200 : $0.element }, "points past the end"),
            ("huge header", withUnsafeBytes(of: UInt64(1 << 40).littleEndian) { Array($0) } + [0x7B, 0x7D], "exceeds the limit"),
            ("not JSON", file(header: "{nope}", data: []), "not valid JSON"),
            ("not an object", file(header: "[1, 2]", data: []), "JSON object"),
            ("data past end", file(header: "{\"a\":{\(f32),\"shape\":[2],\"data_offsets\":[0,8]}}", data: [0, 0, 0, 0]), "past the end"),
            ("negative shape", file(header: "{\"a\":{\(f32),\"shape\":[-1],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]), "negative"),
            ("overflowing shape", file(header: "{\"a\":{\(f32),\"shape\":[4611686018427387904,4611686018427387904],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]), "larger than the data buffer"),
            ("too many digits", file(header: "{\"a\":{\(f32),\"shape\":[99999999999999999999999],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]), "non-integer"),
            ("size mismatch", file(header: "{\"a\":{\(f32),\"shape\":[3],\"data_offsets\":[0,8]}}", data: [UInt8](repeating: 0, count: 12)), "needs 12 bytes"),
            ("duplicate", file(header: "{\"a\":{\(f32),\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\(f32),\"shape\":[1],\"data_offsets\":[4,8]}}", data: [UInt8](repeating: 0, count: 8)), "duplicate name \"a\""),
            ("overlap", file(header: "{\"a\":{\(f32),\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\(f32),\"shape\":[1],\"data_offsets\":[4,8]}}", data: [UInt8](repeating: 0, count: 8)), "overlaps"),
            ("hole", file(header: "{\"a\":{\(f32),\"shape\":[1],\"data_offsets\":[4,8]}}", data: [UInt8](repeating: 0, count: 8)), "hole"),
            ("trailing bytes", file(header: "{\"a\":{\(f32),\"shape\":[1],\"data_offsets\":[0,4]}}", data: [UInt8](repeating: 0, count: 8)), "cover 4"),
            ("unknown dtype", file(header: "{\"a\":{\"dtype\":\"F31\",\"shape\":[1],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]), "unknown dtype \"F31\""),
            ("reversed offsets", file(header: "{\"a\":{\(f32),\"shape\":[0],\"data_offsets\":[4,0]}}", data: [0, 0, 0, 0]), "reversed"),
            ("missing field", file(header: "{\"a\":{\(f32),\"shape\":[1]}}", data: [0, 0, 0, 0]), "missing data_offsets"),
            ("bad metadata", file(header: "{\"__metadata__\":{\"k\":1}}", data: []), "not a string"),
            ("float shape", file(header: "{\"a\":{\(f32),\"shape\":[1.0],\"data_offsets\":[0,4]}}", data: [0, 0, 0, 0]), "non-integer"),
            ("deep nesting", file(header: String(repeating: "[", count: 500), data: []), "JSON object"),
            ("deep nesting in object", file(header: "{\"a\":" + String(repeating: "[", count: 500), data: []), "nested too deeply"),
        ]
        for (label, bytes, fragment) in cases {
            do {
                _ = try SafeTensors.read(bytes: bytes, source: "case-\(label).safetensors")
                XCTFail("\(label): accepted")
            } catch let error as DataIOError {
                XCTAssertTrue(error.description.contains("case-\(label).safetensors"), "\(label): \(error)")
                XCTAssertTrue(error.description.contains(fragment), "\(label): \"\(error)\" lacks \"\(fragment)\"")
            }
        }
    }

    func testFuzzedFilesNeverCrash() throws {
        let valid = try SafeTensors.encode(items: [.float32("w", Tensor(shape: [2, 3], data: [1, 2, 3, 4, 5, 6])),
                                                   .int64("n", shape: [2], values: [7, 8])], metadata: ["m": "v"])
        XCTAssertEqual(try SafeTensors.read(bytes: valid).tensors["w"]!.scalars, [1, 2, 3, 4, 5, 6])
        var generator = RandomGenerator(seed: 7)
        var accepted = 0
        for _ in 0..<3000 {
            var bytes = valid
            switch generator.nextInt(below: 3) {
            case 0:  // flip a few bytes
                for _ in 0..<(1 + generator.nextInt(below: 4)) {
                    bytes[generator.nextInt(below: bytes.count)] = UInt8(generator.nextInt(below: 256))
                }
            case 1:  // truncate
                bytes = Array(bytes.prefix(generator.nextInt(below: bytes.count)))
            default:  // random bytes
                bytes = (0..<generator.nextInt(below: 200)).map { _ in UInt8(generator.nextInt(below: 256)) }
            }
            if let file = try? SafeTensors.read(bytes: bytes) {
                accepted += 1
                // Anything accepted is internally consistent.
                for name in file.names { XCTAssertEqual(file.tensors[name]!.count, file.entries[name]!.shape.reduce(1, *)) }
            }
        }
        XCTAssertLessThan(accepted, 3000)
    }

    func testHalfPrecisionConversionIsExact() throws {
        // 1, -2, 65504 (max), 2^-24 (smallest subnormal), inf, 0x3555 ≈ 0.33325
        let halves: [UInt16] = [0x3C00, 0xC000, 0x7BFF, 0x0001, 0x7C00, 0x3555]
        let data = halves.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] }
        let bytes = file(header: "{\"h\":{\"dtype\":\"F16\",\"shape\":[6],\"data_offsets\":[0,12]}}", data: data)
        let values = try SafeTensors.read(bytes: bytes).tensors["h"]!.scalars
        XCTAssertEqual(Array(values[0..<5]), [1, -2, 65504, Float(sign: .plus, exponent: -24, significand: 1), .infinity])
        XCTAssertEqual(values[5], 0.333251953125)
    }
}
