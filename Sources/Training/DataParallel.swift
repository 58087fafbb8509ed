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
// Communication does not overlap backward: the gradients are reduced in buckets after backward has
// finished (on one machine the ranks share the cores, so overlap would buy little there).

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
            throw DataParallelError.unavailable(String(cString: message))
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
        guard forge_mpi_allreduce_sum_float(values, count, &message, message.count) == 0 else {
            throw DataParallelError.communication(String(cString: message))
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
        let ok = values.withUnsafeMutableBufferPointer { forge_mpi_allreduce_max_float($0.baseAddress!, $0.count, &message, message.count) }
        guard ok == 0 else { throw DataParallelError.communication(String(cString: message)) }
        return values.map { $0 > 0 }
    }

    /// Copies `count` bytes at `bytes` from `root` to every other rank.
    public func broadcast(_ bytes: UnsafeMutableRawPointer, count: Int, root: Int = 0) throws {
        var message = [CChar](repeating: 0, count: 1024)
        guard forge_mpi_broadcast_bytes(bytes, count, Int32(root), &message, message.count) == 0 else {
            throw DataParallelError.communication(String(cString: message))
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
        guard counted == 0 else { throw DataParallelError.communication(String(cString: message)) }
        var received = [UInt8](repeating: 0, count: max(1, counts.reduce(0, +)))
        let gathered = bytes.withUnsafeBytes { send in
            received.withUnsafeMutableBytes { out in
                counts.withUnsafeBufferPointer { c in
                    forge_mpi_gather_bytes(send.baseAddress, bytes.count, isRoot ? out.baseAddress : nil, isRoot ? c.baseAddress : nil,
                                           Int32(size), 0, &message, message.count)
                }
            }
        }
        guard gathered == 0 else { throw DataParallelError.communication(String(cString: message)) }
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
}
