import Foundation
import Figures
import DataIO

/// Per-step metrics of a run: `metrics.csv` and `loss.png`, a plot of the chosen metrics against
/// the step. The columns are the same for every kind:
///
///     step,epoch,wall_s,items_per_s,lr,<step metrics…>,<evaluation metrics…>
///
/// `epoch` counts from 1 (the epoch the step belongs to), `wall_s` is the training time since the
/// run began (summed over resumes), `items_per_s` the smoothed rate of images, clips or tokens, `lr`
/// the first optimizer's learning rate. A step row leaves the evaluation columns empty; an
/// evaluation row (written after the step it follows) leaves the step metrics empty. A resumed run
/// keeps the rows up to the checkpoint's step and appends, so the file and the plot cover the run.
public final class MetricsLog {
    /// `DIR/metrics.csv`; `flush()` appends the pending rows to it.
    public let csvPath: String
    /// `DIR/loss.png`, the plot of `plottedMetrics` against the step.
    public let plotPath: String
    /// The step metrics' column names, in `TrainingTask.step()` order.
    public let metricNames: [String]
    /// The evaluation metrics' column names, in `TrainingTask.evaluate()` order, after the step metrics.
    public let evaluationNames: [String]
    /// The metrics drawn in `loss.png`, from `metricNames` and `evaluationNames`.
    public let plottedMetrics: [String]
    /// The columns before the metrics.
    public static let leadingColumns = ["step", "epoch", "wall_s", "items_per_s", "lr"]
    /// Every row so far: the leading columns, then one value per metric (NaN = empty).
    public private(set) var rows: [[Double]] = []
    private var pending = ""

    /// Starts a log in `directory`. With `resumingAt` the existing rows with step ≤ that step are
    /// kept (rows after it belong to steps that the checkpoint does not contain); otherwise the
    /// file starts empty.
    public init(directory: String, metricNames: [String], evaluationNames: [String] = [], plottedMetrics: [String],
                resumingAt step: Int? = nil) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        csvPath = directory + "/metrics.csv"
        plotPath = directory + "/loss.png"
        self.metricNames = metricNames
        self.evaluationNames = evaluationNames
        self.plottedMetrics = plottedMetrics
        let width = MetricsLog.leadingColumns.count + metricNames.count + evaluationNames.count
        if let step, let text = try? String(contentsOfFile: csvPath, encoding: .utf8) {
            var lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
            if lines.first == header {
                lines.removeFirst()
                for line in lines {
                    let values = line.split(separator: ",", omittingEmptySubsequences: false).map { Double($0) ?? .nan }
                    if values.count == width, values[0] <= Double(step) { rows.append(values) }
                }
            }
        }
        var text = header + "\n"
        for row in rows { text += format(row) + "\n" }
        try FileIO.writeAtomically(Array(text.utf8), to: csvPath)
    }

    var header: String { (MetricsLog.leadingColumns + metricNames + evaluationNames).joined(separator: ",") }

    private func format(_ row: [Double]) -> String {
        row.enumerated().map { i, v in
            if v.isNaN && i >= 2 { return "" }
            return i < 2 ? String(Int(v)) : (v.isFinite ? String(format: "%.6g", v) : String(v))
        }.joined(separator: ",")
    }

    /// Records one step (written out by `flush()`).
    public func append(step: Int, epoch: Int, wallSeconds: Double, rate: Double, learningRate: Double, values: [Double]) {
        precondition(values.count == metricNames.count, "MetricsLog: \(values.count) values for \(metricNames.count) metrics")
        add([Double(step), Double(epoch), wallSeconds, rate, learningRate] + values
            + [Double](repeating: .nan, count: evaluationNames.count))
    }

    /// Records one evaluation after step `step` (written out by `flush()`).
    public func appendEvaluation(step: Int, epoch: Int, wallSeconds: Double, learningRate: Double, values: [Double]) {
        precondition(values.count == evaluationNames.count, "MetricsLog: \(values.count) values for \(evaluationNames.count) evaluation metrics")
        add([Double(step), Double(epoch), wallSeconds, .nan, learningRate]
            + [Double](repeating: .nan, count: metricNames.count) + values)
    }

    private func add(_ row: [Double]) {
        rows.append(row)
        pending += format(row) + "\n"
    }

    /// Appends the pending rows to `metrics.csv`.
    public func flush() throws {
        guard !pending.isEmpty else { return }
        guard let handle = FileHandle(forWritingAtPath: csvPath) else {
            throw TrainingError.runFolderUnwritable(directory: (csvPath as NSString).deletingLastPathComponent,
                                                    reason: "\(csvPath) cannot be opened for writing")
        }
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(pending.utf8))
        pending = ""
    }

    /// The values of one metric column with their steps, empty cells left out.
    public func series(_ name: String) -> (steps: [Double], values: [Double]) {
        guard let k = (metricNames + evaluationNames).firstIndex(of: name) else { return ([], []) }
        let column = MetricsLog.leadingColumns.count + k
        let kept = rows.filter { !$0[column].isNaN }
        return (kept.map { $0[0] }, kept.map { $0[column] })
    }

    /// EMA weight of the smoothed step curves in `loss.png` (TensorBoard's slider at 0.9).
    public static let plotSmoothing = 0.9

    /// Flushes and redraws `loss.png`: step metrics as a light raw curve under their smoothed
    /// (EMA) curve, evaluation metrics (train/val) as dotted lines in the same axes; the y axis
    /// is logarithmic when the values span more than two decades.
    public func writePlot(title: String = "loss") throws {
        try flush()
        let series = plottedMetrics.compactMap { name -> LinePlot.Series? in
            let (x, y) = self.series(name)
            // Step metrics are noisy per-step values; evaluations are few and already averages.
            let smoothing = metricNames.contains(name) && x.count > 20 ? MetricsLog.plotSmoothing : nil
            return x.isEmpty ? nil : LinePlot.Series(name: name, x: x, y: y, smoothing: smoothing)
        }
        guard !series.isEmpty else { return }
        let yLabel = series.allSatisfy { $0.name.lowercased().contains("loss") } ? "loss" : "value"
        try LinePlot(title: title, yLabel: yLabel, series: series).write(to: plotPath)
    }
}
