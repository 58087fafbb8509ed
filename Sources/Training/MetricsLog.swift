import Foundation

/// Per-step metrics of a run: `metrics.csv` (columns `step,epoch,wall_s,<rate>,<metric>…`) and
/// `loss.png`, a plot of the chosen metrics against the step. A resumed run keeps the rows up to
/// the checkpoint's step and appends, so the file and the plot cover the whole run.
public final class MetricsLog {
    public let csvPath: String
    public let plotPath: String
    public let metricNames: [String]
    public let plottedMetrics: [String]
    public let rateName: String
    /// Every row so far: step, epoch, wall seconds, rate, then one value per metric.
    public private(set) var rows: [[Double]] = []
    private var pending = ""

    /// Starts a log in `directory`. With `resumingAt` the existing rows with step ≤ that step are
    /// kept (rows after it belong to steps that the checkpoint does not contain); otherwise the
    /// file starts empty.
    public init(directory: String, metricNames: [String], plottedMetrics: [String], rateName: String = "samples_per_s",
                resumingAt step: Int? = nil) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        csvPath = directory + "/metrics.csv"
        plotPath = directory + "/loss.png"
        self.metricNames = metricNames
        self.plottedMetrics = plottedMetrics
        self.rateName = rateName
        if let step, let text = try? String(contentsOfFile: csvPath, encoding: .utf8) {
            var lines = text.split(separator: "\n").map(String.init)
            if lines.first == header {
                lines.removeFirst()
                for line in lines {
                    let values = line.split(separator: ",").map { Double($0) ?? .nan }
                    if values.count == 4 + metricNames.count, values[0] <= Double(step) { rows.append(values) }
                }
            }
        }
        var text = header + "\n"
        for row in rows { text += format(row) + "\n" }
        try text.write(toFile: csvPath, atomically: true, encoding: .utf8)
    }

    var header: String { (["step", "epoch", "wall_s", rateName] + metricNames).joined(separator: ",") }

    private func format(_ row: [Double]) -> String {
        row.enumerated().map { i, v in
            i < 2 ? String(Int(v)) : (v.isFinite ? String(format: "%.6g", v) : String(v))
        }.joined(separator: ",")
    }

    /// Records one step (written out by `flush()`).
    public func append(step: Int, epoch: Int, wallSeconds: Double, rate: Double, values: [Double]) {
        precondition(values.count == metricNames.count, "MetricsLog: \(values.count) values for \(metricNames.count) metrics")
        let row = [Double(step), Double(epoch), wallSeconds, rate] + values
        rows.append(row)
        pending += format(row) + "\n"
    }

    /// Appends the pending rows to `metrics.csv`.
    public func flush() throws {
        guard !pending.isEmpty else { return }
        guard let handle = FileHandle(forWritingAtPath: csvPath) else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: csvPath])
        }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(pending.utf8))
        pending = ""
    }

    /// Flushes and redraws `loss.png`.
    public func writePlot(title: String = "loss") throws {
        try flush()
        let steps = rows.map { $0[0] }
        let series = plottedMetrics.compactMap { name -> LinePlot.Series? in
            guard let k = metricNames.firstIndex(of: name) else { return nil }
            return LinePlot.Series(name: name, x: steps, y: rows.map { $0[4 + k] })
        }
        try LinePlot(title: title, series: series).write(to: plotPath)
    }
}
