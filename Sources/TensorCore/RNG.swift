import Foundation
import CKernels

/// SplitMix64, defined once in C (CKernels.h `fk_splitmix64_mix`) and shared by the generator's
/// seeding, per-item dataset seeds and dropout's counter-based masks.
public enum SplitMix64 {
    /// The next output of the stream whose state is `state` (advancing it by the golden gamma).
    @inline(__always)
    public static func next(_ state: inout UInt64) -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        return fk_splitmix64_mix(state)
    }

    /// The output for one state word `x`: the first output of a stream seeded with `x`.
    @inline(__always)
    public static func output(_ x: UInt64) -> UInt64 { fk_splitmix64_mix(x &+ 0x9E37_79B9_7F4A_7C15) }
}

/// A seeded random generator (xoshiro256**, seeded through SplitMix64). The same seed gives the
/// same numbers on every machine: integer arithmetic only, normals by Box-Muller in Double.
/// Its whole state is four words, so checkpoints save it and resume exactly.
public struct RandomGenerator: RandomNumberGenerator, Sendable, Equatable {
    /// The four xoshiro256** state words. Never all zero when seeded through `init(seed:)` (an
    /// all-zero state would yield only zeros).
    public var state: (UInt64, UInt64, UInt64, UInt64)

    /// A generator whose state is the first four SplitMix64 outputs from `seed`, so nearby seeds
    /// (0, 1, 2…) still give unrelated streams.
    public init(seed: UInt64) {
        var sm = seed
        state = (SplitMix64.next(&sm), SplitMix64.next(&sm), SplitMix64.next(&sm), SplitMix64.next(&sm))
    }

    /// Restores a generator from `stateWords` (as saved by `stateWords`).
    public init(stateWords w: [UInt64]) {
        forgePrecondition(w.count == 4, "RandomGenerator state needs 4 words, got \(w.count)")
        state = (w[0], w[1], w[2], w[3])
    }

    /// The state as four words, for checkpoints; `init(stateWords:)` restores it.
    public var stateWords: [UInt64] { [state.0, state.1, state.2, state.3] }

    /// Two generators are equal when their states are, that is when they will produce the same numbers.
    public static func == (a: RandomGenerator, b: RandomGenerator) -> Bool { a.stateWords == b.stateWords }

    /// The next 64 random bits (one xoshiro256** step).
    @inline(__always)
    public mutating func next() -> UInt64 {
        let result = rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotl(state.3, 45)
        return result
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 24 random bits.
    @inline(__always) public mutating func nextFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }
    /// Uniform in [0, 1) with 53 random bits.
    @inline(__always) public mutating func nextDouble() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// Uniform integer in 0..<n (unbiased).
    public mutating func nextInt(below n: Int) -> Int {
        forgePrecondition(n > 0, "nextInt(below:) needs n > 0, got \(n)")
        return Int(truncatingIfNeeded: next(upperBound: UInt64(n)))
    }

    /// Fills `buffer` with N(mean, std²) samples.
    public mutating func fillNormal(_ buffer: UnsafeMutableBufferPointer<Float>, mean: Float = 0, std: Float = 1) {
        var i = 0
        let n = buffer.count
        while i < n {
            // Box-Muller on (0, 1] x [0, 1)
            let u1 = 1.0 - nextDouble()
            let u2 = nextDouble()
            let r = (-2.0 * Foundation.log(u1)).squareRoot()
            let theta = 2.0 * Double.pi * u2
            buffer[i] = Float(r * Foundation.cos(theta)) * std + mean
            if i + 1 < n { buffer[i + 1] = Float(r * Foundation.sin(theta)) * std + mean }
            i += 2
        }
    }

    /// Fills `buffer` with uniform samples in [low, high).
    public mutating func fillUniform(_ buffer: UnsafeMutableBufferPointer<Float>, low: Float = 0, high: Float = 1) {
        let span = high - low
        for i in 0..<buffer.count { buffer[i] = low + span * nextFloat() }
    }

    /// One N(0, 1) sample.
    public mutating func nextNormal() -> Float {
        var x: Float = 0
        withUnsafeMutablePointer(to: &x) { fillNormal(UnsafeMutableBufferPointer(start: $0, count: 1)) }
        return x
    }

    /// Fisher-Yates shuffle of 0..<n.
    public mutating func permutation(_ n: Int) -> [Int] {
        var a = Array(0..<n)
        if n > 1 { for i in stride(from: n - 1, to: 0, by: -1) { a.swapAt(i, nextInt(below: i + 1)) } }
        return a
    }
}

/// The process-wide default generator (like `torch.manual_seed`): used by `Tensor.randn`,
/// layer initialisation and dropout when no generator is passed.
public enum DefaultRNG {
    nonisolated(unsafe) private static var generator = RandomGenerator(seed: 0)
    private static let lock = NSLock()

    /// Resets the default generator to `RandomGenerator(seed: s)` (like `torch.manual_seed`).
    public static func seed(_ s: UInt64) { lock.lock(); generator = RandomGenerator(seed: s); lock.unlock() }
    /// A copy of the default generator, for saving in a checkpoint; setting it restores one.
    public static var state: RandomGenerator {
        get { lock.lock(); defer { lock.unlock() }; return generator }
        set { lock.lock(); generator = newValue; lock.unlock() }
    }
    /// Runs `body` with exclusive access to the default generator.
    public static func with<R>(_ body: (inout RandomGenerator) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(&generator)
    }
}
