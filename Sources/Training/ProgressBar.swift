import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered standard output: every line reaches the file or pipe when written, so status lines,
/// progress lines and messages keep their order under `| cat` or `> log` (Swift's `print` is
/// block-buffered when stdout is not a terminal and would come out last).
public enum StandardOutput {
    /// Writes `text` as is.
    public static func write(_ text: String) { FileHandle.standardOutput.write(Data(text.utf8)) }
    /// Writes `text` and a newline.
    public static func line(_ text: String) { write(text + "\n") }
}

/// Training progress on stdout. On a terminal: one line redrawn in place (at most ~10 times a
/// second) with a bar, step/total, rate, ETA and named scalars, never wider than the terminal
/// (fields are dropped from the right until it fits, so the line cannot wrap and `\r` always
/// returns to its start); `finishLine` keeps it (one line per epoch). Otherwise (a log file, a
/// pipe): a plain, full line every `plainEvery` steps and at `finishLine`.
public final class ProgressBar {
    /// Whether to redraw one line in place (a terminal) rather than print plain lines (a file or pipe).
    public let isTerminal: Bool
    /// Steps between plain lines when not on a terminal (at least 1).
    public let plainEvery: Int
    /// The items the rate counts, shown as "<rate> <unit>/s" ("samples", "tokens", "clips" …).
    public let unit: String
    private let output: (String) -> Void
    private let columns: () -> Int
    private var lastDraw = 0.0
    private var lastWidth = 0
    private var lastPlain = ""
    /// The last text drawn in place, and whether a message then ended its line (it stands above).
    private var lastDrawn = ""
    private var endedByMessage = false

    /// `output` receives text without a trailing newline handling of its own (default: stdout,
    /// unbuffered). `columns` gives the terminal's width, asked at every redraw so a resized window
    /// is followed (default `terminalColumns()`).
    public init(unit: String = "samples", isTerminal: Bool = isatty(1) != 0, plainEvery: Int = 50,
                output: @escaping (String) -> Void = StandardOutput.write,
                columns: @escaping () -> Int = { ProgressBar.terminalColumns() }) {
        self.unit = unit
        self.isTerminal = isTerminal
        self.plainEvery = max(1, plainEvery)
        self.columns = columns
        self.output = output
    }

    /// The width of the terminal on stdout (TIOCGWINSZ), else `$COLUMNS`, else 80.
    public static func terminalColumns(environment: [String: String] = ProcessInfo.processInfo.environment) -> Int {
        var size = winsize()
        if ioctl(1, UInt(TIOCGWINSZ), &size) == 0 && size.ws_col > 0 { return Int(size.ws_col) }
        if let text = environment["COLUMNS"], let n = Int(text.trimmingCharacters(in: .whitespaces)), n > 0 { return n }
        return 80
    }

    /// Seconds as `m:ss` or `h:mm:ss`.
    public static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--:--" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }

    /// The text of one progress line: label, [bar], step/total, rate, ETA, scalars — with
    /// `maxWidth`, the rightmost fields dropped until it fits (a label alone wider than that is cut).
    public func line(label: String, position: Int, total: Int, rate: Double, eta: Double?, scalars: [(String, Double)],
                     bar: Bool, maxWidth: Int? = nil) -> String {
        var parts: [String] = [label]
        if bar {
            let width = 20
            let filled = total > 0 ? min(width, max(0, position) * width / total) : 0
            parts.append("[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]")
        }
        parts.append("\(position)/\(total)")
        parts.append(String(format: "%.1f %@/s", rate, unit))
        parts.append("ETA " + ProgressBar.clock(eta ?? .nan))
        parts += scalars.map { String(format: "%@ %.4f", $0.0, $0.1) }
        guard let maxWidth else { return parts.joined(separator: " ") }
        var text = parts.joined(separator: " ")
        while text.count > maxWidth && parts.count > 1 {
            parts.removeLast()
            text = parts.joined(separator: " ")
        }
        return text.count > maxWidth ? String(text.prefix(max(0, maxWidth))) : text
    }

    /// The widest line drawn on a terminal of `columns` columns: one less than the width, so
    /// the cursor never lands in the last column (where some terminals wrap at once).
    public static func drawWidth(columns: Int) -> Int { max(1, columns - 1) }

    /// Reports step `position` of `total` within the current stage (an epoch).
    public func update(label: String, position: Int, total: Int, rate: Double, eta: Double?, scalars: [(String, Double)]) {
        if isTerminal {
            let now = Date().timeIntervalSinceReferenceDate
            guard now - lastDraw >= 0.1 || position == total else { return }
            lastDraw = now
            draw(line(label: label, position: position, total: total, rate: rate, eta: eta, scalars: scalars, bar: true,
                      maxWidth: ProgressBar.drawWidth(columns: columns())))
        } else if position % plainEvery == 0 {
            plain(line(label: label, position: position, total: total, rate: rate, eta: eta, scalars: scalars, bar: false))
        }
    }

    /// Ends the stage: the final state stays on screen as its own line.
    public func finishLine(label: String, position: Int, total: Int, rate: Double, eta: Double?, scalars: [(String, Double)]) {
        if isTerminal {
            let text = line(label: label, position: position, total: total, rate: rate, eta: eta, scalars: scalars, bar: true,
                            maxWidth: ProgressBar.drawWidth(columns: columns()))
            // A message (an evaluation at the last step) already ended this very line: it is kept above.
            if endedByMessage && text == lastDrawn { endedByMessage = false; return }
            draw(text)
            output("\n")
            lastWidth = 0
        } else {
            plain(line(label: label, position: position, total: total, rate: rate, eta: eta, scalars: scalars, bar: false))
        }
    }

    /// Prints a message on its own line without breaking the bar.
    public func message(_ text: String) {
        if isTerminal && lastWidth > 0 { output("\n"); lastWidth = 0; endedByMessage = true }
        output(text + "\n")
    }

    /// A plain line, unless it repeats the last one (a stage that ends on a logged step).
    private func plain(_ text: String) {
        guard text != lastPlain else { return }
        lastPlain = text
        output(text + "\n")
    }

    /// Redraws the line in place: back to column 0, the text, then blanks over what the previous
    /// (longer) line left — all within the width, so nothing wraps.
    private func draw(_ text: String) {
        let limit = ProgressBar.drawWidth(columns: columns())
        let pad = max(0, min(lastWidth, limit) - text.count)
        output("\r" + text + String(repeating: " ", count: pad))
        lastWidth = text.count
        lastDrawn = text
        endedByMessage = false
    }
}
