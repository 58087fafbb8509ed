import Foundation

/// A pool of Float buffers in size classes. Training steps allocate the same activation sizes every
/// step, so after warm-up every tensor's buffer comes from here instead of malloc.
///
/// Classes are 8 per power of two (a buffer of n floats gets the next multiple of 2^⌊log2 n⌋ / 8,
/// so it wastes under 12.5 %). Power-of-two classes wasted up to half: a char-shakespeare
/// activation of 64·256·384 = 3·2²¹ floats took a 2²³-float buffer, its q,k,v (9·2²¹) one of 2²⁵.
final class BufferPool: @unchecked Sendable {
    static let shared = BufferPool()

    static let classCount = 8 * 49
    private var freeLists: [[UnsafeMutablePointer<Float>]] = Array(repeating: [], count: BufferPool.classCount)
    private var cachedBytes = 0
    /// Bytes of buffers handed out and not yet returned, and the most there ever were at once.
    private(set) var liveBytes = 0, peakLiveBytes = 0
    /// Buffers that had to come from malloc (the pool had none of that size).
    private(set) var freshAllocations = 0
    fileprivate let lock = NSLock()
    /// Buffers above this many cached bytes are freed instead of kept.
    var maxCachedBytes = 2 << 30

    /// The size class of a buffer of `count` floats (minimum 16 floats).
    @inline(__always) static func bucket(for count: Int) -> Int {
        let n = max(count, 16)
        let b = Int.bitWidth - (n - 1).leadingZeroBitCount  // 2^(b-1) < n <= 2^b
        let step = 1 << (b - 4)
        let q = (n + step - 1) / step                       // 9 ... 16
        return b * 8 + q - 9
    }

    /// Floats in a buffer of class `b`.
    @inline(__always) static func capacity(ofBucket b: Int) -> Int { (b % 8 + 9) << (b / 8 - 4) }

    func allocate(_ count: Int) -> (UnsafeMutablePointer<Float>, Int) {
        let b = BufferPool.bucket(for: count)
        let capacity = BufferPool.capacity(ofBucket: b)
        lock.lock()
        liveBytes += capacity * 4
        peakLiveBytes = max(peakLiveBytes, liveBytes)
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
        let bytes = BufferPool.capacity(ofBucket: b) * 4
        lock.lock()
        liveBytes -= bytes
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
    /// The first of `count` floats. The pool's buffer may be longer (its size class); only `count` are
    /// this storage's.
    public let pointer: UnsafeMutablePointer<Float>
    /// The number of floats this storage holds.
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
    /// Bytes of tensor buffers alive now (size classes rounded up), and the most alive at once
    /// since the last `resetPeak()`. The pool's cached free buffers are not counted.
    public static var liveBytes: Int { BufferPool.shared.locked { $0.liveBytes } }
    /// The most bytes of tensor buffers alive at once since the last `resetPeak()` (or start-up).
    public static var peakLiveBytes: Int { BufferPool.shared.locked { $0.peakLiveBytes } }
    /// Bytes of free buffers the pool keeps for reuse.
    public static var cachedBytes: Int { BufferPool.shared.locked { $0.cachedBytesNow } }
    /// Starts a new peak measurement from the bytes alive now.
    public static func resetPeak() { BufferPool.shared.locked { $0.resetPeakLocked() } }
}

extension BufferPool {
    /// Frees every cached buffer.
    func trim() {
        lock.lock()
        let lists = freeLists
        freeLists = Array(repeating: [], count: BufferPool.classCount)
        cachedBytes = 0
        lock.unlock()
        for l in lists { for p in l { p.deallocate() } }
    }

    func locked<R>(_ body: (BufferPool) -> R) -> R {
        lock.lock(); defer { lock.unlock() }
        return body(self)
    }
    var cachedBytesNow: Int { cachedBytes }
    func resetPeakLocked() { peakLiveBytes = liveBytes }

    func lockedFreshAllocations() -> Int {
        lock.lock(); defer { lock.unlock() }
        return freshAllocations
    }
}
