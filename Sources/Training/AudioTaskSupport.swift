import Foundation
import Figures
import TensorCore
import Models
import DataIO

// What the audio GAN and audio VAE tasks share: their clip batches, and the per-epoch samples
// (WAVs + a waveform/spectrogram PNG).

/// The batches of an audio training task: full batches of clips (N, length) in a (seed, epoch) order,
/// the same epoch mixing as ImageSet's, so a resumed epoch replays the same order.
struct ClipBatches {
    let clips: Tensor
    let length: Int, batchSize: Int, seed: UInt64
    private var order: [Int] = []
    private var cursor = 0

    /// Checks that `clips` is (N, length) with N ≥ one batch, and the sampling settings are at least 1.
    init(clips: Tensor, length: Int, batchSize: Int, seed: UInt64, sampleCount: Int, sampleEvery: Int) throws {
        guard clips.rank == 2, clips.shape[1] == length else {
            throw TrainingError.invalidConfiguration("the clips are \(clips.shape) but the model wants (N, \(length))")
        }
        guard clips.shape[0] >= batchSize else {
            throw TrainingError.invalidConfiguration("\(clips.shape[0]) clips are fewer than one batch of \(batchSize)")
        }
        guard sampleCount >= 1, sampleEvery >= 1 else {
            throw TrainingError.invalidConfiguration("sample count and sample interval must be at least 1")
        }
        (self.clips, self.length, self.batchSize, self.seed) = (clips, length, batchSize, seed)
    }

    /// Full batches only (BatchNorm statistics of a tiny tail batch would be noise).
    var stepsPerEpoch: Int { clips.shape[0] / batchSize }

    mutating func begin(epoch: Int, skippingSteps: Int) {
        var g = RandomGenerator(seed: seed ^ (UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9_7F4A_7C15))
        order = g.permutation(clips.shape[0])
        cursor = skippingSteps * batchSize
    }

    /// The next batch, (batch, 1, length).
    mutating func nextBatch() -> Tensor {
        precondition(cursor + batchSize <= order.count, "audio training: epoch ran out of batches")
        let batch = clips.indexSelect(Array(order[cursor..<(cursor + batchSize)])).reshaped([batchSize, 1, length])
        cursor += batchSize
        return batch
    }
}

/// (count, 1, length) or (count, length) waves as one row per clip.
func clipRows(_ waves: Tensor) -> [[Float]] {
    let count = waves.shape[0], n = waves.count / max(count, 1), all = waves.scalars
    return (0..<count).map { Array(all[($0 * n)..<(($0 + 1) * n)]) }
}

/// After the first epoch, every `sampleEvery`-th epoch and when a run stops mid-epoch: the samples as
/// `epoch_NNN[_step_S]_K.wav` + `.png` (see `writeAudioSamples`).
func writeEpochAudioSamples(_ samples: () -> [[Float]], sampleRate: Int, directory: String, sampleEvery: Int,
                            epoch: Int, step: Int, completed: Bool, tensorBoard: TensorBoardWriter? = nil) throws {
    guard !completed || (epoch + 1) % sampleEvery == 0 || epoch == 0 else { return }
    try writeAudioSamples(samples(), sampleRate: sampleRate, directory: directory,
                          name: completed ? String(format: "epoch_%03d", epoch + 1) : String(format: "epoch_%03d_step_%d", epoch + 1, step),
                          tensorBoard: tensorBoard, step: step)
}

/// Writes the per-epoch samples of an audio task: `directory/NAME_K.wav` and `latest_K.wav` for each
/// clip, `NAME.png` and `latest.png` with their waveforms and spectrograms; with a TensorBoard
/// writer also the clips (`samples/clip_K`) and the figure (`samples/waveforms`) at `step`.
func writeAudioSamples(_ samples: [[Float]], sampleRate rate: Int, directory: String, name: String,
                       tensorBoard: TensorBoardWriter? = nil, step: Int = 0) throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    for (k, wave) in samples.enumerated() {
        let clip = AudioClip(samples: wave, channels: 1, sampleRate: rate)
        try AudioIO.writeWAV(clip, to: "\(directory)/\(name)_\(k).wav")
        try AudioIO.writeWAV(clip, to: "\(directory)/latest_\(k).wav")
        try tensorBoard?.addAudioFile("samples/clip_\(k)", path: "\(directory)/latest_\(k).wav", step: step)
    }
    let titles = samples.indices.map { "\(name.replacingOccurrences(of: "_", with: " ")) clip \($0)" }
    try AudioFigure.write(clips: samples, sampleRate: rate, titles: titles, to: "\(directory)/\(name).png")
    try AudioFigure.write(clips: samples, sampleRate: rate, titles: titles, to: "\(directory)/latest.png")
    try tensorBoard?.addImageFile("samples/waveforms", path: "\(directory)/latest.png", step: step)
}
