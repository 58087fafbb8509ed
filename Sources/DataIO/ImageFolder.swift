import Foundation
import TensorCore

/// A folder of PNG/JPEG images loaded as an `ImageSet`, like torchvision's `ImageFolder`.
///
/// When the root holds sub-folders, each first-level sub-folder is a class (sorted names give
/// the label ids) and images directly in the root are ignored; otherwise the set is unlabelled.
/// Every image is converted to `channels` (alpha composited on white), resized so its short
/// side is `size` (area averaging when shrinking, bilinear when enlarging), centre-cropped to
/// `size × size` and mapped to [-1, 1]. Files that cannot be decoded are skipped with one
/// warning line each.
public final class ImageFolder: @unchecked Sendable {
    /// The folder's standardized absolute path.
    public let root: String
    /// Side in pixels of every (square) image after resizing and centre-cropping.
    public let size: Int
    /// Channels per image: 1 (gray) or 3 (RGB).
    public let channels: Int
    /// The decoded images with their labels.
    public let imageSet: ImageSet
    /// Paths of the images in `imageSet`, in order.
    public let files: [String]
    /// Paths of the files that could not be used, with the reason.
    public let skipped: [(path: String, reason: String)]
    /// Whether the images came from the on-disk or in-memory cache instead of being decoded.
    public let loadedFromCache: Bool

    /// The images `(N, channels, size, size)` in [-1, 1] (from `imageSet`).
    public var images: Tensor { imageSet.images }
    /// One class id per image; empty when the folder has no class sub-folders (from `imageSet`).
    public var labels: [Int] { imageSet.labels }
    /// Class names by id, the sorted sub-folder names; empty when unlabelled (from `imageSet`).
    public var classNames: [String] { imageSet.classNames }
    /// Number of images loaded.
    public var count: Int { imageSet.count }

    /// One line: how many images, classes, skipped files and where they came from.
    public var summary: String {
        let classes = imageSet.isLabelled ? "\(imageSet.classNames.count) classes" : "unlabelled"
        return "\(root): \(count) images (\(classes), \(channels)x\(size)x\(size)), \(skipped.count) skipped" + (loadedFromCache ? ", from cache" : "")
    }

    /// File extensions recognised as images (lower-cased).
    public static let imageExtensions: Set<String> = ["png", "jpg", "jpeg"]

    /// Loads the folder at `path`.
    /// - Parameters:
    ///   - channels: 1 (gray) or 3 (RGB).
    ///   - diskCache: also keep the decoded set in a cache file next to the folder
    ///     (`.<name>.forge-cache-<size>-<channels>.safetensors`), reused while no image file's path,
    ///     size or modification time has changed.
    ///   - pixelBudget: largest width × height accepted per image.
    ///   - warn: receives one line per skipped file (default: standard error).
    public init(path: String, size: Int, channels: Int, diskCache: Bool = false,
                pixelBudget: Int = ImageCodec.defaultPixelBudget,
                warn: (String) -> Void = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) }) throws {
        guard size > 0 else { throw DataIOError.invalidArgument("ImageFolder: size must be positive, got \(size)") }
        guard channels == 1 || channels == 3 else {
            throw DataIOError.invalidArgument("ImageFolder: channels must be 1 or 3, got \(channels)")
        }
        let root = URL(fileURLWithPath: path).standardizedFileURL.path
        self.root = root
        self.size = size
        self.channels = channels

        let listing = try ImageFolder.scan(root)
        let key = ImageFolder.cacheKey(root: root, size: size, channels: channels, listing: listing)

        if let cached = ImageFolder.memoryCache.get(key) {
            (imageSet, files, skipped, loadedFromCache) = (cached.imageSet, cached.files, cached.skipped, true)
            return
        }
        let cacheURL = ImageFolder.cacheFileURL(root: root, size: size, channels: channels)
        if diskCache, let cached = ImageFolder.readCacheFile(cacheURL, key: key) {
            (imageSet, files, skipped, loadedFromCache) = (cached.imageSet, cached.files, cached.skipped, true)
            ImageFolder.memoryCache.put(key, cached)
            return
        }

        let decoded = ImageFolder.decodeAll(listing.files.map(\.path), size: size, channels: channels, pixelBudget: pixelBudget)
        var keep: [Int] = []
        var skipped: [(path: String, reason: String)] = []
        for (i, failure) in decoded.failures.enumerated() {
            if let failure {
                warn("warning: skipping \(listing.files[i].path): \(failure)")
                skipped.append((listing.files[i].path, failure))
            } else {
                keep.append(i)
            }
        }
        guard !keep.isEmpty else {
            let reason = listing.files.isEmpty ? "no .png, .jpg or .jpeg files found" : "none of the \(listing.files.count) image files could be decoded"
            throw DataIOError.emptyDataset(path: root, message: "no usable image: \(reason)")
        }
        let imageLength = channels * size * size
        let images: Tensor
        if keep.count == listing.files.count {
            images = decoded.images
        } else {
            images = Tensor(shape: [keep.count, channels, size, size]) { out in
                for (slot, index) in keep.enumerated() {
                    (out.baseAddress! + slot * imageLength).update(from: decoded.images.pointer + index * imageLength, count: imageLength)
                }
            }
        }
        let labels = listing.classNames.isEmpty ? [] : keep.map { listing.files[$0].label }
        let imageSet = ImageSet(images: images, labels: labels, classNames: listing.classNames,
                                classSource: listing.classNames.isEmpty ? "" : "the sub-folder names")
        let files = keep.map { listing.files[$0].path }
        (self.imageSet, self.files, self.skipped, loadedFromCache) = (imageSet, files, skipped, false)

        let entry = CacheEntry(imageSet: imageSet, files: files, skipped: skipped)
        ImageFolder.memoryCache.put(key, entry)
        if diskCache {
            do {
                try ImageFolder.writeCacheFile(cacheURL, key: key, entry: entry)
            } catch {
                warn("warning: could not write the image cache \(cacheURL.path): \(error)")
            }
        }
    }

    /// Batches of one epoch; see `ImageSet.batches`.
    public func batches(size batchSize: Int, seed: UInt64, epoch: Int = 0, randomHorizontalFlip: Bool = false,
                        dropLast: Bool = false) -> ImageBatches {
        imageSet.batches(size: batchSize, seed: seed, epoch: epoch, randomHorizontalFlip: randomHorizontalFlip, dropLast: dropLast)
    }

    /// Drops every in-memory cached folder (the next load decodes or reads the disk cache).
    public static func clearMemoryCache() { memoryCache.clear() }

    // MARK: scanning

    struct Listing {
        var files: [(path: String, label: Int, bytes: Int, modified: Double)]
        var classNames: [String]
    }

    /// Finds the image files under `root`, sorted, with their class ids.
    static func scan(_ root: String) throws -> Listing {
        let manager = FileManager.default
        var isFolder: ObjCBool = false
        guard manager.fileExists(atPath: root, isDirectory: &isFolder), isFolder.boolValue else {
            throw DataIOError.io(path: root, message: "not a folder")
        }
        let entries: [String]
        do { entries = try manager.contentsOfDirectory(atPath: root) } catch {
            throw DataIOError.io(path: root, message: "cannot list folder: \(error.localizedDescription)")
        }
        let classNames = entries.filter { name in
            var sub: ObjCBool = false
            return !name.hasPrefix(".") && manager.fileExists(atPath: root + "/" + name, isDirectory: &sub) && sub.boolValue
        }.sorted()
        var files: [(path: String, label: Int, bytes: Int, modified: Double)] = []
        func collect(_ folder: String, label: Int) {
            guard let walker = manager.enumerator(atPath: folder) else { return }
            var found: [String] = []
            while let relative = walker.nextObject() as? String {
                let name = (relative as NSString).lastPathComponent
                if name.hasPrefix(".") { continue }
                if imageExtensions.contains((name as NSString).pathExtension.lowercased()) { found.append(folder + "/" + relative) }
            }
            for path in found.sorted() {
                let attributes = try? manager.attributesOfItem(atPath: path)
                guard (attributes?[.type] as? FileAttributeType) != .typeDirectory else { continue }
                let bytes = (attributes?[.size] as? NSNumber)?.intValue ?? -1
                let modified = (attributes?[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
                files.append((path, label, bytes, modified))
            }
        }
        if classNames.isEmpty {
            collect(root, label: 0)
        } else {
            for (label, name) in classNames.enumerated() { collect(root + "/" + name, label: label) }
        }
        return Listing(files: files, classNames: classNames)
    }

    // MARK: decoding

    /// Decodes, converts, resizes and crops every file in parallel. `failures[i]` is nil when
    /// file `i` decoded; its slot in `images` is then filled.
    static func decodeAll(_ paths: [String], size: Int, channels: Int, pixelBudget: Int) -> (images: Tensor, failures: [String?]) {
        let imageLength = channels * size * size
        let images = Tensor(shape: [paths.count, channels, size, size], repeating: 0)
        var failures = [String?](repeating: nil, count: paths.count)
        let output = SendablePointer(images.mutablePointer)
        failures.withUnsafeMutableBufferPointer { failureBuffer in
            let failureSlots = SendablePointer(failureBuffer.baseAddress!)
            let pathsBox = UnsafeSendableBox(paths)
            parallelFor(paths.count, grain: 8) { start, end in
                for i in start..<end {
                    do {
                        let image = try ImageCodec.load(path: pathsBox.value[i], pixelBudget: pixelBudget)
                        guard image.width > 0 && image.height > 0 else { throw DataIOError.invalidImage(path: pathsBox.value[i], message: "image has no pixels") }
                        image.converted(toChannels: channels).resizedAndCropped(to: size)
                            .writeCHW(into: output.p + i * imageLength, range: -1...1)
                    } catch let error as DataIOError {
                        failureSlots.p[i] = ImageFolder.reason(error)
                    } catch {
                        failureSlots.p[i] = "\(error)"
                    }
                }
            }
        }
        return (images, failures)
    }

    /// The error message without the leading path (the warning line names the file already).
    private static func reason(_ error: DataIOError) -> String {
        switch error {
        case let .io(_, message), let .invalidImage(_, message): return message
        case let .imageTooLarge(_, width, height, budget): return "image of \(width) x \(height) pixels exceeds the pixel budget of \(budget) pixels"
        default: return error.description
        }
    }

    // MARK: caching

    struct CacheEntry {
        let imageSet: ImageSet
        let files: [String]
        let skipped: [(path: String, reason: String)]
    }

    /// Process-wide cache of decoded folders, so reopening a folder does not decode it again.
    final class MemoryCache: @unchecked Sendable {
        private var entries: [String: CacheEntry] = [:]
        private let lock = NSLock()
        func get(_ key: String) -> CacheEntry? { lock.lock(); defer { lock.unlock() }; return entries[key] }
        func put(_ key: String, _ entry: CacheEntry) { lock.lock(); entries[key] = entry; lock.unlock() }
        func clear() { lock.lock(); entries.removeAll(); lock.unlock() }
    }
    static let memoryCache = MemoryCache()

    /// A key that changes whenever the folder, target size, channels or any image file (path,
    /// byte size, modification time) changes.
    static func cacheKey(root: String, size: Int, channels: Int, listing: Listing) -> String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325  // FNV-1a
        func mix(_ text: String) {
            for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
            hash = (hash ^ 0xFF) &* 0x0000_0100_0000_01B3
        }
        for file in listing.files { mix(file.path); mix(String(file.bytes)); mix(String(file.modified)); mix(String(file.label)) }
        listing.classNames.forEach(mix)
        return "v1|\(root)|\(size)|\(channels)|\(listing.files.count)|\(String(hash, radix: 16))"
    }

    static func cacheFileURL(root: String, size: Int, channels: Int) -> URL {
        let url = URL(fileURLWithPath: root)
        return url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).forge-cache-\(size)-\(channels).safetensors")
    }

    static func writeCacheFile(_ url: URL, key: String, entry: CacheEntry) throws {
        let metadata = [
            "cache_key": key,
            "class_names": try jsonString(entry.imageSet.classNames),
            "files": try jsonString(entry.files),
            "skipped_paths": try jsonString(entry.skipped.map(\.path)),
            "skipped_reasons": try jsonString(entry.skipped.map(\.reason)),
        ]
        var items: [SafeTensors.Item] = [.float32("images", entry.imageSet.images)]
        if entry.imageSet.isLabelled { items.append(.int64("labels", shape: [entry.imageSet.labels.count], values: entry.imageSet.labels.map(Int64.init))) }
        try SafeTensors.write(items: items, metadata: metadata, to: url)
    }

    /// The cached set when the cache file exists, is valid and has the same key; nil otherwise.
    static func readCacheFile(_ url: URL, key: String) -> CacheEntry? {
        guard FileManager.default.fileExists(atPath: url.path),
              let file = try? SafeTensors.read(url), file.metadata["cache_key"] == key,
              let images = file.tensors["images"], images.shape.count == 4,
              let classNames = decodeStrings(file.metadata["class_names"]),
              let files = decodeStrings(file.metadata["files"]), files.count == images.shape[0],
              let skippedPaths = decodeStrings(file.metadata["skipped_paths"]),
              let skippedReasons = decodeStrings(file.metadata["skipped_reasons"]), skippedPaths.count == skippedReasons.count
        else { return nil }
        var labels: [Int] = []
        if !classNames.isEmpty {
            guard let stored = try? file.int64Array("labels"), stored.count == files.count,
                  stored.allSatisfy({ $0 >= 0 && $0 < classNames.count }) else { return nil }
            labels = stored.map { Int($0) }
        }
        return CacheEntry(imageSet: ImageSet(images: images, labels: labels, classNames: classNames), files: files,
                          skipped: Array(zip(skippedPaths, skippedReasons)).map { (path: $0.0, reason: $0.1) })
    }

    private static func jsonString(_ strings: [String]) throws -> String {
        String(decoding: try JSONSerialization.data(withJSONObject: strings), as: UTF8.self)
    }

    private static func decodeStrings(_ text: String?) -> [String]? {
        guard let text, let data = text.data(using: .utf8) else { return nil }
        return (try? JSONSerialization.jsonObject(with: data)) as? [String]
    }
}

/// Folder-safe form of a class name ("T-shirt/top" → "T-shirt_top"): path separators and
/// control characters become "_", and a leading dot is replaced so the folder is not hidden.
public func classFolderName(_ name: String) -> String {
    var safe = String(name.map { $0 == "/" || $0 == "\\" || $0.isNewline || $0 == "\0" ? "_" : $0 })
    if safe.hasPrefix(".") { safe = "_" + safe.dropFirst() }
    return safe.isEmpty ? "_" : safe
}
