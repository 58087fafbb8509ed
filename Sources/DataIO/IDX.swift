import Foundation
import TensorCore

/// The IDX format of the MNIST family (MNIST, Fashion-MNIST, KMNIST, EMNIST): a 4-byte magic
/// number (0, 0, element type, dimension count), big-endian UInt32 dimensions, then the data.
/// Files may be gzip-compressed (`.gz`, detected by content).
public enum IDX {
    /// A decoded IDX array of unsigned bytes (the only element type the image sets use).
    public struct Array: Sendable {
        /// The dimensions from the header, e.g. (N, 28, 28) for images or (N) for labels.
        public let shape: [Int]
        /// The elements, row-major (C order), `shape.reduce(1, *)` of them.
        public let bytes: [UInt8]
    }

    /// The ten Fashion-MNIST class names, by label id.
    public static let fashionMNISTClassNames = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

    /// Reads the IDX file at `path` (gzip or not), expecting `rank` dimensions of unsigned bytes.
    public static func read(path: String, rank expectedRank: Int? = nil) throws -> Array {
        let raw = try FileIO.readBytes(path)
        let bytes = Gzip.isGzip(raw) ? try Gzip.decompress(raw, source: path) : raw
        return try parse(bytes, source: path, rank: expectedRank)
    }

    /// Parses IDX `bytes`, validating the magic number and that the dimensions describe exactly
    /// the bytes present, before allocating anything from them.
    public static func parse(_ bytes: [UInt8], source: String = "<memory>", rank expectedRank: Int? = nil) throws -> Array {
        func fail(_ message: String) -> DataIOError { .invalidIDX(path: source, message: message) }
        guard bytes.count >= 4 else { throw fail("file of \(bytes.count) bytes is too short for the magic number") }
        guard bytes[0] == 0, bytes[1] == 0 else {
            throw fail(String(format: "bad magic number 0x%02X%02X%02X%02X (must start with two zero bytes)", bytes[0], bytes[1], bytes[2], bytes[3]))
        }
        guard bytes[2] == 0x08 else {
            throw fail(String(format: "element type 0x%02X is not supported (only 0x08, unsigned byte)", bytes[2]))
        }
        let rank = Int(bytes[3])
        guard rank >= 1 else { throw fail("zero dimensions") }
        if let expectedRank, rank != expectedRank {
            throw fail("has \(rank) dimensions, expected \(expectedRank) (magic 0x0000080\(rank))")
        }
        let headerLength = 4 + 4 * rank
        guard bytes.count >= headerLength else { throw fail("file of \(bytes.count) bytes ends inside the \(rank) dimension sizes") }
        var shape: [Int] = []
        var elements = 1
        for d in 0..<rank {
            let o = 4 + 4 * d
            let size = Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3])
            shape.append(size)
            let (product, overflow) = elements.multipliedReportingOverflow(by: size)
            guard !overflow, product <= bytes.count else {
                throw fail("dimensions \(shape) claim more data than the file's \(bytes.count) bytes")
            }
            elements = product
        }
        guard bytes.count - headerLength == elements else {
            throw fail("dimensions \(shape) need \(elements) data bytes but the file has \(bytes.count - headerLength)")
        }
        return Array(shape: shape, bytes: Swift.Array(bytes[headerLength...]))
    }

    /// Loads matching image (rank 3) and label (rank 1) files as an `ImageSet` of
    /// `(N, channels, size, size)` in [-1, 1]; 28×28 images are resized with bilinear
    /// interpolation when enlarging (area averaging when shrinking).
    public static func loadImageSet(images imagesPath: String, labels labelsPath: String, size: Int? = nil, channels: Int = 1,
                                    classNames: [String]? = nil, classSource: String? = nil) throws -> ImageSet {
        guard channels == 1 || channels == 3 else { throw DataIOError.invalidArgument("IDX: channels must be 1 or 3, got \(channels)") }
        let images = try read(path: imagesPath, rank: 3)
        let labels = try read(path: labelsPath, rank: 1)
        guard images.shape[0] == labels.shape[0] else {
            throw DataIOError.invalidIDX(path: labelsPath, message: "\(labels.shape[0]) labels for the \(images.shape[0]) images in \(imagesPath)")
        }
        let (count, height, width) = (images.shape[0], images.shape[1], images.shape[2])
        guard count > 0, height > 0, width > 0 else { throw DataIOError.emptyDataset(path: imagesPath, message: "IDX file holds no images") }
        let size = size ?? height
        guard size > 0 else { throw DataIOError.invalidArgument("IDX: size must be positive, got \(size)") }
        let labelValues = labels.bytes.map { Int($0) }
        var names: [String], namesSource: String
        if let classNames {
            (names, namesSource) = (classNames, classSource ?? "given")
        } else if let known = IDX.recognisedClassNames(labels: labelValues) {
            (names, namesSource) = (known, "Fashion-MNIST's names (recognised by its label files)")
        } else {
            names = (0...(labelValues.max() ?? 0)).map(String.init)
            namesSource = "numbered (put the names in classes.txt beside the IDX files, one per line)"
        }
        if let bad = labelValues.first(where: { $0 >= names.count }) {
            throw DataIOError.invalidIDX(path: labelsPath, message: "label \(bad) has no class name (\(names.count) classes)")
        }

        let imageLength = channels * size * size
        let tensor = Tensor(uninitializedShape: [count, channels, size, size])
        let output = SendablePointer(tensor.mutablePointer)
        let source = UnsafeSendableBox(images.bytes)
        parallelFor(count, grain: 256) { start, end in
            source.value.withUnsafeBufferPointer { pixels in
                for i in start..<end {
                    let plane = pixels[(i * height * width)..<((i + 1) * height * width)]
                    var image = PixelImage(width: width, height: height, channels: 1, pixels: plane.map { Float($0) / 255 })
                    if width != size || height != size { image = image.resizedAndCropped(to: size) }
                    if channels == 3 { image = image.converted(toChannels: 3) }
                    image.writeCHW(into: output.p + i * imageLength, range: -1...1)
                }
            }
        }
        return ImageSet(images: tensor, labels: labelValues, classNames: names, classSource: namesSource)
    }

    /// Which part of a dataset to load.
    public enum Split: Sendable { case train, test }

    /// The `(images, labels)` IDX file pair in `folder` for `split`: files named
    /// `*-images-idx3-ubyte[.gz]` with a matching `*-labels-idx1-ubyte[.gz]`, the training pair
    /// containing "train" and the held-out pair "t10k" or "test" in its name. Nil when the folder
    /// holds no such pair.
    public static func findFiles(in folder: String, split: Split) -> (images: String, labels: String)? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: folder) else { return nil }
        let imageFiles = names.filter { $0.hasSuffix("-images-idx3-ubyte") || $0.hasSuffix("-images-idx3-ubyte.gz") }.sorted()
        let pairs: [(String, String)] = imageFiles.compactMap { name in
            let base = name.replacingOccurrences(of: "-images-idx3-ubyte", with: "-labels-idx1-ubyte")
            let candidates = [base, base.hasSuffix(".gz") ? String(base.dropLast(3)) : base + ".gz"]
            guard let labels = candidates.first(where: { names.contains($0) }) else { return nil }
            return (folder + "/" + name, folder + "/" + labels)
        }
        let wanted = pairs.first { pair in
            let name = (pair.0 as NSString).lastPathComponent.lowercased()
            switch split {
            case .train: return name.contains("train")
            case .test: return name.contains("t10k") || name.contains("test")
            }
        }
        return wanted.map { (images: $0.0, labels: $0.1) }
    }

    /// Fashion-MNIST's names when `labels` is its training or test label file (60,000 or 10,000
    /// labels starting with its first 16), whatever the folder is called; nil otherwise.
    static func recognisedClassNames(labels: [Int]) -> [String]? {
        let starts: [Int: [Int]] = [60_000: [9, 0, 0, 3, 0, 2, 7, 2, 5, 5, 0, 9, 5, 5, 7, 9],
                                    10_000: [9, 2, 1, 1, 6, 1, 4, 6, 5, 7, 4, 5, 7, 3, 4, 1]]
        guard let start = starts[labels.count], Swift.Array(labels.prefix(16)) == start else { return nil }
        return fashionMNISTClassNames
    }

    /// The class names in `folder/classes.txt` (one per line, blank lines at the end ignored), or nil
    /// when there is no such file.
    public static func classNamesFile(in folder: String) throws -> [String]? {
        let path = folder + "/classes.txt"
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let text = String(decoding: try FileIO.readBytes(path), as: UTF8.self)
        var names = text.split(separator: "\n", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        while names.last?.isEmpty == true { names.removeLast() }
        guard !names.isEmpty, !names.contains(where: \.isEmpty), Set(names).count == names.count else {
            throw DataIOError.invalidArgument("\(path): needs one distinct, non-empty class name per line")
        }
        return names
    }
}

/// The one entry point model code uses for any `--data` path.
public enum ImageDataset {
    /// Loads the images at `path` as `(N, channels, size, size)` in [-1, 1] with labels and
    /// class names:
    /// * a folder with MNIST-style IDX files (e.g. `/usr/share/datasets/fashion-mnist`): the
    ///   "train" pair for `.train`, the "t10k"/"test" pair for `.test`;
    /// * an image folder: when it has `train/` and `test/` (or `val/`) sub-folders those are the
    ///   splits; otherwise the whole folder is the training split and there is no test split.
    public static func load(path: String, size: Int, channels: Int, split: IDX.Split = .train,
                            diskCache: Bool = false,
                            warn: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws -> ImageSet {
        let root = URL(fileURLWithPath: path).standardizedFileURL.path
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: root, isDirectory: &isFolder) else {
            throw DataIOError.io(path: root, message: "no such file or folder")
        }
        guard isFolder.boolValue else { throw DataIOError.invalidArgument("\(root) is not a folder (of images or of IDX files)") }
        if let pair = IDX.findFiles(in: root, split: split) {
            return try IDX.loadImageSet(images: pair.images, labels: pair.labels, size: size, channels: channels,
                                        classNames: try IDX.classNamesFile(in: root), classSource: "classes.txt")
        }
        if IDX.findFiles(in: root, split: split == .train ? .test : .train) != nil {
            throw DataIOError.emptyDataset(path: root, message: "has IDX files but no \(split == .train ? "training (train-*)" : "held-out (t10k-* or test-*)") pair")
        }
        let manager = FileManager.default
        func subfolder(_ names: [String]) -> String? {
            names.map { root + "/" + $0 }.first { var d: ObjCBool = false; return manager.fileExists(atPath: $0, isDirectory: &d) && d.boolValue }
        }
        let trainFolder = subfolder(["train"])
        let testFolder = subfolder(["test", "val"])
        switch split {
        case .train:
            let folder = (trainFolder != nil && testFolder != nil) ? trainFolder! : root
            return try ImageFolder(path: folder, size: size, channels: channels, diskCache: diskCache, warn: warn).imageSet
        case .test:
            guard let testFolder else {
                throw DataIOError.emptyDataset(path: root, message: "has no held-out split (no IDX t10k/test files and no test/ or val/ sub-folder)")
            }
            return try ImageFolder(path: testFolder, size: size, channels: channels, diskCache: diskCache, warn: warn).imageSet
        }
    }
}
