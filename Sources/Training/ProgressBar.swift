import Foundation

/// Training progress on stdout. On a terminal: one line redrawn in place (at most ~10 times a
/// second) with a bar, step/total, rate, ETA and named scalars; `finishLine` keeps it (one line per
/// epoch). Otherwise (a log file, a pipe): a plain line every `plainEvery` steps and at `finishLine`.
public final class ProgressBar {
    public let isTerminal: Bool
    public let plainEvery: Int
    public let unit: String
    private let output: (String) -> Void
    private var lastDraw = 0.0
    private var lastWidth = 0
    private var lastPlain = ""

    /// `output` receives text without a trailing newline handling of its own (default: stdout).
    public init(unit: String = "samples", isTerminal: Bool = isatty(1) != 0, plainEvery: Int = 50,
                output: @escaping (String) -> Void = { FileHandle.standardOutput.write(Data($0.utf8)) }) {
        self.unit = unit
        self.isTerminal = isTerminal
        self.plainEvery = max(1, plainEvery)
        self.output = output
    }

    /// Seconds as `m:ss` or `h:mm:ss`.
    public static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--:--" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }

    /// The text of one progress line.
    public func line(label: String, position: Int, total: Int, rate: Double, eta: Double?, scalars: [(String, Double)],
                     bar: Bool) -> String {
        var parts: [String] = [label]
        if bar {
            let width = 20
            let filled = total > 0 ? min(width, position * width / total) : 0
            parts.append("[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]")
        }
        parts.append("\(position)/\(total)")
        parts.append(String(format: "%.1f %@/s", rate, unit))
        parts.append("ETA " + ProgressBar.clock(eta ?? .nan))
        parts += scalars.map { String(format: "%@ %.4f", $0.0, $0.1) }
        return parts.joined(separator: " ")
    }

    /// Reports step `position` of `total` within the current stage (an epoch).
    public func update(label: String, position: Int, total: Int, rate: Double, eta: Double?, scalars: [(String, Double)]) {
        if isTerminal {
            let now = Date().timeIntervalSinceReferenceDate
            guard now - lastDraw >= 0.1 || position == total else { return }
            lastDraw = now
            draw(line(label: label, position: position, total: total, rate: rate, eta: eta, scalars: scalars, bar: true))
        } else if position % plainEvery == 0 {
            plain(line(label: label, position: position, total: total, rate: rate, eta: eta, scalars: scalars, bar: false))
        }
    }

    /// Ends the stage: the final state stays on screen as its own line.
    public func finishLine(label: String, position: Int, total: Int, rate: Double, eta: Double?, scalars: [(String, Double)]) {
        let text = line(label: label, position: position, total: total, rate: rate, eta: eta, scalars: scalars, bar: isTerminal)
        if isTerminal { draw(text); output("\n"); lastWidth = 0 } else { plain(text) }
    }

    /// Prints a message on its own line without breaking the bar.
    public func message(_ text: String) {
        if isTerminal && lastWidth > 0 { output("\n"); lastWidth = 0 }
        output(text + "\n")
    }

    /// A plain line, unless it repeats the last one (a stage that ends on a logged step).
    private func plain(_ text: String) {
        guard text != lastPlain else { return }
        lastPlain = text
        output(text + "\n")
    }

    private func draw(_ text: String) {
        let pad = max(0, lastWidth - text.count)
        output("\r" + text + String(repeating: " ", count: pad))
        lastWidth = text.count
    }
}
