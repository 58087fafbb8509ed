import Foundation

// Data-parallel generation (`mpirun -np N forge generate images|text|audio …`). Every item already
// depends only on its own seed and its aligned batch (see DatasetGeneration.swift), so the ranks can
// split the batches without changing a bit: batch j of the run is computed by rank j mod N, and
// rank 0 alone plans the folder (resume, checks), writes the items, the manifest and the checker's
// verdicts, exactly as a single process does. The result is the same folder and manifest, byte for
// byte, as a single-process run with the same seed.
//
// Why the items travel to rank 0 rather than each rank writing its own: one writer keeps the
// manifest (with every item's sha256, written before the item is renamed into place) consistent
// without locks, needs no file system shared between hosts, and keeps "side effects on rank 0 only",
// as in training. The bytes are small beside the compute (a 28×28 PNG is ~1 KB, a text item a few).

/// The ranks of one data-parallel generation job: the two collectives the generators need. Sampling
/// does not depend on MPI; the CLI passes its MPI group (Training's `DataParallelGroup`).
public protocol GenerationGroup: AnyObject {
    /// This process's rank, 0 ..< size; rank 0 writes the folder.
    var rank: Int { get }
    /// The number of ranks.
    var size: Int { get }
    /// Rank 0's `bytes` on every rank (a collective: every rank calls it at the same point).
    func broadcast(_ bytes: [UInt8]) throws -> [UInt8]
    /// Every rank's `bytes` on rank 0, in rank order; empty on the other ranks (a collective).
    func gather(_ bytes: [UInt8]) throws -> [[UInt8]]
}

/// What every rank of a generation job throws when the run stops at a point all of them reach
/// together: on rank 0 the error that stopped it (`underlying`, to report), on the others nil (rank 0
/// reports it). The caller can then shut MPI down on every rank (nobody waits in a collective).
public struct CollectiveGenerationStop: Error, CustomStringConvertible {
    /// Rank 0's error; nil on the other ranks.
    public let underlying: Error?
    /// The error, or a line saying that rank 0 stopped the run.
    public var description: String { underlying.map { String(describing: $0) } ?? "rank 0 stopped the run (it reports why)" }
}

/// An error met by rank `rank` while computing its batches, reported by rank 0.
public struct GenerationRankFailure: Error, CustomStringConvertible {
    /// The rank that failed.
    public let rank: Int
    /// Its error, as it described it.
    public let message: String
    /// "rank R: message".
    public var description: String { "rank \(rank): \(message)" }
}

/// Runs the batches of a generation run on one rank or several.
enum BatchSchedule {
    /// Rank 0 runs `prepare` and its bytes reach every rank; an error it throws stops every rank
    /// (`CollectiveGenerationStop`). Without a group (or with one rank) it is just `prepare()`.
    static func shareFromRoot(_ group: (any GenerationGroup)?, _ prepare: () throws -> [UInt8]) throws -> [UInt8] {
        guard let group, group.size > 1 else { return try prepare() }
        var message: [UInt8], failure: Error?
        if group.rank == 0 {
            do { message = [0] + (try prepare()) } catch { failure = error; message = [1] }
        } else {
            message = []
        }
        let shared = try group.broadcast(message)
        if let failure { throw CollectiveGenerationStop(underlying: failure) }
        guard shared.first == 0 else { throw CollectiveGenerationStop(underlying: nil) }
        return Array(shared.dropFirst())
    }

    /// Runs the batches (whatever identifies one, in run order). One process: `compute` then
    /// `consume` each batch in turn. Several ranks: in round r, rank k computes batch r·N + k and sends
    /// it `pack`ed to rank 0, which consumes the round's batches in order (its own through `consume`,
    /// the others through `consumeRemote`), so rank 0 writes what a single process writes, in the same
    /// order. An error on any rank stops every rank at the end of the round with a
    /// `CollectiveGenerationStop`: rank 0's holds the error (another rank's as `GenerationRankFailure`).
    static func run<Batch, Result>(_ batches: [Batch], group: (any GenerationGroup)?,
                                   compute: (Batch) throws -> Result, pack: (Result) throws -> [UInt8],
                                   consume: (Batch, Result) throws -> Void,
                                   consumeRemote: (Batch, [UInt8]) throws -> Void) throws {
        guard let group, group.size > 1 else {
            for batch in batches { try consume(batch, compute(batch)) }
            return
        }
        let (rank, size) = (group.rank, group.size)
        // A share is a tag byte and its body: 0 = a packed result, 1 = an error message, 2 = no batch.
        for roundStart in stride(from: 0, to: batches.count, by: size) {
            var own: Result?, ownError: Error?, share: [UInt8] = [2]
            if roundStart + rank < batches.count {
                do {
                    let result = try compute(batches[roundStart + rank])
                    if rank == 0 { own = result } else { share = [0] + (try pack(result)) }
                } catch {
                    ownError = error
                    share = [1] + Array(String(describing: error).utf8)
                }
            }
            let shares = try group.gather(share)
            var failure: Error? = ownError
            if rank == 0, failure == nil {
                do {
                    for (k, share) in shares.enumerated() where roundStart + k < batches.count {
                        let batch = batches[roundStart + k]
                        if k == 0, let own { try consume(batch, own); continue }
                        switch share.first {
                        case 0: try consumeRemote(batch, Array(share.dropFirst()))
                        case 1: throw GenerationRankFailure(rank: k, message: String(decoding: share.dropFirst(), as: UTF8.self))
                        default: throw GenerationRankFailure(rank: k, message: "sent no items for its batch")
                        }
                    }
                } catch {
                    failure = error
                }
            }
            // Every rank learns whether to go on, so none waits for a partner that stopped. A rank
            // other than 0 that failed has sent its error, so rank 0 always stops the run then.
            let verdict = try group.broadcast([rank == 0 && failure != nil ? 1 : 0])
            if rank == 0 {
                if let failure { throw CollectiveGenerationStop(underlying: failure) }
            } else if verdict.first != 0 {
                throw CollectiveGenerationStop(underlying: nil)
            }
        }
    }
}

/// A length-prefixed byte format for the items a rank sends to rank 0: a sequence of fields, each an
/// 8-byte little-endian length and its bytes.
struct PackedFields {
    private(set) var bytes: [UInt8] = []

    mutating func append(_ field: [UInt8]) {
        withUnsafeBytes(of: UInt64(field.count).littleEndian) { bytes += $0 }
        bytes += field
    }

    mutating func append(_ value: Int) { append(withUnsafeBytes(of: Int64(value).littleEndian, Array.init)) }

    /// The fields of `bytes`, in order; throws on a truncated message.
    static func fields(of bytes: [UInt8]) throws -> [[UInt8]] {
        var out: [[UInt8]] = [], offset = 0
        while offset < bytes.count {
            guard offset + 8 <= bytes.count else { throw SamplingError("a rank's items arrived truncated") }
            var length: UInt64 = 0
            withUnsafeMutableBytes(of: &length) { $0.copyBytes(from: bytes[offset..<(offset + 8)]) }
            let n = Int(UInt64(littleEndian: length))
            offset += 8
            guard n >= 0, n <= bytes.count - offset else { throw SamplingError("a rank's items arrived truncated") }
            out.append(Array(bytes[offset..<(offset + n)]))
            offset += n
        }
        return out
    }

    /// An `Int` field written by `append(_: Int)`.
    static func integer(_ field: [UInt8]) throws -> Int {
        guard field.count == 8 else { throw SamplingError("a rank's items arrived malformed") }
        var value: Int64 = 0
        withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: field) }
        return Int(Int64(littleEndian: value))
    }
}

extension Array where Element == Bool {
    /// One byte per flag (for `BatchSchedule.shareFromRoot`).
    var packedFlags: [UInt8] { map { $0 ? 1 : 0 } }
    /// Flags from `packedFlags`.
    init(packedFlags bytes: [UInt8]) { self = bytes.map { $0 != 0 } }
}
