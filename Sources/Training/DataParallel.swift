// Data-parallel training over MPI (Open MPI, loaded at run time by the CMPI shim): the same
// program runs as N ranks under `mpirun -np N`; each computes its shard of every global batch and
// the gradients are averaged with MPI_Allreduce before the optimizer steps, so every rank keeps the
// same weights. How the one training loop uses it:
//   * `TrainingOptions.dataParallel` holds the group (nil or one rank = a plain single process);
//   * the task must conform to `DataParallelTrainingTask` (the char transformer does);
//   * parameters and optimizer state are broadcast from rank 0 at the start (also after a resume);
//   * stopping is collective: a divergence, SIGINT/SIGTERM or the time budget on any rank stops all
//     of them at the same step;
//   * rank 0 alone writes the run folder (checkpoints, metrics.csv, loss.png, TensorBoard, samples)
//     and prints progress.
// For the char model and the VAE the reduction overlaps backward (`OverlappedGradientReducer`): a bucket of
// gradients is reduced on a communication thread as soon as backward has produced all of it, as
// PyTorch DDP does. The other tasks reduce in buckets after backward (the GAN's players accumulate
// gradients over several backward calls per step, so no single backward makes a bucket final).

import Foundation
import CMPI
import TensorCore

/// Why data-parallel training cannot start or go on.
public enum DataParallelError: Error, CustomStringConvertible, Equatable {
    /// The process runs under mpirun but Open MPI's libmpi cannot be loaded or initialised.
    case unavailable(String)
    /// An MPI call failed.
    case communication(String)
    /// The global batch does not split into equal shards.
    case batchNotDivisible(batch: Int, ranks: Int)
    /// The ranks disagree about state that must be identical (a different model or optimizer).
    case mismatch(String)

    /// The error as one line saying what went wrong and what to do (install Open MPI, change the batch …).
    public var description: String {
        switch self {
        case let .unavailable(why):
            return "this process runs under mpirun but cannot use MPI: \(why); install Open MPI (Debian: apt-get install openmpi-bin) or run without mpirun"
        case let .communication(why): return "MPI communication failed: \(why)"
        case let .batchNotDivisible(batch, ranks):
            let lower = batch / ranks * ranks, upper = (batch / ranks + 1) * ranks
            return "the global batch \(batch) does not split evenly over \(ranks) ranks: give a multiple of \(ranks) "
                + "(e.g. \(lower > 0 ? "\(lower) or " : "")\(upper)) or another number of ranks"
        case let .mismatch(why): return "the ranks disagree: \(why)"
        }
    }
}

/// The ranks of one `mpirun` job (MPI_COMM_WORLD), with the few collectives data-parallel training
/// needs. There is one per process: `fromEnvironment()` initialises MPI once.
public final class DataParallelGroup: Sendable {
    /// This process's rank, 0 ..< size; rank 0 writes the run folder.
    public let rank: Int
    /// The number of ranks.
    public let size: Int
    /// Gradients are averaged in buckets of about this many bytes (PyTorch DDP's default, 25 MB).
    public let bucketBytes: Int

    /// Whether this is rank 0, the one rank that writes the run folder and prints.
    public var isRoot: Bool { rank == 0 }

    /// Wall seconds this rank has spent inside MPI_Allreduce (gradients, BatchNorm statistics, the
    /// loss and the stop flags), waiting for slower ranks included: the communication share of a run.
    public var allreduceSeconds: Double { timerLock.withLock { allreduceTotal } }
    private let timerLock = NSLock()
    nonisolated(unsafe) private var allreduceTotal = 0.0

    private func timed<T>(_ body: () throws -> T) rethrows -> T {
        let start = DispatchTime.now().uptimeNanoseconds
        defer {
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            timerLock.withLock { allreduceTotal += seconds }
        }
        return try body()
    }

    private init(rank: Int, size: Int, bucketBytes: Int) {
        self.rank = rank
        self.size = size
        self.bucketBytes = bucketBytes
    }

    nonisolated(unsafe) private static var shared: DataParallelGroup?
    private static let lock = NSLock()

    /// The world size mpirun announces (Open MPI's OMPI_COMM_WORLD_SIZE), or nil outside mpirun.
    public static var launchedWorldSize: Int? {
        ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"].flatMap { Int($0) }
    }

    /// The group of this `mpirun` job, initialising MPI on the first call; nil when the process was
    /// not started by mpirun or is its only rank (then nothing is loaded and training is a plain
    /// single process). Throws `DataParallelError.unavailable` when libmpi cannot be used.
    public static func fromEnvironment() throws -> DataParallelGroup? {
        guard let launched = launchedWorldSize, launched > 1 else { return nil }
        lock.lock(); defer { lock.unlock() }
        if let shared { return shared }
        // A rank waiting in a collective yields its core instead of spinning on it (unless the user
        // chose): a training step lasts milliseconds to seconds, so the wake-up latency costs nothing,
        // while a spinning rank slows its partner whenever cores are shared (2 ranks × 1 thread beside
        // other work on 2 cores: 3,891 → 5,005 and 3,616 → 4,234 tokens/s in two alternating rounds).
        if ProcessInfo.processInfo.environment["OMPI_MCA_mpi_yield_when_idle"] == nil {
            setenv("OMPI_MCA_mpi_yield_when_idle", "1", 1)
        }
        var rank: Int32 = 0, size: Int32 = 0
        var message = [CChar](repeating: 0, count: 1024)
        guard forge_mpi_init(&rank, &size, &message, message.count) == 0 else {
            throw DataParallelError.unavailable(mpiMessage(message))
        }
        let bucket = ProcessInfo.processInfo.environment["FORGE_BUCKET_MB"].flatMap { Double($0) }.map { Int($0 * 1_048_576) }
        let group = DataParallelGroup(rank: Int(rank), size: Int(size), bucketBytes: max(4, bucket ?? 25 * 1_048_576))
        shared = group
        return group
    }

    /// Under mpirun with several ranks on this node and no FORGE_THREADS set: sets FORGE_THREADS to
    /// cores ÷ ranks on the node (at least 1), so `-np 2` on 2 cores does not oversubscribe. Call it
    /// before anything reads the thread count.
    public static func defaultThreadsPerRank() {
        let environment = ProcessInfo.processInfo.environment
        guard environment["FORGE_THREADS"] == nil,
              let local = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap({ Int($0) }), local > 1 else { return }
        setenv("FORGE_THREADS", "\(max(1, ProcessInfo.processInfo.activeProcessorCount / local))", 1)
    }

    // MARK: collectives

    /// Sums `count` floats at `values` over all ranks, in place.
    public func allreduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) throws {
        var message = [CChar](repeating: 0, count: 1024)
        guard timed({ forge_mpi_allreduce_sum_float(values, count, &message, message.count) }) == 0 else {
            throw DataParallelError.communication(mpiMessage(message))
        }
    }

    /// The element-wise sum over all ranks of `values`.
    public func allreduceSum(_ values: [Float]) throws -> [Float] {
        var copy = values
        try copy.withUnsafeMutableBufferPointer { try allreduceSum($0.baseAddress!, count: $0.count) }
        return copy
    }

    /// Whether `flag` is true on any rank (a collective: every rank must call it at the same point).
    public func anyRank(_ flags: [Bool]) throws -> [Bool] {
        var values = flags.map { $0 ? Float(1) : 0 }
        var message = [CChar](repeating: 0, count: 1024)
        let ok = values.withUnsafeMutableBufferPointer { v in timed { forge_mpi_allreduce_max_float(v.baseAddress!, v.count, &message, message.count) } }
        guard ok == 0 else { throw DataParallelError.communication(mpiMessage(message)) }
        return values.map { $0 > 0 }
    }

    /// Copies `count` bytes at `bytes` from `root` to every other rank.
    public func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int = 0) throws {
        var message = [CChar](repeating: 0, count: 1024)
        guard forge_mpi_broadcast_bytes(bytes, count, Int32(root), &message, message.count) == 0 else {
            throw DataParallelError.communication(mpiMessage(message))
        }
    }

    /// Rank 0's `text` on every rank.
    public func broadcast(_ text: String) throws -> String {
        var length = [Int64(text.utf8.count)]
        try length.withUnsafeMutableBytes { try broadcast($0.baseAddress!, count: 8) }
        var bytes = isRoot ? Array(text.utf8) : [UInt8](repeating: 0, count: Int(length[0]))
        if !bytes.isEmpty { try bytes.withUnsafeMutableBytes { try broadcast($0.baseAddress!, count: $0.count) } }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Rank 0's `bytes` on every rank (any length; the other ranks' arguments are ignored).
    public func broadcast(_ bytes: [UInt8]) throws -> [UInt8] {
        var length = [Int64(bytes.count)]
        try length.withUnsafeMutableBytes { try broadcast($0.baseAddress!, count: 8) }
        var copy = isRoot ? bytes : [UInt8](repeating: 0, count: Int(length[0]))
        if !copy.isEmpty { try copy.withUnsafeMutableBytes { try broadcast($0.baseAddress!, count: $0.count) } }
        return copy
    }

    /// Every rank's `bytes` on rank 0, in rank order (MPI_Gather of the lengths, then MPI_Gatherv);
    /// an empty array on the other ranks. The shares may differ in length; together they must stay
    /// under 2 GiB.
    public func gather(_ bytes: [UInt8]) throws -> [[UInt8]] {
        var message = [CChar](repeating: 0, count: 1024)
        var counts = [Int](repeating: 0, count: isRoot ? size : 0)
        let counted = counts.withUnsafeMutableBufferPointer { c in
            forge_mpi_gather_counts(bytes.count, isRoot ? c.baseAddress : nil, 0, &message, message.count)
        }
        guard counted == 0 else { throw DataParallelError.communication(mpiMessage(message)) }
        var received = [UInt8](repeating: 0, count: max(1, counts.reduce(0, +)))
        let gathered = bytes.withUnsafeBytes { send in
            received.withUnsafeMutableBytes { out in
                counts.withUnsafeBufferPointer { c in
                    forge_mpi_gather_bytes(send.baseAddress, bytes.count, isRoot ? out.baseAddress : nil, isRoot ? c.baseAddress : nil,
                                           Int32(size), 0, &message, message.count)
                }
            }
        }
        guard gathered == 0 else { throw DataParallelError.communication(mpiMessage(message)) }
        guard isRoot else { return [] }
        var shares: [[UInt8]] = [], offset = 0
        for count in counts {
            shares.append(Array(received[offset..<(offset + count)]))
            offset += count
        }
        return shares
    }

    /// Ends every rank of the job with exit status `code` (MPI_Abort): for an error that only some
    /// ranks meet, where the others would wait forever in the next collective.
    public func abort(code: Int32) -> Never {
        forge_mpi_abort(code)
        exit(code)
    }

    /// Shuts MPI down (every rank, once, at the end of a run that all ranks finished together).
    public func finalize() { _ = forge_mpi_finalize() }

    // MARK: training

    /// The rows of a batch of `count` that this rank computes when the shards may differ in size
    /// (an epoch's short last batch): consecutive, disjoint, the first `count % size` ranks one row more.
    public func unevenShard(ofBatch count: Int) -> Range<Int> {
        let base = count / size, extra = count % size
        let start = rank * base + Swift.min(rank, extra)
        return start..<(start + base + (rank < extra ? 1 : 0))
    }

    /// The rows of a global batch of `globalBatch` that this rank computes: the rank-th of `size`
    /// equal, disjoint, consecutive shards. Throws when the batch does not divide.
    public func shard(ofBatch globalBatch: Int) throws -> Range<Int> {
        guard globalBatch % size == 0 else { throw DataParallelError.batchNotDivisible(batch: globalBatch, ranks: size) }
        let rows = globalBatch / size
        return (rank * rows)..<((rank + 1) * rows)
    }

    /// Replaces every parameter's gradient by its mean over the ranks: buckets of about
    /// `bucketBytes`, filled from the last parameter to the first (the order backward produces them),
    /// each summed with one MPI_Allreduce and scaled by 1/size. Every rank must pass the same
    /// parameters with gradients of the same shapes; parameters without a gradient are left out.
    public func averageGradients(_ parameters: [Tensor]) throws {
        try reduceGradients(parameters, scale: 1 / Float(size))
    }

    /// Replaces every parameter's gradient by its sum over the ranks, in the buckets of
    /// `averageGradients`: for a loss that is a sum over the batch (the VAE's −ELBO), the sum of the
    /// shards' gradients is the global batch's gradient, whatever the shard sizes.
    public func sumGradients(_ parameters: [Tensor]) throws {
        try reduceGradients(parameters, scale: 1)
    }

    private func reduceGradients(_ parameters: [Tensor], scale: Float) throws {
        let gradients = parameters.reversed().compactMap(\.grad)
        let capacity = max(1, bucketBytes / MemoryLayout<Float>.size)
        var bucket = [Float](repeating: 0, count: min(capacity, gradients.reduce(0) { $0 + $1.count }))
        var members: [Tensor] = []
        var filled = 0
        func reduceBucket() throws {
            guard filled > 0 else { return }
            try bucket.withUnsafeMutableBufferPointer { b in
                try allreduceSum(b.baseAddress!, count: filled)
                var offset = 0
                for g in members {
                    let out = g.mutablePointer
                    for i in 0..<g.count { out[i] = scale == 1 ? b[offset + i] : b[offset + i] * scale }
                    offset += g.count
                }
            }
            members.removeAll(keepingCapacity: true)
            filled = 0
        }
        for g in gradients {
            if g.count >= capacity {  // a gradient as large as a bucket is reduced where it lies
                try allreduceSum(g.mutablePointer, count: g.count)
                if scale != 1 {
                    let out = g.mutablePointer
                    for i in 0..<g.count { out[i] *= scale }
                }
                continue
            }
            if filled + g.count > capacity { try reduceBucket() }
            bucket.withUnsafeMutableBufferPointer { b in
                (b.baseAddress! + filled).update(from: g.pointer, count: g.count)
            }
            members.append(g)
            filled += g.count
        }
        try reduceBucket()
    }

    /// Whether gradient buckets may be reduced on a thread of their own while backward runs: MPI
    /// granted MPI_THREAD_SERIALIZED or more, and FORGE_OVERLAP is not 0.
    public var overlapsReduction: Bool {
        forge_mpi_thread_level() >= 2 && ProcessInfo.processInfo.environment["FORGE_OVERLAP"] != "0"
    }

    /// Rank 0's values of `tensors` on every rank (in place), after checking that every rank has
    /// the same shapes.
    public func broadcastValues(_ tensors: [(String, Tensor)], what: String) throws {
        let layout = tensors.map { "\($0.0)\($0.1.shape)" }.joined(separator: ";")
        let rootLayout = try broadcast(layout)
        let same = try anyRank([rootLayout != layout])
        guard !same[0] else {
            throw DataParallelError.mismatch("rank 0's \(what) differs from another rank's (another model, optimizer or checkpoint?)")
        }
        for (_, t) in tensors where t.count > 0 {
            try broadcast(UnsafeMutableRawPointer(t.mutablePointer), count: t.count * MemoryLayout<Float>.size)
        }
    }

    /// Rank 0's optimizer state (moments and step counts) on every rank.
    public func broadcastState(of optimizer: any Optimizer, prefix: String) throws {
        let state = optimizer.stateTensors(prefix: prefix)
        try broadcastValues(state, what: "optimizer state")
        // the step counts are fresh tensors (not the live state): loading puts them, and the moments, back
        try optimizer.loadState(Dictionary(uniqueKeysWithValues: state), prefix: prefix)
    }
}

/// A `TrainingTask` that can run as one rank of a data-parallel job: after `joinDataParallel`, its
/// `step()` computes this rank's shard of the global batch, averages the gradients over the ranks
/// before the update, and returns scalars that are the same on every rank (the global batch's);
/// `evaluate()` returns the same values on every rank too. Every rank calls `step()` and
/// `evaluate()` at the same points; `epochEnded` runs on rank 0 only.
public protocol DataParallelTrainingTask: TrainingTask {
    /// Makes the task rank `group.rank` of `group`; throws `DataParallelError.batchNotDivisible`
    /// when the global batch does not split evenly.
    func joinDataParallel(_ group: DataParallelGroup) throws
    /// Whether the task reduces gradient buckets while backward runs (`OverlappedGradientReducer`).
    var reducesWhileBackwardRuns: Bool { get }
}

extension DataParallelTrainingTask {
    /// After backward, unless the task says otherwise.
    public var reducesWhileBackwardRuns: Bool { false }
}

/// Averages gradients over the ranks while backward runs: pass `gradientReady` as backward's
/// `leafGradientReady`, then call `finish()` before the optimizer reads the gradients.
///
/// The parameters are cut into buckets from the last to the first (the order backward produces
/// them): a first bucket of about 1 MB, so reduction starts early, then buckets of about
/// `group.bucketBytes` (PyTorch DDP's `first_bucket_bytes_cap` and `bucket_cap_mb`). When backward
/// has produced every gradient of a bucket, the bucket is copied into a buffer and reduced on a
/// serial communication queue (MPI_Allreduce there, with MPI_THREAD_SERIALIZED: the main thread
/// makes no MPI call until `finish` returns), and the averages are copied back into the gradients.
/// Every rank runs the same graph, so the buckets become ready, and are reduced, in the same order on
/// every rank. Buckets with a parameter that got no gradient are reduced by `finish`, in bucket
/// order, over the members that have one. Each element is summed once over the ranks, as in
/// `averageGradients`; with 2 ranks the sums are bit for bit the same (a + b), with more Open MPI may
/// pick another reduction order for another message size, a difference of float rounding.
public final class OverlappedGradientReducer: @unchecked Sendable {
    private let group: DataParallelGroup
    private let scale: Float
    private struct Bucket {
        var members: [Tensor]
        var pending: Int
        var started = false
    }
    private var buckets: [Bucket]
    private var bucketOfParameter: [ObjectIdentifier: Int]
    private let queue = DispatchQueue(label: "forge.ddp.reduce")
    private let lock = NSLock()
    private var failure: Error?

    /// A reducer of `parameters`' gradients over `group`: averaged (`summed` false, as
    /// `averageGradients`), or summed for a loss that is a sum over the batch (as `sumGradients`).
    public init(group: DataParallelGroup, parameters: [Tensor], summed: Bool = false, firstBucketBytes: Int = 1_048_576) {
        self.group = group
        scale = summed ? 1 : 1 / Float(group.size)
        var buckets: [Bucket] = [], current: [Tensor] = [], bytes = 0
        var capacity = min(firstBucketBytes, group.bucketBytes)
        for p in parameters.reversed() {
            current.append(p)
            bytes += p.count * MemoryLayout<Float>.size
            if bytes >= capacity {
                buckets.append(Bucket(members: current, pending: current.count))
                (current, bytes, capacity) = ([], 0, group.bucketBytes)
            }
        }
        if !current.isEmpty { buckets.append(Bucket(members: current, pending: current.count)) }
        self.buckets = buckets
        bucketOfParameter = [:]
        for (b, bucket) in buckets.enumerated() { for p in bucket.members { bucketOfParameter[ObjectIdentifier(p)] = b } }
    }

    /// Backward's hook: `leaf`'s gradient is final; its bucket is reduced once all of it is.
    public func gradientReady(_ leaf: Tensor) {
        guard let b = bucketOfParameter[ObjectIdentifier(leaf)] else { return }   // not one of ours
        buckets[b].pending -= 1
        if buckets[b].pending == 0 { start(b) }
    }

    private func start(_ b: Int) {
        buckets[b].started = true
        // The gradients are copied now, on the calling thread: backward never writes them again,
        // and the queue then owns the copy.
        let gradients = buckets[b].members.compactMap(\.grad)
        let box = GradientBox(gradients)
        let (group, scale) = (self.group, self.scale)
        queue.async { [self] in
            guard lock.withLock({ failure == nil }), !box.buffer.isEmpty else { return }
            do {
                try box.buffer.withUnsafeMutableBufferPointer { try group.allreduceSum($0.baseAddress!, count: $0.count) }
                var offset = 0
                for g in box.tensors {
                    let out = g.mutablePointer
                    box.buffer.withUnsafeBufferPointer { b in for i in 0..<g.count { out[i] = b[offset + i] * scale } }
                    offset += g.count
                }
            } catch {
                lock.withLock { failure = failure ?? error }
            }
        }
    }

    /// Reduces the buckets backward did not complete, waits for every reduction, and makes the
    /// reducer ready for the next backward; throws the first MPI error.
    public func finish() throws {
        for b in buckets.indices where !buckets[b].started { start(b) }
        queue.sync {}
        for b in buckets.indices { (buckets[b].pending, buckets[b].started) = (buckets[b].members.count, false) }
        if let failure = lock.withLock({ failure }) { throw failure }
    }
}

/// A bucket handed to the communication queue: its gradient tensors (written there only, until
/// `finish`) and their values packed into one buffer, copied on the calling thread when the bucket
/// is complete (backward never writes those gradients again).
private final class GradientBox: @unchecked Sendable {
    let tensors: [Tensor]
    var buffer: [Float]
    init(_ tensors: [Tensor]) {
        self.tensors = tensors
        buffer = [Float](repeating: 0, count: tensors.reduce(0) { $0 + $1.count })
        var offset = 0
        buffer.withUnsafeMutableBufferPointer { b in
            for g in tensors {
                (b.baseAddress! + offset).update(from: g.pointer, count: g.count)
                offset += g.count
            }
        }
    }
}

/// The NUL-terminated text the MPI shim wrote into `buffer`.
private func mpiMessage(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
