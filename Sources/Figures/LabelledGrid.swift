import Foundation
import TensorCore
import DataIO

/// A sample grid (`ImageCodec.gridImage`, torchvision's `make_grid` layout) with a name drawn in a
/// white margin at the left of each row — the class a conditional model was asked for.
///
/// Size: the grid's own `columns·(w+padding)+padding` × `rows·(h+padding)+padding`, widened on
/// the left by `marginWidth(rowLabels:tileHeight:)` pixels (0 when there are no labels, so an
/// unlabelled grid is exactly `ImageCodec.gridImage`). Text is the 5×7 font at scale 1 for tiles
/// under 48 pixels tall, 2 above; labels longer than `maxLabelCharacters` are cut with "…" as ".".
public enum LabelledGrid {
    /// Labels are cut to this many characters so one long class name cannot take the figure.
    public static let maxLabelCharacters = 14

    /// Font scale used beside tiles `tileHeight` pixels tall.
    public static func textScale(tileHeight: Int) -> Int { tileHeight >= 48 ? 2 : 1 }

    /// The label as drawn: at most `maxLabelCharacters`, a cut one ending in "..".
    public static func shown(_ label: String) -> String {
        label.count <= maxLabelCharacters ? label : String(label.prefix(maxLabelCharacters - 2)) + ".."
    }

    /// Width of the left margin: the longest shown label plus 4 pixels either side; 0 without labels.
    public static func marginWidth(rowLabels: [String], tileHeight: Int) -> Int {
        let longest = rowLabels.map { shown($0).count }.max() ?? 0
        guard longest > 0 else { return 0 }
        return longest * Canvas.charWidth * textScale(tileHeight: tileHeight) + 8
    }

    /// The grid of the `(N, C, H, W)` `images` with `rowLabels[r]` beside row r (rows past the
    /// labels, and empty labels, stay blank). Channels as the images (1 or 3).
    public static func image(images: Tensor, rowLabels: [String], columns: Int = 8, range: ImageValueRange = .minusOneToOne,
                             padding: Int = 2, padValue: Float = 0) throws -> PixelImage {
        let grid = try ImageCodec.gridImage(images, range: range, columns: columns, padding: padding, padValue: padValue)
        let tileHeight = images.shape[2]
        let margin = marginWidth(rowLabels: rowLabels, tileHeight: tileHeight)
        guard margin > 0 else { return grid }
        var canvas = Canvas(width: margin + grid.width, height: grid.height)
        canvas.blit(grid, x: margin, y: 0)
        let scale = textScale(tileHeight: tileHeight)
        let rows = (images.shape[0] + min(columns, images.shape[0]) - 1) / min(columns, images.shape[0])
        for (r, label) in rowLabels.prefix(rows).enumerated() {
            let top = padding + r * (tileHeight + padding)
            let y = top + (tileHeight - Canvas.charHeight * scale) / 2
            canvas.text(shown(label), x: 4, y: y, scale: scale, color: (0.1, 0.1, 0.1))
        }
        let rgb = canvas.image
        guard grid.channels == 1 else { return rgb }
        return PixelImage(width: rgb.width, height: rgb.height, channels: 1,
                     pixels: stride(from: 0, to: rgb.pixels.count, by: 3).map { rgb.pixels[$0] })
    }

    /// Writes `image(images:rowLabels:…)` as a PNG at `path` (atomically).
    public static func write(images: Tensor, rowLabels: [String], columns: Int = 8, range: ImageValueRange = .minusOneToOne,
                             to path: String) throws {
        try ImageCodec.writePNG(image(images: images, rowLabels: rowLabels, columns: columns, range: range), to: path)
    }

    /// Row labels for a grid of `count` images, `columns` per row, whose row r shows class
    /// `r % classNames.count` (the samplers' and training grids' layout), or every row `classIndex`.
    public static func classRowLabels(classNames: [String], count: Int, columns: Int, classIndex: Int? = nil) -> [String] {
        guard !classNames.isEmpty, count > 0, columns > 0 else { return [] }
        let rows = (count + min(columns, count) - 1) / min(columns, count)
        return (0..<rows).map { classNames[(classIndex ?? $0) % classNames.count] }
    }
}
