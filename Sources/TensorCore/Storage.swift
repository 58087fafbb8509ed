import Foundation

/// A size-bucketed pool of Float buffers. Training steps allocate the same activation sizes every
/// step, so after warm-up every tensor's buffer comes from here instead of malloc.
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()

    private var freeLists: [[UnsafeMutablePointer<Float>]] = Array(repeating: [], count: 48)
    private var cachedBytes = 0
    /// Buffers that had to come from malloc (the pool had none of that size).
    private(set) var freshAllocations = 0
    fileprivate let lock = NSLock()
    /// Buffers above this many cached bytes are freed instead of kept.
    var maxCachedBytes = 2 << 30

    /// Bucket b holds buffers of exactly 2^b floats (minimum 16 floats).
    @inline(__always) static func bucket(for count: Int) -> Int {
        let n = max(count, 16)
        return Int.bitWidth - (n - 1).leadingZeroBitCount
    }

    func allocate(_ count: Int) -> (UnsafeMutablePointer<Float>, Int) {
        let b = BufferPool.bucket(for: count)
        let capacity = 1 << b
        lock.lock()
        if let p = freeLists[b].popLast() {
            cachedBytes -= capacity * 4
            lock.unlock()
            return (p, b)
        }
        freshAllocations += 1
        lock.unlock()
        let p = UnsafeMutablePointer<Float>.allocate(capacity: capacity)
        return (p, b)
    }

    func release(_ p: UnsafeMutablePointer<Float>, bucket b: Int) {
        let bytes = (1 << b) * 4
        lock.lock()
        if cachedBytes + bytes <= maxCachedBytes {
            freeLists[b].append(p)
            cachedBytes += bytes
            lock.unlock()
        } else {
            lock.unlock()
            p.deallocate()
        }
    }
}

/// The memory behind a tensor: `count` contiguous Floats from the pool.
public final class Storage: @unchecked Sendable {
    public let pointer: UnsafeMutablePointer<Float>
    public let count: Int
    private let bucket: Int

    /// Uninitialised storage for `count` floats.
    init(uninitializedCount count: Int) {
        let (p, b) = BufferPool.shared.allocate(count)
        pointer = p
        bucket = b
        self.count = count
    }

    deinit { BufferPool.shared.release(pointer, bucket: bucket) }
}

/// Public view of the tensor memory pool.
public enum TensorMemory {
    /// Returns every cached buffer to the system (tests use it to start from an empty pool).
    public static func trim() { BufferPool.shared.trim() }
    /// How many tensor buffers have come from malloc so far. After a training step's warm-up this
    /// stops growing: every later step reuses pooled buffers.
    public static var freshAllocations: Int {
        let pool = BufferPool.shared
        return pool.lockedFreshAllocations()
    }
}

extension BufferPool {
    /// Frees every cached buffer.
    func trim() {
        lock.lock()
        let lists = freeLists
        freeLists = Array(repeating: [], count: 48)
        cachedBytes = 0
        lock.unlock()
        for l in lists { for p in l { p.deallocate() } }
    }

    func lockedFreshAllocations() -> Int {
        lock.lock(); defer { lock.unlock() }
        return freshAllocations
    }
}
