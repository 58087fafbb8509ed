import Foundation
import TensorCore

/// A character-level text corpus, as nanoGPT's `shakespeare_char` prepares it: the vocabulary is
/// the sorted set of Unicode scalars in the text, tokens are indices into it, the first 90 % is
/// the training split and the rest the validation split.
public struct TextCorpus: Sendable {
    /// Which split to draw blocks from.
    public enum Split: Sendable { case train, validation }

    /// A batch of `batchSize` blocks of `blockLength` tokens; row-major `(B, T)` arrays where
    /// `y[b, t]` is the token after `x[b, t]`.
    public struct Batch: Sendable, Equatable {
        /// Input tokens, row-major `(B, T)`: `x[b * blockLength + t]`.
        public let x: [Int32]
        /// Target tokens, row-major `(B, T)`: each the token after the one at the same place in `x`.
        public let y: [Int32]
        /// Number of blocks B.
        public let batchSize: Int
        /// Tokens per block T.
        public let blockLength: Int
        /// `[B, T]`, the shape of `x` and `y`.
        public var shape: [Int] { [batchSize, blockLength] }
    }

    /// Sorted unique Unicode scalars; a token is an index into this.
    public let vocabulary: [Unicode.Scalar]
    /// The whole text encoded.
    public let tokens: [Int32]
    /// The first `trainFraction` of `tokens`.
    public let trainTokens: [Int32]
    /// The remaining tokens.
    public let validationTokens: [Int32]
    private let index: [Unicode.Scalar: Int32]

    /// Number of distinct characters (the size of `vocabulary`).
    public var vocabularySize: Int { vocabulary.count }

    /// Reads a UTF-8 file, or every file under a folder (sorted by path, hidden files skipped)
    /// joined with `separator`. Invalid UTF-8 is an error naming the file and byte offset.
    public init(path: String, separator: String = "\n", trainFraction: Double = 0.9) throws {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else {
            throw DataIOError.io(path: path, message: "no such file or folder")
        }
        var files = [path]
        if isFolder.boolValue {
            let walker = FileManager.default.enumerator(atPath: path)
            var found: [String] = []
            while let relative = walker?.nextObject() as? String {
                let full = path + "/" + relative
                var sub: ObjCBool = false
                if (relative as NSString).lastPathComponent.hasPrefix(".") { continue }
                if FileManager.default.fileExists(atPath: full, isDirectory: &sub), !sub.boolValue { found.append(full) }
            }
            files = found.sorted()
            guard !files.isEmpty else { throw DataIOError.emptyDataset(path: path, message: "folder holds no text files") }
        }
        var scalars: [Unicode.Scalar] = []
        for (i, file) in files.enumerated() {
            if i > 0 { scalars.append(contentsOf: separator.unicodeScalars) }
            scalars.append(contentsOf: try TextCorpus.decodeUTF8(FileIO.readBytes(file), source: file))
        }
        try self.init(scalars: scalars, source: path, trainFraction: trainFraction)
    }

    /// A corpus from `text` already in memory.
    public init(text: String, trainFraction: Double = 0.9) throws {
        try self.init(scalars: Array(text.unicodeScalars), source: "<text>", trainFraction: trainFraction)
    }

    private init(scalars: [Unicode.Scalar], source: String, trainFraction: Double) throws {
        guard !scalars.isEmpty else { throw DataIOError.invalidText(path: source, message: "text is empty") }
        guard trainFraction > 0 && trainFraction <= 1 else {
            throw DataIOError.invalidArgument("TextCorpus: trainFraction must be in (0, 1], got \(trainFraction)")
        }
        vocabulary = Array(Set(scalars)).sorted { $0.value < $1.value }
        index = Dictionary(uniqueKeysWithValues: vocabulary.enumerated().map { ($1, Int32($0)) })
        tokens = scalars.map { [index] in index[$0]! }
        // nanoGPT: n = int(len(data) * 0.9)
        let split = Int(Double(tokens.count) * trainFraction)
        trainTokens = Array(tokens[..<split])
        validationTokens = Array(tokens[split...])
    }

    /// The same text encoded with `vocabulary` (token order as given, e.g. a checkpoint's, which
    /// must hold every character of the text), with the same train/validation split.
    public func reencoded(vocabulary: [Unicode.Scalar]) throws -> TextCorpus {
        let newIndex = Dictionary(vocabulary.enumerated().map { ($1, Int32($0)) }, uniquingKeysWith: { a, _ in a })
        var map = [Int32](repeating: -1, count: self.vocabulary.count)
        for (token, scalar) in self.vocabulary.enumerated() {
            guard let t = newIndex[scalar] else {
                throw DataIOError.invalidText(path: "<reencode>", message: "character U+\(String(scalar.value, radix: 16, uppercase: true)) of the text is not in the given vocabulary")
            }
            map[token] = t
        }
        return TextCorpus(vocabulary: vocabulary, index: newIndex, tokens: tokens.map { map[Int($0)] },
                          split: trainTokens.count)
    }

    private init(vocabulary: [Unicode.Scalar], index: [Unicode.Scalar: Int32], tokens: [Int32], split: Int) {
        self.vocabulary = vocabulary
        self.index = index
        self.tokens = tokens
        trainTokens = Array(tokens[..<split])
        validationTokens = Array(tokens[split...])
    }

    /// The tokens of `text`; a character outside the vocabulary is an error.
    public func encode(_ text: String) throws -> [Int32] {
        try text.unicodeScalars.enumerated().map { offset, scalar in
            guard let token = index[scalar] else {
                throw DataIOError.invalidText(path: "<encode>", message: "character U+\(String(scalar.value, radix: 16, uppercase: true)) at position \(offset) is not in the vocabulary")
            }
            return token
        }
    }

    /// The text of `tokens` (tokens outside the vocabulary are skipped).
    public func decode(_ tokens: [Int32]) -> String {
        var out = String.UnicodeScalarView()
        for token in tokens where token >= 0 && Int(token) < vocabulary.count { out.append(vocabulary[Int(token)]) }
        return String(out)
    }

    /// `batchSize` random blocks from `split`, starts drawn uniformly from
    /// `0..<(count - blockLength)` with `generator` (like nanoGPT's `get_batch`).
    public func batch(_ split: Split, batchSize: Int, blockLength: Int, generator: inout RandomGenerator) throws -> Batch {
        let data = split == .train ? trainTokens : validationTokens
        guard batchSize > 0, blockLength > 0 else { throw DataIOError.invalidArgument("a batch needs a positive batch size and block length") }
        guard data.count > blockLength else {
            throw DataIOError.invalidArgument("the \(split == .train ? "training" : "validation") text has \(data.count) characters, too few for blocks of \(blockLength): use a longer text or a smaller block")
        }
        var x = [Int32](), y = [Int32]()
        x.reserveCapacity(batchSize * blockLength)
        y.reserveCapacity(batchSize * blockLength)
        for _ in 0..<batchSize {
            let start = generator.nextInt(below: data.count - blockLength)
            x.append(contentsOf: data[start..<(start + blockLength)])
            y.append(contentsOf: data[(start + 1)...(start + blockLength)])
        }
        return Batch(x: x, y: y, batchSize: batchSize, blockLength: blockLength)
    }

    /// Decodes UTF-8 strictly (no overlong forms, surrogates or truncated sequences).
    static func decodeUTF8(_ bytes: [UInt8], source: String) throws -> [Unicode.Scalar] {
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(bytes.count)
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        var offset = 0
        while true {
            switch decoder.decode(&iterator) {
            case let .scalarValue(scalar):
                scalars.append(scalar)
                offset += UTF8.width(scalar)
            case .emptyInput:
                return scalars
            case .error:
                throw DataIOError.invalidText(path: source, message: "invalid UTF-8 at byte offset \(offset)")
            }
        }
    }
}
