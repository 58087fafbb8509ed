import ArgumentParser
import Foundation
import TensorCore
import Training
import Figures
import Metrics
import Sampling

/// The image side of `forge sample gan|vae`: a latent interpolation strip (`interpolate`), one PNG
/// per image (`outDir`) or a grid (`out`, else `defaultOut`); with `labels`, a conditional model's
/// grid names each row's class in a left margin. Checkpoint and sampling errors become
/// a one-line message and exit code 2.
func writeImageSamples(open: () throws -> ImageSampler, count: Int, seed: UInt64, className: String?,
                       interpolate: String?, steps: Int, columns: Int, labels: Bool = true, out: String?, outDir: String?,
                       defaultOut: String, interpolationOut: String) throws {
    do {
        let sampler = try open()
        let classIndex = try className.map { try sampler.classIndex($0) }
        if let interpolate {
            let parts = interpolate.split(separator: ",").compactMap { UInt64($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 2 else { throw ValidationError("--interpolate wants two seeds, e.g. 3,7") }
            let strip = try sampler.interpolate(seedA: parts[0], seedB: parts[1], steps: steps, classIndex: classIndex)
            let path = out ?? interpolationOut
            let stripLabels = labels && classIndex != nil ? sampler.rowLabels(count: steps, classIndex: classIndex, columns: steps) : []
            try sampler.writeGrid(strip, columns: steps, rowLabels: stripLabels, to: path)
            say("wrote \(path): \(steps) images from seed \(parts[0]) to seed \(parts[1])")
            return
        }
        let images = try sampler.sample(count: count, seed: seed, classIndex: classIndex, columns: columns)
        if let outDir {
            let paths = try sampler.writeImages(images, to: outDir)
            say("wrote \(paths.count) images to \(outDir)/")
        } else {
            let path = out ?? defaultOut
            let rowLabels = labels ? sampler.rowLabels(count: count, classIndex: classIndex, columns: columns) : []
            try sampler.writeGrid(images, columns: columns, rowLabels: rowLabels, to: path)
            let rows = !rowLabels.isEmpty ? " (class names beside the rows)"
                : !sampler.classNames.isEmpty && classIndex == nil
                ? " (row r shows class \(sampler.classNames.prefix(3).joined(separator: ", "))…, cycling)" : ""
            say("wrote \(path): \(count) images\(rows)")
        }
    }
}
