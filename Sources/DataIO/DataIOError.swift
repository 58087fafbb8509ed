import Foundation

/// Everything that can go wrong while reading or writing data. Every case names the file (or
/// folder) involved and says what is wrong with it, so a message can be shown to a user as is.
public enum DataIOError: Error, CustomStringConvertible, LocalizedError, Equatable {
    /// The file could not be opened, read or written at the operating-system level.
    case io(path: String, message: String)
    /// A safetensors file is malformed or inconsistent.
    case invalidSafeTensors(path: String, message: String)
    /// An image file could not be decoded (corrupt, truncated, unsupported) or encoded.
    case invalidImage(path: String, message: String)
    /// An image header claims more pixels than the configured budget; nothing was allocated.
    case imageTooLarge(path: String, width: Int, height: Int, budget: Int)
    /// An IDX (MNIST-family) file is malformed or its images and labels do not match.
    case invalidIDX(path: String, message: String)
    /// An audio file could not be read, decoded or written.
    case invalidAudio(path: String, message: String)
    /// A text file is not valid UTF-8 or the corpus cannot be used as asked.
    case invalidText(path: String, message: String)
    /// A dataset folder holds nothing usable.
    case emptyDataset(path: String, message: String)
    /// A caller passed an argument that cannot work (e.g. 2 channels for an image set).
    case invalidArgument(String)

    /// The message shown to the user: the path first, then what is wrong.
    public var description: String {
        switch self {
        case let .io(path, message): return "\(path): \(message)"
        case let .invalidSafeTensors(path, message): return "\(path): invalid safetensors file: \(message)"
        case let .invalidImage(path, message): return "\(path): invalid image: \(message)"
        case let .imageTooLarge(path, width, height, budget):
            return "\(path): image of \(width) x \(height) pixels exceeds the pixel budget of \(budget) pixels"
        case let .invalidIDX(path, message): return "\(path): invalid IDX file: \(message)"
        case let .invalidAudio(path, message): return "\(path): invalid audio: \(message)"
        case let .invalidText(path, message): return "\(path): \(message)"
        case let .emptyDataset(path, message): return "\(path): \(message)"
        case let .invalidArgument(message): return message
        }
    }

    /// The same text as `description`, for `localizedDescription`.
    public var errorDescription: String? { description }
}
