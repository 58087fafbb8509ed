import Foundation
import DataIO
import Figures

/// One metric of several runs in one picture, read from each run folder's `metrics.csv` (e.g. the
/// val loss of a fine-tuned run against a run from scratch).
public enum RunComparison {
    /// The (x, y) points of column `metric` against column `x` (e.g. "step", "wall_s") of a
    /// `metrics.csv`; rows where either is empty or not finite (step rows of an evaluation metric) are skipped.
    public static func series(csv path: String, metric: String, x: String = "step") throws -> (x: [Double], y: [Double]) {
        let text = String(decoding: try FileIO.readBytes(path), as: UTF8.self)
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard let header = lines.first?.split(separator: ",", omittingEmptySubsequences: false).map(String.init) else {
            throw DataIOError.invalidText(path: path, message: "is empty; expected a metrics.csv with a header line")
        }
        guard let column = header.firstIndex(of: metric) else {
            throw DataIOError.invalidText(path: path, message: "has no column \"\(metric)\"; its columns are \(header.joined(separator: ", "))")
        }
        guard let xColumn = header.firstIndex(of: x) else {
            throw DataIOError.invalidText(path: path, message: "has no column \"\(x)\"; its columns are \(header.joined(separator: ", "))")
        }
        var xs: [Double] = [], ys: [Double] = []
        for line in lines.dropFirst() {
            let cells = line.split(separator: ",", omittingEmptySubsequences: false)
            guard cells.count > max(column, xColumn), let xv = Double(cells[xColumn]), let yv = Double(cells[column]),
                  xv.isFinite, yv.isFinite else { continue }
            xs.append(xv)
            ys.append(yv)
        }
        return (xs, ys)
    }

    /// Draws `metric` of each run (`name`, path of its metrics.csv or run folder) into one PNG at `path`.
    public static func plot(runs: [(name: String, path: String)], metric: String, x: String = "step", title: String,
                            to path: String) throws {
        var series: [LinePlot.Series] = []
        for (name, runPath) in runs {
            var isFolder: ObjCBool = false
            let csv = FileManager.default.fileExists(atPath: runPath, isDirectory: &isFolder) && isFolder.boolValue
                ? runPath + "/metrics.csv" : runPath
            let (xs, ys) = try Self.series(csv: csv, metric: metric, x: x)
            guard !xs.isEmpty else { throw DataIOError.invalidText(path: csv, message: "has no finite values of \(metric)") }
            series.append(.init(name: name, x: xs, y: ys))
        }
        try LinePlot(title: title, xLabel: x, yLabel: metric, series: series).write(to: path)
    }
}
