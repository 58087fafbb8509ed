import Foundation
import TensorCore

/// Element types of the safetensors format, by their names in the header.
public enum SafeTensorsDType: String, Sendable, CaseIterable {
    case F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL
    // Names the format defines that Forge recognises but cannot convert.
    case U16, U32, U64, F8_E4M3, F8_E5M2

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .F64, .I64, .U64: return 8
        case .F32, .I32, .U32: return 4
        case .F16, .BF16, .I16, .U16: return 2
        case .I8, .U8, .BOOL, .F8_E4M3, .F8_E5M2: return 1
        }
    }

    /// Whether Forge can convert this type to Float32 (and, for integers, to Int64).
    var isConvertible: Bool {
        switch self {
        case .U16, .U32, .U64, .F8_E4M3, .F8_E5M2: return false
        default: return true
        }
    }

    var isInteger: Bool {
        switch self {
        case .I64, .I32, .I16, .I8, .U8, .BOOL, .U16, .U32, .U64: return true
        default: return false
        }
    }
}

/// One tensor's entry in a safetensors header.
public struct SafeTensorsEntry: Sendable, Equatable {
    /// The tensor's name, the key in the JSON header.
    public let name: String
    /// The element type stored in the file.
    public let dtype: SafeTensorsDType
    /// The dimensions, C order; `[]` for a scalar.
    public let shape: [Int]
    /// Byte range inside the data buffer (which starts right after the header).
    public let dataRange: Range<Int>
}

/// A safetensors file read into memory and fully validated.
public struct SafeTensorsFile {
    /// Tensor names in header order.
    public let names: [String]
    /// Header entries by name.
    public let entries: [String: SafeTensorsEntry]
    /// The `__metadata__` string map (empty when absent).
    public let metadata: [String: String]
    /// Every tensor converted to Float32 (integers become the nearest Float).
    public let tensors: [String: Tensor]
    /// The file's data buffer (everything after the header).
    let data: [UInt8]
    /// Where the file came from, for error messages.
    public let source: String

    /// The Float32 tensor named `name`, or an error naming the missing tensor.
    public func tensor(_ name: String) throws -> Tensor {
        guard let tensor = tensors[name] else {
            throw DataIOError.invalidSafeTensors(path: source, message: "no tensor named \"\(name)\"")
        }
        return tensor
    }

    /// The exact integer values of an integer tensor (I64, I32, I16, I8, U8, BOOL) named `name`.
    public func int64Array(_ name: String) throws -> [Int64] {
        guard let entry = entries[name] else {
            throw DataIOError.invalidSafeTensors(path: source, message: "no tensor named \"\(name)\"")
        }
        guard entry.dtype.isInteger, entry.dtype.isConvertible else {
            throw DataIOError.invalidSafeTensors(path: source, message: "tensor \"\(name)\" has dtype \(entry.dtype.rawValue), not an integer type")
        }
        return SafeTensors.convertToInt64(data, entry)
    }
}

/// Reading and writing the safetensors checkpoint format: an 8-byte little-endian header length,
/// a JSON header (tensor name → dtype, shape, data_offsets relative to the data buffer; plus an
/// optional `__metadata__` string map), then the raw little-endian C-order tensor data.
public enum SafeTensors {
    /// Largest header accepted (the reference implementation's limit).
    public static let maxHeaderLength = 100_000_000

    /// A tensor to write: Float32 values from a `Tensor`, or exact Int64 values.
    public struct Item {
        /// The values of an `Item`: Float32 from a `Tensor`, or exact Int64 values (step counters, token ids)
        /// with their shape.
        public enum Payload {
            case float32(Tensor)
            case int64(shape: [Int], values: [Int64])
        }
        /// The tensor's name in the header.
        public let name: String
        /// What is written under `name`.
        public let payload: Payload

        /// A Float32 item holding `tensor`'s values and shape.
        public static func float32(_ name: String, _ tensor: Tensor) -> Item { Item(name: name, payload: .float32(tensor)) }
        /// An I64 item of `values` (C order) with `shape`, written exactly.
        public static func int64(_ name: String, shape: [Int], values: [Int64]) -> Item {
            Item(name: name, payload: .int64(shape: shape, values: values))
        }
    }

    // MARK: writing

    /// Writes Float32 `tensors` (header in the given order) and `metadata` to `url` atomically.
    public static func write(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to url: URL) throws {
        try write(items: tensors.map { Item.float32($0.name, $0.tensor) }, metadata: metadata, to: url)
    }

    /// Writes Float32 and Int64 items (header in the given order) and `metadata` to `url`
    /// atomically: temporary file in the same folder, fsync, rename, fsync of the folder.
    public static func write(items: [Item], metadata: [String: String] = [:], to url: URL) throws {
        let bytes = try encode(items: items, metadata: metadata, path: url.path)
        try FileIO.writeAtomically(bytes, to: url.path)
    }

    /// The bytes of a safetensors file holding `items` and `metadata`.
    public static func encode(items: [Item], metadata: [String: String] = [:], path: String = "<memory>") throws -> [UInt8] {
        var seen = Set<String>()
        var header = "{"
        if !metadata.isEmpty {
            // Sorted keys so the same checkpoint always gives the same bytes.
            let members = metadata.keys.sorted().map { "\(JSONWriter.quoted($0)):\(JSONWriter.quoted(metadata[$0]!))" }
            header += "\"__metadata__\":{" + members.joined(separator: ",") + "}"
        }
        var offset = 0
        for item in items {
            guard item.name != "__metadata__" else {
                throw DataIOError.invalidSafeTensors(path: path, message: "\"__metadata__\" cannot be a tensor name")
            }
            guard seen.insert(item.name).inserted else {
                throw DataIOError.invalidSafeTensors(path: path, message: "duplicate tensor name \"\(item.name)\"")
            }
            let dtype: SafeTensorsDType
            let shape: [Int]
            switch item.payload {
            case let .float32(tensor): dtype = .F32; shape = tensor.shape
            case let .int64(s, values):
                dtype = .I64; shape = s
                guard s.allSatisfy({ $0 >= 0 }), s.reduce(1, *) == values.count else {
                    throw DataIOError.invalidSafeTensors(path: path, message: "tensor \"\(item.name)\": \(values.count) values do not fill shape \(s)")
                }
            }
            let byteCount = shape.reduce(1, *) * dtype.byteSize
            if header.count > 1 { header += "," }
            header += "\(JSONWriter.quoted(item.name)):{\"dtype\":\"\(dtype.rawValue)\",\"shape\":[\(shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + byteCount)]}"
            offset += byteCount
        }
        header += "}"
        var headerBytes = Array(header.utf8)
        // Pad with spaces so the data buffer starts 8-byte aligned, as the reference writer does.
        while headerBytes.count % 8 != 0 { headerBytes.append(0x20) }

        var out = [UInt8]()
        out.reserveCapacity(8 + headerBytes.count + offset)
        withUnsafeBytes(of: UInt64(headerBytes.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(contentsOf: headerBytes)
        for item in items {
            switch item.payload {
            case let .float32(tensor):
                let buffer = UnsafeRawBufferPointer(start: tensor.pointer, count: tensor.count * 4)
                appendLittleEndian(buffer, elementSize: 4, to: &out)
            case let .int64(_, values):
                values.withUnsafeBytes { appendLittleEndian($0, elementSize: 8, to: &out) }
            }
        }
        return out
    }

    private static func appendLittleEndian(_ raw: UnsafeRawBufferPointer, elementSize: Int, to out: inout [UInt8]) {
        #if _endian(little)
        out.append(contentsOf: raw)
        #else
        for start in stride(from: 0, to: raw.count, by: elementSize) {
            out.append(contentsOf: raw[start..<start + elementSize].reversed())
        }
        #endif
    }

    // MARK: reading

    /// Reads and validates the safetensors file at `url`.
    public static func read(_ url: URL) throws -> SafeTensorsFile {
        try read(bytes: FileIO.readBytes(url.path), source: url.path)
    }

    /// Parses and validates safetensors `bytes`; `source` names them in error messages.
    /// Nothing is allocated from a size the file claims until it has been checked against the
    /// number of bytes actually present.
    public static func read(bytes: [UInt8], source: String = "<memory>") throws -> SafeTensorsFile {
        func fail(_ message: String) -> DataIOError { .invalidSafeTensors(path: source, message: message) }

        guard bytes.count >= 8 else { throw fail("file of \(bytes.count) bytes is too short for the 8-byte header length") }
        var headerLength64: UInt64 = 0
        for i in 0..<8 { headerLength64 |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard headerLength64 <= UInt64(maxHeaderLength) else {
            throw fail("header length \(headerLength64) exceeds the limit of \(maxHeaderLength) bytes")
        }
        let headerLength = Int(headerLength64)
        guard headerLength <= bytes.count - 8 else {
            throw fail("header length \(headerLength) points past the end of the file (\(bytes.count) bytes)")
        }
        guard headerLength >= 2 else { throw fail("header of \(headerLength) bytes is too short to be a JSON object") }
        // The reference writer pads the header with trailing spaces; JSON allows them.
        let headerBytes = Array(bytes[8..<(8 + headerLength)])
        guard headerBytes.first == UInt8(ascii: "{") else { throw fail("header does not start with a JSON object") }
        let root: JSONValue
        do { root = try JSONParser.parse(headerBytes) } catch { throw fail("header is not valid JSON: \(error.message)") }
        guard case let .object(members) = root else { throw fail("header is not a JSON object") }

        let dataStart = 8 + headerLength
        let dataLength = bytes.count - dataStart
        var names: [String] = []
        var entries: [String: SafeTensorsEntry] = [:]
        var metadata: [String: String] = [:]

        for (name, value) in members {
            if name == "__metadata__" {
                guard case let .object(pairs) = value else { throw fail("__metadata__ is not an object of strings") }
                for (key, item) in pairs {
                    guard case let .string(text) = item else {
                        throw fail("__metadata__ value for \"\(key)\" is a \(item.kindName), not a string")
                    }
                    metadata[key] = text
                }
                continue
            }
            let entry = try parseEntry(name: name, value: value, dataLength: dataLength, fail: fail)
            names.append(name)
            entries[name] = entry
        }

        // The tensors must tile the data buffer exactly: no overlaps, no holes, nothing left over.
        let ordered = names.map { entries[$0]! }.sorted {
            ($0.dataRange.lowerBound, $0.dataRange.upperBound) < ($1.dataRange.lowerBound, $1.dataRange.upperBound)
        }
        var expectedStart = 0
        for entry in ordered {
            if entry.dataRange.lowerBound < expectedStart {
                throw fail("tensor \"\(entry.name)\" data \(entry.dataRange) overlaps the previous tensor (which ends at \(expectedStart))")
            }
            if entry.dataRange.lowerBound > expectedStart {
                throw fail("hole in the data buffer between bytes \(expectedStart) and \(entry.dataRange.lowerBound) (before tensor \"\(entry.name)\")")
            }
            expectedStart = entry.dataRange.upperBound
        }
        if expectedStart != dataLength {
            throw fail("data buffer has \(dataLength) bytes but the tensors cover \(expectedStart)")
        }

        let data = Array(bytes[dataStart...])
        var tensors: [String: Tensor] = [:]
        for name in names {
            let entry = entries[name]!
            tensors[name] = convertToFloat32(data, entry)
        }
        return SafeTensorsFile(names: names, entries: entries, metadata: metadata, tensors: tensors, data: data, source: source)
    }

    private static func parseEntry(name: String, value: JSONValue, dataLength: Int,
                                   fail: (String) -> DataIOError) throws -> SafeTensorsEntry {
        guard case let .object(fields) = value else { throw fail("entry \"\(name)\" is a \(value.kindName), not an object") }
        var dtype: SafeTensorsDType?
        var shape: [Int]?
        var offsets: [Int]?
        for (key, field) in fields {
            switch key {
            case "dtype":
                guard case let .string(text) = field else { throw fail("tensor \"\(name)\": dtype is not a string") }
                guard let parsed = SafeTensorsDType(rawValue: text) else { throw fail("tensor \"\(name)\": unknown dtype \"\(text)\"") }
                guard parsed.isConvertible else { throw fail("tensor \"\(name)\": dtype \(text) is not supported") }
                dtype = parsed
            case "shape":
                shape = try nonNegativeIntegers(field, what: "shape", name: name, fail: fail)
            case "data_offsets":
                let values = try nonNegativeIntegers(field, what: "data_offsets", name: name, fail: fail)
                guard values.count == 2 else { throw fail("tensor \"\(name)\": data_offsets must hold 2 numbers, not \(values.count)") }
                offsets = values
            default:
                throw fail("tensor \"\(name)\": unexpected field \"\(key)\"")
            }
        }
        guard let dtype else { throw fail("tensor \"\(name)\": missing dtype") }
        guard let shape else { throw fail("tensor \"\(name)\": missing shape") }
        guard let offsets else { throw fail("tensor \"\(name)\": missing data_offsets") }
        let (begin, end) = (offsets[0], offsets[1])
        guard begin <= end else { throw fail("tensor \"\(name)\": data_offsets [\(begin), \(end)] are reversed") }
        guard end <= dataLength else {
            throw fail("tensor \"\(name)\": data_offsets [\(begin), \(end)] point past the end of the \(dataLength)-byte data buffer")
        }
        var byteCount = dtype.byteSize
        for dimension in shape {
            let (product, overflow) = byteCount.multipliedReportingOverflow(by: dimension)
            guard !overflow, product <= dataLength else {
                throw fail("tensor \"\(name)\": shape \(shape) of \(dtype.rawValue) is larger than the data buffer")
            }
            byteCount = product
        }
        guard byteCount == end - begin else {
            throw fail("tensor \"\(name)\": shape \(shape) of \(dtype.rawValue) needs \(byteCount) bytes but data_offsets give \(end - begin)")
        }
        return SafeTensorsEntry(name: name, dtype: dtype, shape: shape, dataRange: begin..<end)
    }

    private static func nonNegativeIntegers(_ value: JSONValue, what: String, name: String,
                                            fail: (String) -> DataIOError) throws -> [Int] {
        guard case let .array(elements) = value else { throw fail("tensor \"\(name)\": \(what) is not an array") }
        return try elements.map { element in
            guard case let .number(text, integer) = element, let integer else {
                throw fail("tensor \"\(name)\": \(what) holds \(element.kindName == "number" ? "a non-integer number" : "a \(element.kindName)")")
            }
            guard integer >= 0 else { throw fail("tensor \"\(name)\": \(what) holds the negative number \(text)") }
            return Int(integer)
        }
    }

    // MARK: conversion

    static func convertToFloat32(_ data: [UInt8], _ entry: SafeTensorsEntry) -> Tensor {
        let count = entry.dataRange.count / entry.dtype.byteSize
        return Tensor(shape: entry.shape) { out in
            data.withUnsafeBytes { raw in
                let base = raw.baseAddress! + entry.dataRange.lowerBound
                for i in 0..<count {
                    out[i] = elementAsFloat(base, i, entry.dtype)
                }
            }
        }
    }

    static func convertToInt64(_ data: [UInt8], _ entry: SafeTensorsEntry) -> [Int64] {
        let count = entry.dataRange.count / entry.dtype.byteSize
        return data.withUnsafeBytes { raw in
            let base = raw.baseAddress! + entry.dataRange.lowerBound
            return (0..<count).map { i -> Int64 in
                switch entry.dtype {
                case .I64: return Int64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
                case .I32: return Int64(Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
                case .I16: return Int64(Int16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
                case .I8: return Int64(Int8(bitPattern: base.load(fromByteOffset: i, as: UInt8.self)))
                case .U8: return Int64(base.load(fromByteOffset: i, as: UInt8.self))
                case .BOOL: return base.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0
                default: return 0  // unreachable: callers check isInteger && isConvertible
                }
            }
        }
    }

    @inline(__always)
    private static func elementAsFloat(_ base: UnsafeRawPointer, _ i: Int, _ dtype: SafeTensorsDType) -> Float {
        switch dtype {
        case .F32: return Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
        case .F64: return Float(Double(bitPattern: UInt64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))))
        case .F16: return halfToFloat(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
        case .BF16: return Float(bitPattern: UInt32(UInt16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))) << 16)
        case .I64: return Float(Int64(littleEndian: base.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self)))
        case .I32: return Float(Int32(littleEndian: base.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self)))
        case .I16: return Float(Int16(littleEndian: base.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self)))
        case .I8: return Float(Int8(bitPattern: base.load(fromByteOffset: i, as: UInt8.self)))
        case .U8: return Float(base.load(fromByteOffset: i, as: UInt8.self))
        case .BOOL: return base.load(fromByteOffset: i, as: UInt8.self) != 0 ? 1 : 0
        default: return .nan  // unreachable: unsupported dtypes are rejected while parsing
        }
    }

    /// IEEE 754 binary16 → binary32, exact (every half value is representable as a float).
    static func halfToFloat(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = Int((h >> 10) & 0x1F)
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0x1F {  // infinity or NaN
            return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
        }
        if exponent == 0 {  // zero or subnormal: mantissa × 2^-24
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign != 0 ? -magnitude : magnitude
        }
        return Float(bitPattern: sign | (UInt32(exponent - 15 + 127) << 23) | (mantissa << 13))
    }
}
